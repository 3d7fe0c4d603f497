"""Read Parquet / JSONL rows of (url or path, caption) into batches of samples awaiting download."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import FileGroupTask

from nemo_twvlm.curation.parts import resumed_batches, split_parts
from nemo_twvlm.curation.sample import ImageItem, Reject, Rejection, Sample, SampleBatch
from nemo_twvlm.curation.storage import source_id


def read_rows(path: str) -> tuple[list[dict | None], str | None]:
    """Rows of a .parquet or .jsonl file; a JSONL line that is not a JSON object reads as None.
    The second value names why the file could not be read at all."""
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist(), None
        rows: list[dict | None] = []
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    row = None
                rows.append(row if isinstance(row, dict) else None)
        return rows, None
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        return [], f"{type(e).__name__}: {e}"


@dataclass
class TableReaderStage(ProcessingStage[FileGroupTask, SampleBatch]):
    """Each row names its image by `url_column` (http/https url, or a path relative to the file's
    folder) and carries `caption_column`; `key_column` is optional. Images are fetched later."""

    input_dir: str
    work_dir: str
    url_column: str = "url"
    caption_column: str = "caption"
    key_column: str = "key"
    batch_samples: int = 256
    name: str = "read"
    # The member name that keeps the row itself, for the quarantine.
    raw_name = "row.json"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data", "rejected"], []

    def process(self, task: FileGroupTask) -> list[SampleBatch]:
        path = task.data[0]
        source = source_id(path, self.input_dir)
        done = resumed_batches(self.work_dir, source, task.dataset_name)
        if done:
            return done
        rows, error = self._read(path)
        samples: list[Sample] = []
        rejected: list[Rejection] = []
        if error:
            rejected.append(Rejection(source, 0, self.name, "unreadable_file", error))
        base = str(Path(path).parent)
        for index, row in enumerate(rows):
            key = str(row.get(self.key_column) or f"{source}-{index:07d}") if row else f"{source}-{index:07d}"
            raw = self._raw(row)
            try:
                samples.append(self._sample(key, index, row, base, raw))
            except Reject as r:
                rejected.append(Rejection(key, index, self.name, r.reason, r.detail, raw))
        return split_parts(task.dataset_name, source, samples, rejected, self.batch_samples, self.work_dir,
                           self.name)

    def _read(self, path: str) -> tuple[list[dict | None], str | None]:
        return read_rows(path)

    def _raw(self, row: dict | None) -> dict[str, bytes]:
        return {self.raw_name: json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")}

    def _sample(self, key: str, index: int, row: dict | None, base: str, raw: dict[str, bytes]) -> Sample:
        return Sample(key=key, index=index, segments=self._segments(row, base), raw=raw)

    def _segments(self, row: dict | None, base: str) -> list:
        if row is None:
            raise Reject("bad_row", "line is not a JSON object")
        ref = row.get(self.url_column)
        if not isinstance(ref, str) or not ref.strip():
            raise Reject("missing_image", f"no string {self.url_column!r} in row")
        caption = row.get(self.caption_column)
        if caption is None:
            raise Reject("missing_caption", f"no {self.caption_column!r} in row")
        if isinstance(caption, bytes):
            try:
                caption = caption.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Reject("caption_not_utf8", str(e)) from None
        if not isinstance(caption, str):
            raise Reject("bad_row", f"{self.caption_column!r} is {type(caption).__name__}, not text")
        if not caption.strip():
            raise Reject("empty_caption")
        return [ImageItem(ref=ref.strip(), meta={"base_dir": base}), caption]
