"""Read Parquet / JSONL / JSON-list rows of (url or path, caption) into batches of samples awaiting
download. The readers of the published row layouts (LLaVA JSON, OBELICS, MMC4, documents) are
subclasses: only what a row holds differs."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_twvlm.curation.config import InputConfig
from nemo_twvlm.curation.parts import RowRange, split_parts
from nemo_twvlm.curation.sample import NOT_AN_OBJECT, ImageItem, Reject, Rejection, Sample, SampleBatch
from nemo_twvlm.curation.stages.io.reader import ReaderStage

_SPACE = re.compile(r"\s*")


@dataclass
class Rows:
    """A file's rows (None for one that is not an object), the columns found in it (the Parquet
    schema; the keys of any JSON row), and why reading stopped early, as a Reject."""

    rows: list[dict | None] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    error: Reject | None = None


def parquet_rows(path: str) -> int | None:
    """A Parquet file's row count from its footer, or None when it cannot be read (the reader reports why)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        return None


def read_rows(path: str, rows: RowRange | None = None) -> Rows:
    """Rows of a .parquet, .jsonl or .json (a list of objects) file, or only `rows` of a Parquet file
    (read by the row groups that hold them); never raises for a bad file."""
    name = Path(path).name
    extension = Path(path).suffix.lower()  # as curation.inputs lists them: A.PARQUET is a parquet file
    try:
        if extension == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path) if rows is None else _parquet_range(pq.ParquetFile(path), rows)
            return Rows(table.to_pylist(), set(table.schema.names))
        if rows is not None:
            raise ValueError(f"rows {rows.start}-{rows.stop} of a {extension} file: only Parquet is read by ranges")
        if extension == ".json":
            rows = _json_list(Path(path).read_bytes().decode("utf-8"), name)
        else:
            with open(path, "rb") as f:
                rows = Rows([_jsonl_row(line) for line in f if line.strip()])
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        return Rows(error=Reject("unreadable_file", f"{name}: {type(e).__name__}: {e}"))
    rows.columns = {k for row in rows.rows if row for k in row}
    return rows


def _parquet_range(parquet, rows: RowRange):
    """Rows [start, stop) of a Parquet file, reading only the row groups they lie in."""
    groups, first, offset = [], None, 0
    for i in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(i).num_rows
        if offset + size > rows.start and offset < rows.stop:
            groups.append(i)
            first = offset if first is None else first
        offset += size
    if not groups:
        raise ValueError(f"rows {rows.start}-{rows.stop}: the file has {offset}")
    return parquet.read_row_groups(groups).slice(rows.start - first, rows.stop - rows.start)


def _jsonl_row(line: bytes) -> dict | None:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


def _json_list(text: str, name: str) -> Rows:
    """A JSON list of objects. One cut off (or malformed part-way) keeps the entries before the
    break and reports it as `truncated_json`: like a cut tar, what follows cannot be known."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _salvage_json_list(text, name)
    if not isinstance(data, list):
        raise ValueError(f"the top level is a JSON {type(data).__name__}, expected a list of samples")
    return Rows([row if isinstance(row, dict) else None for row in data])


def _salvage_json_list(text: str, name: str) -> Rows:
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text).end()
    if not text.startswith("[", pos):
        raise ValueError("not a JSON list (it does not start with '[')")
    rows: list[dict | None] = []
    pos += 1
    while True:
        pos = _SPACE.match(text, pos).end()
        try:
            row, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            return Rows(rows, error=Reject("truncated_json", f"{name}: the JSON list breaks off at character "
                                                             f"{e.pos} (line {e.lineno}) after {len(rows)} complete "
                                                             f"entries: {e.msg}"))
        rows.append(row if isinstance(row, dict) else None)
        pos = _SPACE.match(text, pos).end()
        if text.startswith(",", pos):
            pos += 1
        else:  # "]" and then something that made the whole parse fail, or another break
            return Rows(rows, error=Reject("truncated_json", f"{name}: the JSON list is malformed at character "
                                                             f"{pos} after {len(rows)} complete entries"))


def get_field(row: dict, column: str, types: type | tuple[type, ...], missing: str) -> Any:
    """`row[column]`, or a Reject: `missing` when it is absent or null, `bad_field_type` when it is
    not one of `types` (the detail names the field, its type and what was expected)."""
    value = row.get(column)
    if value is None:
        raise Reject(missing, f"no {column!r} in row")
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        raise Reject("bad_field_type", f"{column!r} is {type(value).__name__}, expected {_names(types)}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: type | tuple[type, ...]) -> str:
    return " or ".join({str: "a string", list: "a list", dict: "an object", int: "an integer",
                        bytes: "bytes"}.get(t, t.__name__) for t in _tuple(types))


def text_of(value: Any, column: str) -> str:
    """A caption or text field: a string (bytes are decoded as UTF-8), never blank."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Reject("caption_not_utf8", f"{column!r}: {e}") from None
    if not isinstance(value, str):
        raise Reject("bad_field_type", f"{column!r} is {type(value).__name__}, expected a string")
    if not value.strip():
        raise Reject("empty_caption", f"{column!r} is blank")
    return value


@dataclass
class TableReaderStage(ReaderStage):
    """Each row names its image by `input.url_column` (http/https url, or a path relative to the
    file's folder) and carries `input.caption_column`; `input.key_column` is optional. Images are fetched later.
    Column names are the config's (input.*_column): LAION's are URL/TEXT, DataComp's url/text/uid."""

    input_dir: str
    work_dir: str
    input: InputConfig  # column names, image_dir, batch_samples
    name: str = "read"
    # The member name that keeps the row itself, for the quarantine.
    raw_name = "row.json"

    @property
    def batch_samples(self) -> int:
        return self.input.batch_samples

    def required_columns(self) -> dict[str, str]:
        """Column -> where its name comes from, for the error when a file lacks it."""
        return {self.input.url_column: "input.url_column", self.input.caption_column: "input.caption_column"}

    def base_dir(self, path: str) -> str:
        """The folder a row's relative image path is relative to."""
        return str(Path(path).parent)

    def read(self, path: str, source: str, dataset_name: str, rows: RowRange | None = None) -> list[SampleBatch]:
        table = read_rows(path, rows)
        missing = self._missing_columns(table, Path(path).name)
        samples: list[Sample] = []
        rejected: list[Rejection] = []
        base = self.base_dir(path)
        for index, row in enumerate(table.rows, start=rows.start if rows else 0):
            key = row.get(self.input.key_column) if row else None
            key = f"{source}-{index:07d}" if key is None or key == "" else str(key)  # an id may be 0
            raw = self._raw(row)
            try:
                if missing:
                    raise missing
                samples.append(self._sample(key, index, row, base, raw))
            except Reject as r:
                rejected.append(Rejection(key, index, self.name, r.reason, r.detail, raw))
        if table.error:
            index = len(table.rows) + (rows.start if rows else 0)
            rejected.append(Rejection(f"{source}@{index}", index, self.name, table.error.reason, table.error.detail))
        return split_parts(dataset_name, source, samples, rejected, self.input.batch_samples, self.work_dir,
                           self.name, rows)

    def _missing_columns(self, table: Rows, name: str) -> Reject | None:
        """Every row of a file lacking a needed column is rejected under `missing_column`."""
        if not table.rows or not any(table.rows):
            return None
        absent = [col for col in self.required_columns() if col not in table.columns]
        if not absent:
            return None
        named = ", ".join(f"{col!r} ({self.required_columns()[col]})" for col in absent)
        by_case = {col.lower(): col for col in table.columns}
        near = [f"{by_case[col.lower()]!r} for {col!r}" for col in absent if col.lower() in by_case]
        hint = f" (column names are case-sensitive: found {', '.join(near)})" if near else ""
        return Reject("missing_column", f"{name} has no column {named}; found columns {sorted(table.columns)}{hint}")

    def _raw(self, row: dict | None) -> dict[str, bytes]:
        """What the quarantine keeps of a rejected row."""
        return {self.raw_name: json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")}

    def _sample(self, key: str, index: int, row: dict | None, base: str, raw: dict[str, bytes]) -> Sample:
        return Sample(key=key, index=index, segments=self._segments(row, base), raw=raw)

    def _segments(self, row: dict | None, base: str) -> list:
        if row is None:
            raise Reject("bad_row", NOT_AN_OBJECT)
        ref = get_field(row, self.input.url_column, str, "missing_image")
        if not ref.strip():
            raise Reject("missing_image", f"{self.input.url_column!r} is blank")
        caption = row.get(self.input.caption_column)
        if caption is None:
            raise Reject("missing_caption", f"no {self.input.caption_column!r} in row")
        return [ImageItem(ref=ref.strip(), meta={"base_dir": base}), text_of(caption, self.input.caption_column)]
