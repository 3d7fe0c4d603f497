"""Rows of the published benchmark layouts, checked one at a time: a bad row becomes a `Problem` (file, row,
reason naming the field) and is skipped; the rest of the file is still read.

Images are checked by decoding them completely here, before any model is loaded, so a truncated or
unreadable image is a counted skip and never stops an evaluation half-way.
"""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from nemo_twvlm.evaluation.tasks import Problem, TaskFile

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CIRCULAR_MOD = 1_000_000  # rotations of one question share `id % 1_000_000` (TaiwanVQA, VLMEvalKit)


class BadRow(Exception):
    pass


@dataclass
class BenchItem:
    id: str  # unique within its task
    image: bytes  # the encoded image file, already decoded once to check it
    image_format: str  # PIL's name for it: "PNG", "JPEG", ...
    question: str
    file: str
    row: int  # 1-based data row within `file`
    options: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    answer: str = ""  # the gold label (MCQ kinds) or the reference answer (dialogue)
    fields: dict = field(default_factory=dict)  # subject / category / question_type / topic / group


def check_image(data: bytes) -> str:
    """PIL's format name of an encoded image after decoding every pixel of it, or BadRow."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # verify() alone passes a truncated JPEG; decoding all of it does not
            return img.format or "PNG"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadRow(f"image unreadable: {type(error).__name__}: {error}") from None


def image_from_struct(value, base_dir: Path, column: str = "image") -> tuple[bytes, str]:
    """(bytes, format) of a Hugging Face image struct {bytes, path}; a relative path is under `base_dir`."""
    if value is None:
        raise BadRow(f"missing field: {column!r}")
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, dict):
        data = value.get("bytes")
        if not data:
            rel = value.get("path")
            if not rel:
                raise BadRow(f"image missing: {column!r} has neither bytes nor path")
            path = Path(rel) if Path(rel).is_absolute() else base_dir / rel
            if not path.is_file():
                raise BadRow(f"image not found: {column!r} path {rel}")
            data = path.read_bytes()
    else:
        raise BadRow(f"bad field: {column!r} must be an image struct {{bytes, path}}, got {type(value).__name__}")
    return data, check_image(data)


def image_from_base64(text: str) -> tuple[bytes, str]:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRow(f"image not base64: {error}") from None
    return data, check_image(data)


def text_field(row: dict, column: str, *, allow_empty: bool = False) -> str:
    """A cell as text; a number (qid columns are often integers) is written out."""
    value = row.get(column)
    if value is None:
        raise BadRow(f"missing field: {column!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(f"bad field: {column!r} must be text, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if not allow_empty and not text.strip():
        raise BadRow(f"empty field: {column!r}")
    return text


def int_field(row: dict, column: str) -> int:
    value = row.get(column)
    if value is None:
        raise BadRow(f"missing field: {column!r}")
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise BadRow(f"bad field: {column!r} must be an integer, got {value!r}") from None


def answer_label(row: dict, labels: list[str], column: str = "answer") -> str:
    gold = text_field(row, column).strip().upper()
    if gold not in labels:
        raise BadRow(f"answer outside the options: {column!r} is {row[column]!r} (labels {', '.join(labels)})")
    return gold


def read_parquet(task: TaskFile, path: Path, required: Iterable[str],
                 parse: Callable[[dict, Path, int], BenchItem], seen: set[str]) -> None:
    """Every row of one parquet file through `parse`; good rows to task.items, bad ones to task.problems."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        task.problems.append(Problem(str(path), 0, f"unreadable file: {error}"))
        return
    missing = [c for c in required if c not in table.column_names]
    for row_no, row in enumerate(table.to_pylist(), start=1):
        task.lines += 1
        add_row(task, path, row_no, seen, lambda: _parse_present(missing, parse, row, path, row_no))


def _parse_present(missing: list[str], parse, row: dict, path: Path, row_no: int) -> BenchItem:
    if missing:
        raise BadRow(f"missing field: {', '.join(map(repr, missing))} (no such column in the file)")
    return parse(row, path, row_no)


def add_row(task: TaskFile, path: Path, row_no: int, seen: set[str], parse: Callable[[], BenchItem]) -> None:
    try:
        item = parse()
        if item.id in seen:
            raise BadRow(f"duplicate id: {item.id!r}")
        seen.add(item.id)
        task.items.append(item)
    except BadRow as bad:
        task.problems.append(Problem(str(path), row_no, str(bad)))


def read_parquet_task(path: Path, kind: str, files: Iterable[Path], required: Iterable[str],
                      parse: Callable[[dict, Path, int], BenchItem]) -> TaskFile:
    """A task of `kind` from parquet `files`: ids unique across all of them."""
    task = TaskFile(path=path, kind=kind, name=kind)
    seen: set[str] = set()
    for file in files:
        read_parquet(task, file, required, parse, seen)
    return task


def parquet_files(path: Path, pattern: str) -> list[Path]:
    """`path` itself when it is a file, else the files under it matching `pattern`; none is an error."""
    if path.is_file():
        return [path]
    files = sorted(path.glob(pattern)) if path.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{path}: no parquet files (expected a .parquet file or a directory with {pattern})")
    return files
