"""Evaluation task files: JSONL, one item per line, read from local paths.

Three kinds, in the shapes of the public Traditional-Chinese benchmarks (VisTW-MCQ, TaiwanVQA, and
COCO-style captioning sets), converted to one JSON object per line:

    mcq      {"id": "q1", "image": "img/q1.png", "question": "圖中的東西是什麼顏色？",
              "options": ["紅色", "綠色", "藍色", "黃色"], "answer": "B"}
             options: a list (labelled A, B, C, ... in order) or an object {"A": "紅色", "B": "綠色"}
             (its keys are the labels, in file order). VisTW-style top-level "A"/"B"/"C"/"D" keys
             are accepted in place of "options".
             answer: a label ("B", "(B)", "b"), a 0-based index (1), or the text of an option ("綠色").
    open_qa  {"id": "v1", "image": "img/v1.png", "question": "它在哪裡？", "answers": ["左上", "左上角"]}
             answers: one or more acceptable answers (a single string is accepted too).
    caption  {"id": "c1", "image": "img/c1.png", "references": ["紅色的圓形在左上。", "..."]}
             optional "prompt": the instruction to caption with (default: 請用一句話描述這張圖。).

Common rules:
  - "image" is a path relative to the task file's directory (absolute paths are used as they are);
    the file must exist and be readable by PIL.
  - "id" is optional (default "line<N>") but must be unique within the file.
  - Blank lines are ignored. Every other line that cannot be used is recorded as a `Problem`
    (file, line number, reason) and skipped; the rest of the file is still read. Reasons: not UTF-8,
    malformed JSON, not a JSON object, missing/empty/mistyped field, duplicate id or option, image
    not found or unreadable, answer outside the options.
  - The kind is given explicitly (`kind:path` in a task spec, or `kind=` to `read_task`) or inferred
    from the first well-formed line: "options" (or "A"/"B" keys) -> mcq, "answers" -> open_qa,
    "references" -> caption.

This module imports only the standard library and PIL.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

KINDS = ("mcq", "open_qa", "caption")
DEFAULT_CAPTION_PROMPT = "請用一句話描述這張圖。"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    reason: str

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "reason": self.reason}

    @property
    def category(self) -> str:
        """The reason without its detail (for counting): 'malformed JSON: ...' -> 'malformed JSON'."""
        return self.reason.split(":", 1)[0]


@dataclass
class MCQItem:
    id: str
    image: Path
    question: str
    options: list[str]
    labels: list[str]
    answer: int  # index into options
    line: int = 0


@dataclass
class OpenQAItem:
    id: str
    image: Path
    question: str
    answers: list[str]
    line: int = 0


@dataclass
class CaptionItem:
    id: str
    image: Path
    references: list[str]
    prompt: str = DEFAULT_CAPTION_PROMPT
    line: int = 0


Item = Union[MCQItem, OpenQAItem, CaptionItem]


@dataclass
class TaskFile:
    path: Path
    kind: str
    name: str
    items: list = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0  # non-blank lines read

    def summary(self) -> dict:
        return {"lines": self.lines, "loaded": len(self.items), "skipped": len(self.problems),
                "skipped_by_reason": dict(Counter(p.category for p in self.problems))}


class _BadLine(Exception):
    pass


def parse_task_spec(spec: str) -> tuple[str | None, str]:
    """'mcq:/data/x.jsonl' -> ('mcq', '/data/x.jsonl'); '/data/x.jsonl' -> (None, '/data/x.jsonl')."""
    head, sep, rest = spec.partition(":")
    if sep and head in KINDS:
        return head, rest
    return None, spec


def infer_kind(obj: dict) -> str | None:
    if "options" in obj or ("A" in obj and "B" in obj):
        return "mcq"
    if "answers" in obj:
        return "open_qa"
    if "references" in obj:
        return "caption"
    return None


def read_task(path: str | Path, kind: str | None = None, *, name: str | None = None,
              check_images: bool = True) -> TaskFile:
    """Read one JSONL task file; bad lines become `problems` and are skipped."""
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is not one of {KINDS}")
    task = TaskFile(path=path, kind=kind or "", name=name or path.stem)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise FileNotFoundError(f"task file {path} cannot be read: {error.strerror or error}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    seen_ids: set[str] = set()
    for line_no, raw_line in enumerate(raw.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        task.lines += 1
        try:
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _BadLine(f"not UTF-8: invalid byte at column {error.start + 1}") from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise _BadLine(f"malformed JSON: {error.msg} (column {error.colno})") from None
            if not isinstance(obj, dict):
                raise _BadLine(f"not a JSON object: got {type(obj).__name__}")
            if not task.kind:
                inferred = infer_kind(obj)
                if inferred is None:
                    raise _BadLine("unknown task kind: no 'options', 'answers' or 'references' field "
                                   "(name the kind as mcq:PATH, open_qa:PATH or caption:PATH)")
                task.kind = inferred
            item = _PARSERS[task.kind](obj, path.parent, line_no, check_images)
            if item.id in seen_ids:
                raise _BadLine(f"duplicate id: {item.id!r}")
            seen_ids.add(item.id)
            task.items.append(item)
        except _BadLine as bad:
            task.problems.append(Problem(str(path), line_no, str(bad)))
    if not task.kind:
        task.kind = "unknown"
    return task


# --- field checks ---------------------------------------------------------------------------------

def _text(obj: dict, key: str) -> str:
    if key not in obj or obj[key] is None:
        raise _BadLine(f"missing field: {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise _BadLine(f"bad field: {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _BadLine(f"empty field: {key!r}")
    return value


def _texts(obj: dict, key: str, *, allow_single: bool = True) -> list[str]:
    if key not in obj or obj[key] is None:
        raise _BadLine(f"missing field: {key!r}")
    value = obj[key]
    if allow_single and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadLine(f"bad field: {key!r} must be a list of strings")
    value = [v for v in value if v.strip()]
    if not value:
        raise _BadLine(f"empty field: {key!r}")
    return value


def _id(obj: dict, line_no: int) -> str:
    value = obj.get("id")
    if value is None:
        return f"line{line_no}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _BadLine(f"bad field: 'id' must be a string or integer, got {type(value).__name__}")
    return str(value)


def _image(obj: dict, base: Path, check: bool) -> Path:
    rel = _text(obj, "image")
    path = Path(rel) if Path(rel).is_absolute() else base / rel
    if check:
        if not path.is_file():
            raise _BadLine(f"image not found: {rel}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise _BadLine(f"image unreadable: {rel} ({type(error).__name__})") from None
    return path


def _options(obj: dict) -> tuple[list[str], list[str]]:
    if "options" in obj:
        raw = obj["options"]
    elif "A" in obj and "B" in obj:  # VisTW-MCQ style: one top-level key per letter
        raw = {k: obj[k] for k in _LETTERS if k in obj}
    else:
        raise _BadLine("missing field: 'options'")
    if isinstance(raw, list):
        labels, options = list(_LETTERS[: len(raw)]), raw
        if len(raw) > len(_LETTERS):
            raise _BadLine(f"bad field: 'options' has {len(raw)} entries; at most {len(_LETTERS)}")
    elif isinstance(raw, dict):
        labels, options = [str(k).strip() for k in raw], list(raw.values())
    else:
        raise _BadLine("bad field: 'options' must be a list or an object of label -> text")
    if len(options) < 2:
        raise _BadLine(f"bad field: 'options' needs at least 2 entries, got {len(options)}")
    if not all(isinstance(o, (str, int, float)) and not isinstance(o, bool) for o in options):
        raise _BadLine("bad field: every option must be a string")
    options = [str(o).strip() for o in options]
    if not all(options) or not all(labels):
        raise _BadLine("empty field: an option or label is empty")
    if len(set(options)) != len(options):
        raise _BadLine("duplicate option: " + ", ".join(sorted({o for o in options if options.count(o) > 1})))
    if len({label.upper() for label in labels}) != len(labels):
        raise _BadLine("duplicate option: labels repeat")
    return options, labels


_LABEL_WRAP = re.compile(r"^[\s(（\[【]*(.*?)[\s)）\]】.．:：、]*$")


def resolve_answer(answer, options: list[str], labels: list[str]) -> int:
    """The index of `answer` (label, 0-based index, or option text) among the options, or _BadLine."""
    if isinstance(answer, bool) or answer is None:
        raise _BadLine(f"answer outside the options: {answer!r}")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return answer
        raise _BadLine(f"answer outside the options: index {answer} with {len(options)} options")
    if not isinstance(answer, str):
        raise _BadLine(f"bad field: 'answer' must be a label, index or option text, got {type(answer).__name__}")
    text = answer.strip()
    upper = [label.upper() for label in labels]
    if text.upper() in upper:
        return upper.index(text.upper())
    if text in options:
        return options.index(text)
    bare = _LABEL_WRAP.match(text).group(1).strip()
    if bare.upper() in upper:
        return upper.index(bare.upper())
    raise _BadLine(f"answer outside the options: {answer!r} (labels {', '.join(labels)})")


def _parse_mcq(obj: dict, base: Path, line_no: int, check: bool) -> MCQItem:
    item_id = _id(obj, line_no)
    question = _text(obj, "question")
    options, labels = _options(obj)
    if "answer" not in obj:
        raise _BadLine("missing field: 'answer'")
    answer = resolve_answer(obj["answer"], options, labels)
    image = _image(obj, base, check)
    return MCQItem(item_id, image, question, options, labels, answer, line_no)


def _parse_open_qa(obj: dict, base: Path, line_no: int, check: bool) -> OpenQAItem:
    item_id = _id(obj, line_no)
    question = _text(obj, "question")
    answers = _texts(obj, "answers")
    return OpenQAItem(item_id, _image(obj, base, check), question, answers, line_no)


def _parse_caption(obj: dict, base: Path, line_no: int, check: bool) -> CaptionItem:
    item_id = _id(obj, line_no)
    references = _texts(obj, "references")
    prompt = _text(obj, "prompt") if obj.get("prompt") is not None else DEFAULT_CAPTION_PROMPT
    return CaptionItem(item_id, _image(obj, base, check), references, prompt, line_no)


_PARSERS = {"mcq": _parse_mcq, "open_qa": _parse_open_qa, "caption": _parse_caption}


def summarise(tasks: list[TaskFile]) -> dict:
    """Totals over several task files: lines read, items loaded, lines skipped (by reason)."""
    by_reason: Counter = Counter()
    for task in tasks:
        by_reason.update(p.category for p in task.problems)
    return {"files": len(tasks), "lines": sum(t.lines for t in tasks), "loaded": sum(len(t.items) for t in tasks),
            "skipped": sum(len(t.problems) for t in tasks), "skipped_by_reason": dict(by_reason)}
