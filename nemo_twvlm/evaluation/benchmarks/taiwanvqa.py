"""TaiwanVQA (github hhhuang/TaiwanVQA, its lmms-eval task), kind `taiwanvqa`.

Input: a parquet file, or a directory of them (the Hugging Face layout, searched recursively). Columns:
question_id (integer), question, A, B (C, D optional: empty or missing options are left out), answer (a
letter), question_type, topic, image (struct {bytes, path}); sub_topic is kept if present, other
columns are not read.

Prompt, as the task's doc_to_text:
    "{question} 有以下幾個選項：\\nA. ...\\nB. ...\\n\\n請直接使用所提供的選項字母作為答案回答。"
The model answers with one new token and is right when that token, stripped, is the
gold letter (the task's max_new_tokens: 1 and exact comparison).

Score: CircularEval. The rotations of a question (the options shuffled, the answer moved with them)
share `question_id % 1_000_000`; a question counts as right only when every rotation is. `accuracy`
is that rate over questions (the published number), `accuracy_plain` the rate over rows; tables break
the circular accuracy down by question_type and by topic.
"""
from __future__ import annotations

from pathlib import Path

from nemo_twvlm.evaluation.benchmarks.rows import (CIRCULAR_MOD, BadRow, BenchItem, answer_label, image_from_struct,
                                                   int_field, parquet_files, read_parquet_task, text_field)
from nemo_twvlm.evaluation.benchmarks.runner import GENERATE_ONLY, circular, generate_choices, group_table
from nemo_twvlm.evaluation.scorers import accuracy
from nemo_twvlm.evaluation.tasks import TaskFile

OPTION_LABELS = ["A", "B", "C", "D"]
COLUMNS = ("question_id", "question", "A", "B", "answer", "question_type", "topic", "image")
OPTIONS_INTRO = "有以下幾個選項："  # the task's sys_prompt
POST_PROMPT = "\n請直接使用所提供的選項字母作為答案回答。"
MAX_NEW_TOKENS = 1
_NA = {"", "nan"}  # how an absent option appears once the dataset went through pandas


def read(path: Path) -> TaskFile:
    return read_parquet_task(path, "taiwanvqa", parquet_files(path, "**/*.parquet"), COLUMNS, _row)


def _row(row: dict, path: Path, row_no: int) -> BenchItem:
    question_id = int_field(row, "question_id")
    labels = [label for label in OPTION_LABELS if row.get(label) is not None and str(row[label]).strip() not in _NA]
    if len(labels) < 2:
        raise BadRow(f"bad field: at least options 'A' and 'B' are needed, got {labels}")
    image, fmt = image_from_struct(row.get("image"), path.parent)
    fields = {"question_type": text_field(row, "question_type"), "topic": text_field(row, "topic"),
              "circular_group": question_id % CIRCULAR_MOD}
    if row.get("sub_topic") is not None:
        fields["sub_topic"] = str(row["sub_topic"])
    return BenchItem(id=str(question_id), image=image, image_format=fmt, question=text_field(row, "question"),
                     file=str(path), row=row_no, options=[str(row[label]) for label in labels], labels=labels,
                     answer=answer_label(row, labels), fields=fields)


def prompt(item: BenchItem) -> str:
    options = "\n".join(f"{label}. {option}" for label, option in zip(item.labels, item.options))
    return f"{item.question} {OPTIONS_INTRO}\n{options}\n{POST_PROMPT}"


def extract(reply: str, item: BenchItem) -> str | None:
    """The reply itself, stripped, when it is one of the labels: anything else is not a choice."""
    return reply.strip() if reply.strip() in item.labels else None


def scores(records: list[dict]) -> dict:
    questions = circular(records)
    return {"n": len(records), "questions": len(questions), "accuracy": accuracy([q["correct"] for q in questions]),
            "accuracy_plain": accuracy([r["correct"] for r in records]),
            "tables": {"question_type": group_table(questions, "question_type"),
                       "topic": group_table(questions, "topic")}}


def run(ctx, name: str, items: list[BenchItem]) -> tuple[dict, list[dict]]:
    if "generate" not in ctx.modes:
        return {"n": len(items), "note": GENERATE_ONLY}, []
    records = generate_choices(ctx, name, items, prompt, extract, max_new_tokens=MAX_NEW_TOKENS)
    return scores(records), records
