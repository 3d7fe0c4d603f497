"""VLMEvalKit's multiple-choice TSV (github open-compass/VLMEvalKit, ImageMCQDataset), kind `vlmeval_mcq`.

Columns: index (integer), image (base64; a value of 64 characters or fewer is instead the index of the
row whose image it shares), question, optional hint, option columns A..Z (empty ones left out),
answer (a letter), optional category and l2-category. Cells read as pandas reads them (VLMEvalKit's
loader): "", "nan", "NaN", "None", "NA", "N/A", "null" ... are empty.

Prompt, as ImageMCQDataset.build_prompt: "Hint: {hint}\\n" (if any), "Question: {question}\\n",
"Options:\\nA. ...\\n", then "Please select the correct answer from the options above. \\n".
Answer, as VLMEvalKit's exact matching (can_infer, no LLM judge): the reply with .()[],:;!*#{} turned
into spaces and split on whitespace; exactly one option letter among the words is the choice; no
letter but a "Z" means none of them; otherwise the one option whose text occurs in the reply
(case-folded), if exactly one does.

Circular files (VLMEvalKit's CircularEval; an index of 1,000,000 or more is a rotation of the question
with index % 1,000,000): `accuracy` is over questions, each right only if all its rotations are, and
`accuracy_plain` over rows. Tables by category and l2-category.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from nemo_twvlm.evaluation.benchmarks.rows import (CIRCULAR_MOD, LETTERS, BadRow, BenchItem, add_row, answer_label,
                                                   image_from_base64, int_field, text_field)
from nemo_twvlm.evaluation.benchmarks.runner import GENERATE_ONLY, circular, generate_choices, group_table
from nemo_twvlm.evaluation.scorers import accuracy
from nemo_twvlm.evaluation.tasks import Problem, TaskFile

COLUMNS = ("index", "image", "question", "answer")
POINTER_MAX = 64  # VLMEvalKit: an image value this short is another row's index
# pandas' default NA strings: VLMEvalKit reads the TSV with pandas, which turns these cells into NaN.
_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
       "NULL", "NaN", "None", "n/a", "nan", "null"}
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


def read(path: Path) -> TaskFile:
    task = TaskFile(path=path, kind="vlmeval_mcq", name=path.stem)
    try:
        header, rows = _read_tsv(path)
    except UnicodeDecodeError as error:
        task.problems.append(Problem(str(path), 0, f"not UTF-8: invalid byte at offset {error.start}"))
        return task
    missing = [c for c in COLUMNS if c not in header]
    images = {row.get("index", "").strip(): row["image"] for row in rows
              if len(row.get("image") or "") > POINTER_MAX}
    decoded: dict[str, tuple[bytes, str]] = {}  # rotations share one image: decode it once
    seen: set[str] = set()
    for row_no, row in enumerate(rows, start=1):
        task.lines += 1
        add_row(task, path, row_no, seen, lambda: _row(row, row_no, path, header, missing, images, decoded))
    return task


def _read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    csv.field_size_limit(sys.maxsize)  # a base64 image is one cell of megabytes
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, [])
        rows = []
        for cells in reader:
            row = {name: cell for name, cell in zip(header, cells)}
            row["__cells__"] = len(cells)
            rows.append(row)
    return header, rows


def _cell(row: dict, column: str) -> str | None:
    value = row.get(column)
    return None if value is None or value.strip() in _NA else value


def _row(row: dict, row_no: int, path: Path, header: list[str], missing: list[str], images: dict,
         decoded: dict) -> BenchItem:
    if missing:
        raise BadRow(f"missing field: {', '.join(map(repr, missing))} (no such column in the file)")
    if row["__cells__"] != len(header):
        raise BadRow(f"malformed row: {row['__cells__']} cells, the header has {len(header)}")
    index = int_field({"index": _cell(row, "index")}, "index")
    labels = [c for c in LETTERS if c in header and _cell(row, c) is not None]
    if len(labels) < 2:
        raise BadRow(f"bad field: at least two options are needed, got {labels}")
    image, fmt = _image(row, images, decoded)
    hint = _cell(row, "hint")
    fields = {"category": _cell(row, "category") or "-", "circular_group": index % CIRCULAR_MOD}
    if "l2-category" in header:
        fields["l2-category"] = _cell(row, "l2-category") or "-"
    if hint is not None:
        fields["hint"] = hint
    return BenchItem(id=str(index), image=image, image_format=fmt, file=str(path), row=row_no,
                     question=text_field({"question": _cell(row, "question")}, "question"),
                     options=[row[c] for c in labels], labels=labels,
                     answer=answer_label({"answer": _cell(row, "answer")}, labels), fields=fields)


def _image(row: dict, images: dict, decoded: dict) -> tuple[bytes, str]:
    value = (_cell(row, "image") or "").strip()
    if not value:
        raise BadRow("missing field: 'image'")
    key = row["index"].strip()
    if len(value) <= POINTER_MAX:  # the index of the row holding the image
        if value not in images:
            raise BadRow(f"image pointer dangling: 'image' is {value!r}, and no row with that index has an image")
        key = value
    if key not in decoded:
        decoded[key] = image_from_base64(images[key])
    return decoded[key]


def prompt(item: BenchItem) -> str:
    text = f"Hint: {item.fields['hint']}\n" if "hint" in item.fields else ""
    text += f"Question: {item.question}\n"
    text += "Options:\n" + "".join(f"{label}. {option}\n" for label, option in zip(item.labels, item.options))
    return text + "Please select the correct answer from the options above. \n"


def infer_choice(reply: str, labels: list[str], options: list[str]) -> str | None:
    """VLMEvalKit's can_infer: an option letter standing alone, else the one option text in the reply."""
    words = reply.translate(_SEPARATORS).split()
    letters = [label for label in labels if label in words]
    if len(letters) == 1:
        return letters[0]
    if not letters and "Z" in words:  # the reply says none of the options
        return None
    folded = reply.lower()
    found = [label for label, option in zip(labels, options) if str(option).lower() in folded]
    return found[0] if len(found) == 1 else None


def scores(records: list[dict]) -> dict:
    plain = accuracy([r["correct"] for r in records])
    is_circular = any(int(r["id"]) >= CIRCULAR_MOD for r in records)
    questions = circular(records) if is_circular else records
    tables = {"category": group_table(questions, "category")}
    if any("l2-category" in r for r in records):
        tables["l2-category"] = group_table(questions, "l2-category")
    out = {"n": len(records), "accuracy": accuracy([q["correct"] for q in questions])}
    if is_circular:
        out.update(questions=len(questions), accuracy_plain=plain)
    return {**out, "tables": tables}


def run(ctx, name: str, items: list[BenchItem]) -> tuple[dict, list[dict]]:
    if "generate" not in ctx.modes:
        return {"n": len(items), "note": GENERATE_ONLY}, []
    records = generate_choices(ctx, name, items, prompt,
                               lambda reply, item: infer_choice(reply, item.labels, item.options))
    return scores(records), records
