"""Read interleaved documents from JSONL: `{"id": ..., "segments": [text | {"image": url-or-path}, ...]}`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import FileGroupTask

from nemo_twvlm.curation.parts import resumed_batches, split_parts
from nemo_twvlm.curation.sample import ImageItem, Reject, Rejection, Sample, SampleBatch
from nemo_twvlm.curation.stages.read_table import read_rows
from nemo_twvlm.curation.storage import source_id


@dataclass
class DocumentReaderStage(ProcessingStage[FileGroupTask, SampleBatch]):
    """One document per line, segments in reading order; images are fetched by the download stage."""

    input_dir: str
    work_dir: str
    key_column: str = "id"
    batch_samples: int = 64
    name: str = "read"

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
        rows, error = read_rows(path)
        samples: list[Sample] = []
        rejected: list[Rejection] = []
        if error:
            rejected.append(Rejection(source, 0, self.name, "unreadable_file", error))
        base = str(Path(path).parent)
        for index, row in enumerate(rows):
            key = str((row or {}).get(self.key_column) or f"{source}-{index:07d}")
            raw = {"doc.json": json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")}
            try:
                samples.append(Sample(key=key, index=index, segments=_segments(row, base), raw=raw))
            except Reject as r:
                rejected.append(Rejection(key, index, self.name, r.reason, r.detail, raw))
        return split_parts(task.dataset_name, source, samples, rejected, self.batch_samples, self.work_dir,
                           self.name)


def _segments(row: dict | None, base: str) -> list:
    if row is None:
        raise Reject("bad_row", "line is not a JSON object")
    segments = row.get("segments")
    if not isinstance(segments, list) or not segments:
        raise Reject("bad_row", "no non-empty 'segments' list")
    out: list = []
    for seg in segments:
        if isinstance(seg, str):
            out.append(seg)
        elif isinstance(seg, dict) and isinstance(seg.get("image"), str) and seg["image"].strip():
            out.append(ImageItem(ref=seg["image"].strip(), meta={"base_dir": base}))
        else:
            raise Reject("bad_row", f"segment {seg!r:.80} is neither text nor {{'image': url-or-path}}")
    if not any(isinstance(s, ImageItem) for s in out):
        raise Reject("missing_image", "document has no image segment")
    if not any(isinstance(s, str) and s.strip() for s in out):
        raise Reject("empty_caption", "document has no text segment")
    return out
