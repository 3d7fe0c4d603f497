"""What the benchmark kinds share when they run: the item's image as a file, one greedy answer per item,
and the accuracy tables (per group, and CircularEval over the rotations of a question)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER
from nemo_twvlm.evaluation.benchmarks.rows import BenchItem
from nemo_twvlm.evaluation.scorers import accuracy

GENERATE_ONLY = "scored by generation, as its authors score it; 'generate' is not among the modes"


def image_path(ctx, task_name: str, k: int, item: BenchItem) -> Path:
    """The item's image written under out_dir/images/<task>/, where the model and the report read it."""
    path = Path(ctx.out_dir) / "images" / task_name / f"{k:06d}.{item.image_format.lower()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(item.image)  # always: an out_dir reused for other inputs must not show stale images
    return path


def model_text(text: str) -> str:
    """The text as the model may see it: the one image goes first, always, and a literal placeholder in
    a question (or an answer being judged) would be a second one."""
    return text.replace(IMAGE_PLACEHOLDER, " ")


def base_record(item: BenchItem, image: Path, prompt: str) -> dict:
    record = {"id": item.id, "file": item.file, "line": item.row, "image": str(image), "prompt": prompt,
              **item.fields}
    if item.labels:
        record.update(options=item.options, labels=item.labels, answer=item.answer)
    return record


def generate_choices(ctx, task_name: str, items: list[BenchItem], prompt: Callable[[BenchItem], str],
                     extract: Callable[[str, BenchItem], str | None], *,
                     max_new_tokens: int | None = None) -> list[dict]:
    """One greedy answer per item; `extract` reads the label it picked (None: none), compared to the gold label."""
    records = []
    for k, item in enumerate(items):
        text = model_text(prompt(item))
        record = base_record(item, image_path(ctx, task_name, k, item), text)
        answer = ctx.generate(record["image"], text, record, max_new_tokens=max_new_tokens)
        extracted = extract(answer, item)
        record.update(extracted=extracted, correct=extracted == item.answer)
        records.append(record)
    return records


def group_table(records: list[dict], key: str) -> dict[str, dict]:
    """{group: {"n", "accuracy"}} of the records' `correct` per value of `key`, groups in sorted order."""
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(str(record.get(key)), []).append(record["correct"])
    return {name: {"n": len(flags), "accuracy": accuracy(flags)} for name, flags in sorted(groups.items())}


def circular(records: list[dict], key: str = "circular_group") -> list[dict]:
    """One record per question: its first rotation's fields, `correct` only if every rotation is correct."""
    questions: dict = {}
    for record in records:
        group = questions.setdefault(record[key], {**record, "rotations": 0, "correct": True})
        group["rotations"] += 1
        group["correct"] = group["correct"] and record["correct"]
    return list(questions.values())
