"""Persist one analysed part (its table, its quarantine tar, then its marker) and pass on only what
dedup needs. A part an earlier run finished is loaded from disk instead: this is what makes a
killed run resumable, and the sample payloads leave memory here.

An image shipped as its input bytes (not re-encoded) is not copied into the table: the table holds
its byte range in the input tar, which write_shards reads back, so each image is written once."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from nemo_twvlm.curation.parts import part_marker, part_table
from nemo_twvlm.curation.sample import ImageItem, InputFile, Rejection, Sample, SampleBatch, SignatureBatch
from nemo_twvlm.curation.stages.base import CurationStage
from nemo_twvlm.curation.stages.models.image_embed import EMBEDDING
from nemo_twvlm.curation.storage import (
    atomic_write,
    atomic_write_json,
    read_signatures,
    signatures,
    tar_bytes,
    write_part_table,
)

_SIGNATURE_META = ("content_sha", "phash", "minhash", "text_tokens", "image_tokens")
# Image meta that served the stages and is not the sample's: where it was read from, its pixel
# hash (in content_sha already), its CLIP embedding (3 KB of floats per image).
_TRANSIENT_IMAGE_META = ("base_dir", "sha", EMBEDDING)


def quarantine_members(rejections: list[Rejection], keep_dropped: bool) -> list[tuple[str, dict[str, bytes]]]:
    """`<index>.reason.json` for every rejection, plus its input parts where they are kept."""
    members = []
    for r in rejections:
        reason = {"key": r.key, "index": r.index, "stage": r.stage, "reason": r.reason,
                  "disposition": r.disposition, "detail": r.detail, "parts": sorted(r.raw)}
        parts = {"reason.json": json.dumps(reason, ensure_ascii=False, sort_keys=True).encode("utf-8")}
        if r.disposition == "quarantined" or keep_dropped:
            parts.update(r.raw)
        members.append((f"{r.index:07d}", parts))
    return members


def _row(sample: Sample) -> dict:
    images = sample.images
    doc = [{"image": images.index(s)} if isinstance(s, ImageItem) else s for s in sample.segments]
    meta = {k: v for k, v in sample.meta.items() if k not in _SIGNATURE_META}
    meta["images"] = [{k: v for k, v in item.meta.items() if k not in _TRANSIENT_IMAGE_META} | {"ref": item.ref}
                      for item in images]
    spans = [item.passthrough() for item in images]
    return {
        "index": sample.index, "key": sample.key, "doc": json.dumps(doc, ensure_ascii=False),
        "images": [None if span else item.data for item, span in zip(images, spans)],
        "image_exts": [item.ext for item in images],
        "image_spans": [{"offset": span.offset, "size": span.size} if span else None for span in spans],
        **{k: sample.meta[k] for k in _SIGNATURE_META},
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True),
    }


@dataclass
class CheckpointStage(CurationStage[SampleBatch, SignatureBatch]):
    work_dir: str
    quarantine_dir: str
    keep_dropped: bool
    name: str = "checkpoint"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data", "rejected"], []

    def process(self, batch: SampleBatch) -> SignatureBatch:
        table = part_table(self.work_dir, batch.source, batch.part)
        cols = read_signatures(table) if batch.resumed else signatures(self._write(batch, table))
        return SignatureBatch(dataset_name=batch.dataset_name, data=cols, source=batch.source,
                              part=batch.part, num_parts=batch.num_parts)

    def _write(self, batch: SampleBatch, table: Path) -> pa.Table:
        image_file = _image_file(batch)
        written = write_part_table(table, [_row(s) for s in batch.data], image_file and asdict(image_file))
        rejected = sorted(batch.rejected, key=lambda r: r.index)
        quarantine = None
        if rejected:
            quarantine = Path(self.quarantine_dir) / batch.source / f"part-{batch.part:05d}.tar"
            atomic_write(quarantine, tar_bytes(quarantine_members(rejected, self.keep_dropped)))
        atomic_write_json(part_marker(self.work_dir, batch.source, batch.part), {
            "source": batch.source, "part": batch.part, "num_parts": batch.num_parts,
            "input": len(batch.data) + len(rejected), "kept": len(batch.data),
            "rejected": dict(Counter(r.reason for r in rejected)),
            "stages": [{"stage": name, **row} for name, row in batch.stage_counts().items()],  # in order
            "rejections": [[r.key, r.index, r.stage, r.reason, r.detail] for r in rejected],
            "quarantine_tar": quarantine.name if quarantine else None,
        })
        return written


def _image_file(batch: SampleBatch) -> InputFile | None:
    """The input file the part's pass-through images are byte ranges of (a part is cut from one)."""
    files = {span.file for _, item in batch.images() if (span := item.passthrough())}
    if len(files) > 1:
        raise RuntimeError(f"part {batch.part} of {batch.source!r} has images from {len(files)} input files: "
                           f"{sorted(f.path for f in files)}; a part refers to one")
    return files.pop() if files else None
