"""VisTW (Traditional-Chinese VLM benchmark, github TMMMU-Benchmark/evaluation): MCQ and Dialogue.

vistw_mcq       the Hugging Face layout `<subject>/<split>-*.parquet` (a directory: its test split, the
                leaderboard's, or every file if none is named test-*), or one parquet file (its
                directory names the subject). Columns: qid, question, A, B, C, D, answer (a letter),
                image (struct {bytes, path}). qid repeats across subjects, so an item's id is subject/qid.
                Prompt: the authors' instruction, a blank line, the question and "A. ..." to "D. ...".
                Answer: the first `答案: X` (else the first `Answer: X`) after markdown/LaTeX wrappers are
                dropped; the word after the colon must equal the gold letter. Full-width colons and letters
                count too (NFKC), which the official regex misses. Score: accuracy per subject, and
                overall = the mean of the subject accuracies (the leaderboard number).
vistw_dialogue  parquet file(s) with thread_id, question, ground_truth, image. The prompt is the question.
                Writes out_dir/vistw_dialogue/<task>.jsonl, the answers file the official judge
                (simplevals/scoring.py --input_jsonl) reads; with a judge configured it also scores each
                answer 0-10 by the authors' rubric (judge.py) and writes score_board/<task>.jsonl.

Differences from the official scripts, on purpose: a reply without `答案:`/`Answer:` counts as wrong
(the official script asks gpt-4o-mini to guess the letter), and generation is bounded by max_new_tokens
(the official runs give 2048 tokens to a step-by-step answer: set max_new_tokens accordingly).
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from nemo_twvlm.evaluation.benchmarks.judge import judge_all
from nemo_twvlm.evaluation.benchmarks.rows import (BenchItem, answer_label, image_from_struct, parquet_files,
                                                   read_parquet_task, text_field)
from nemo_twvlm.evaluation.benchmarks.runner import (GENERATE_ONLY, base_record, generate_choices, group_table,
                                                     image_path, model_text)
from nemo_twvlm.evaluation.scorers import accuracy
from nemo_twvlm.evaluation.tasks import TaskFile

MCQ_LABELS = ["A", "B", "C", "D"]
MCQ_COLUMNS = ("qid", "question", *MCQ_LABELS, "answer", "image")
DIALOGUE_COLUMNS = ("thread_id", "question", "ground_truth", "image")

# simplevals/eval.py BASELINE_PROMPT, verbatim (it ends in a blank line, and the script adds another).
MCQ_INSTRUCTION = ("回答以下的多選題問題。"
                   "並且在回覆的最後記得講格式： 答案: $字母 而字母是 ABCDEFG 的其中一個。"
                   "回答前請先一步一步(think step by step)想好答案。你必須使用中文回答。\n\n")


def read_mcq(path: Path) -> TaskFile:
    files = parquet_files(path, "*/*.parquet")
    test_split = [f for f in files if f.name.startswith("test-")]
    return read_parquet_task(path, "vistw_mcq", test_split or files, MCQ_COLUMNS, _mcq_row)


def _mcq_row(row: dict, path: Path, row_no: int) -> BenchItem:
    subject = path.parent.name
    qid = text_field(row, "qid")
    options = [text_field(row, label, allow_empty=True) for label in MCQ_LABELS]
    image, fmt = image_from_struct(row.get("image"), path.parent)
    return BenchItem(id=f"{subject}/{qid}", image=image, image_format=fmt, question=text_field(row, "question"),
                     file=str(path), row=row_no, options=options, labels=list(MCQ_LABELS),
                     answer=answer_label(row, MCQ_LABELS), fields={"subject": subject, "qid": qid})


def mcq_prompt(item: BenchItem) -> str:
    question = item.question + "".join(f"\n{label}. {option}" for label, option in zip(item.labels, item.options))
    return MCQ_INSTRUCTION + "\n\n" + question


# The official normalize_response drops markdown bold and LaTeX wrappers before matching.
_WRAPPERS = re.compile(r"\\(?:boxed|text|mathrm|mathbf)\{?|\\[()$]|[*${}]")
_ANSWER_ZH = re.compile(r"答案\s*:\s*(\w+)")
_ANSWER_EN = re.compile(r"Answer\s*:\s*(\w+)")


def extract_answer(reply: str) -> str | None:
    """The word after the first `答案:` (else `Answer:`), full-width forms folded; None if neither occurs."""
    text = unicodedata.normalize("NFKC", _WRAPPERS.sub("", reply))
    found = _ANSWER_ZH.search(text) or _ANSWER_EN.search(text)
    return found.group(1) if found else None


def mean_of_subjects(records: list[dict]) -> tuple[float, dict[str, dict]]:
    """(overall, per-subject table): overall is the mean of the subject accuracies, as the leaderboard's."""
    table = group_table(records, "subject")
    overall = sum(row["accuracy"] for row in table.values()) / len(table) if table else 0.0
    return overall, table


def run_mcq(ctx, name: str, items: list[BenchItem]) -> tuple[dict, list[dict]]:
    if "generate" not in ctx.modes:
        return {"n": len(items), "note": GENERATE_ONLY}, []
    records = generate_choices(ctx, name, items, mcq_prompt, lambda reply, _: extract_answer(reply))
    overall, table = mean_of_subjects(records)
    return {"n": len(items), "accuracy": overall, "accuracy_micro": accuracy([r["correct"] for r in records]),
            "extracted": accuracy([r["extracted"] is not None for r in records]),
            "tables": {"subject": table}}, records


# --- dialogue -----------------------------------------------------------------------------------------

def read_dialogue(path: Path) -> TaskFile:
    return read_parquet_task(path, "vistw_dialogue", parquet_files(path, "**/*.parquet"), DIALOGUE_COLUMNS,
                             _dialogue_row)


def _dialogue_row(row: dict, path: Path, row_no: int) -> BenchItem:
    thread_id = text_field(row, "thread_id")
    image, fmt = image_from_struct(row.get("image"), path.parent)
    return BenchItem(id=thread_id, image=image, image_format=fmt, question=text_field(row, "question"),
                     file=str(path), row=row_no, answer=text_field(row, "ground_truth"),
                     fields={"thread_id": thread_id})


def run_dialogue(ctx, name: str, items: list[BenchItem]) -> tuple[dict, list[dict]]:
    if "generate" not in ctx.modes:
        return {"n": len(items), "note": GENERATE_ONLY}, []
    records = []
    for k, item in enumerate(items):
        text = model_text(item.question)
        record = base_record(item, image_path(ctx, name, k, item), text)
        record.update(question=item.question, ground_truth=item.answer)
        ctx.generate(record["image"], text, record)
        records.append(record)
    answers = Path(ctx.out_dir) / "vistw_dialogue" / f"{name}.jsonl"
    _write_jsonl(answers, [{"question_id": r["thread_id"], "original_question": r["question"],
                            "ground_truth": r["ground_truth"], "system_prompt": "", "full_prompt": r["prompt"],
                            "llm_response": r["generation"]} for r in records])
    scores: dict = {"n": len(items), "answers_file": str(answers)}
    if ctx.judge is None:
        scores["note"] = "no judge configured: answers only (judge=URL or judge=CHECKPOINT_DIR scores them)"
        return scores, records
    board = judge_all(ctx.judge, records)
    _write_jsonl(answers.parent / "score_board" / f"{name}.jsonl", board)
    judged = [r["judge_score"] for r in records if r["judge_score"] is not None]
    scores.update(score=sum(judged) / len(judged) if judged else None, judged=len(judged),
                  unjudged=len(records) - len(judged), judge=ctx.judge.name)
    return scores, records


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
