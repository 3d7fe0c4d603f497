"""Read Parquet / JSONL / JSON-list rows of (url or path, caption) into batches of samples awaiting
download. The readers of the published row layouts (LLaVA JSON, OBELICS, MMC4, documents) are
subclasses: only what a row holds differs."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nemo_twvlm.curation.config import InputConfig
from nemo_twvlm.curation.parts import RowRange, rows_per_range, split_parts
from nemo_twvlm.curation.sample import NOT_AN_OBJECT, ImageItem, Reject, Rejection, Sample, SampleBatch
from nemo_twvlm.curation.stages.io.json_rows import JsonList, jsonl_row, jsonl_rows, row_starts
from nemo_twvlm.curation.stages.io.reader import ReaderStage
from nemo_twvlm.curation.storage import open_unchanged

_SCAN_BAR_BYTES = 64 << 20  # JSON files from this size show the listing's scan


@dataclass
class Rows:
    """A file's rows (None for one that is not an object), the columns found in it (the Parquet
    schema; the keys of any JSON row), and why reading stopped early, as a Reject."""

    rows: list[dict | None] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    error: Reject | None = None


def row_ranges(path: str, rows_per_read: int, batch_samples: int) -> list[RowRange] | None:
    """The ranges of a Parquet, JSON-list or JSONL file of more than `rows_per_read` rows, each a whole
    number of parts of `batch_samples` rows; None for a smaller file, or one whose rows cannot be
    counted (its reader says why). A Parquet file's rows are counted from its footer; a JSON file is
    scanned once for the byte offsets where ranges start (with a progress bar for a large one)."""
    step = rows_per_range(rows_per_read, batch_samples)
    extension = Path(path).suffix.lower()
    stat = os.stat(path)
    stamp = (stat.st_size, stat.st_mtime_ns)
    if extension == ".parquet":
        total = _parquet_rows(path)
        if total is None or total <= rows_per_read:
            return None
        return [RowRange(start, min(start + step, total), total, stamp=stamp) for start in range(0, total, step)]
    if stat.st_size < 2 * rows_per_read:  # a row and its separator take 2 bytes at least
        return None
    try:
        with open(path, "rb") as f, tqdm(total=stat.st_size, unit="B", unit_scale=True, leave=False,
                                         desc=f"row offsets of {Path(path).name}",
                                         disable=stat.st_size < _SCAN_BAR_BYTES) as bar:
            starts = row_starts(f, step, jsonl=extension != ".json", progress=bar.update)
    except (ValueError, OSError):  # not a list, undecodable (UnicodeDecodeError is a ValueError), unreadable
        return None
    if starts.total <= rows_per_read:
        return None
    stops = [*(i * step for i in range(1, len(starts.offsets))), starts.total]
    return [RowRange(i * step, stop, starts.total, offset, starts.columns, stamp)
            for i, (offset, stop) in enumerate(zip(starts.offsets, stops))]


def _parquet_rows(path: str) -> int | None:
    """A Parquet file's row count from its footer, or None when it cannot be read (the reader reports why)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        return None


def read_rows(path: str, rows: RowRange | None = None) -> Rows:
    """Rows of a .parquet, .jsonl or .json (a list of objects) file, or only `rows` of it (a Parquet
    file read by the row groups that hold them, a JSON file from the range's byte offset); never
    raises for a bad file. A range of a file changed since it was listed raises RuntimeError."""
    name = Path(path).name
    extension = Path(path).suffix.lower()  # as curation.inputs lists them: A.PARQUET is a parquet file
    if rows is not None and rows.stamp is not None:
        stamp = {"path": path, "size": rows.stamp[0], "mtime_ns": rows.stamp[1]}
        open_unchanged(stamp, f"rows {rows.start}-{rows.stop} of {name}").close()
    try:
        if extension == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path) if rows is None else _parquet_range(pq.ParquetFile(path), rows)
            return Rows(table.to_pylist(), set(table.schema.names))
        # A whole file is read from its start to its end, as its last range is.
        offset, first, wanted = (0, 0, None) if rows is None else (rows.offset, rows.start, _rows_wanted(rows))
        with open(path, "rb") as f:
            if extension == ".json":
                found = _json_list(f, name, offset, first, wanted)
            else:
                found = Rows([jsonl_row(line) for _, line in islice(jsonl_rows(f, offset), wanted)])
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        return Rows(error=Reject("unreadable_file", f"{name}: {type(e).__name__}: {e}"))
    found.columns = set(rows.columns) if rows and rows.columns is not None else \
        {k for row in found.rows if row for k in row}
    return found


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


def _rows_wanted(rows: RowRange) -> int | None:
    """How many rows to read from the range's offset: the last range (or a whole file) reads on to the
    end, where a JSON list may break off."""
    return None if rows.stop == rows.total else rows.stop - rows.start


def _json_list(f, name: str, offset: int, first: int, wanted: int | None) -> Rows:
    """`wanted` entries (None: all) of a JSON list of objects from entry `first` at byte `offset` (None
    for one that is not an object). One cut off or malformed part-way keeps the entries before the
    break and reports it as `truncated_json`."""
    entries = JsonList(f, offset, first)
    found = Rows([row if isinstance(row, dict) else None for row in islice(entries, wanted)])
    if entries.broken:
        found.error = Reject("truncated_json", f"{name}: {entries.broken}")
    return found


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
