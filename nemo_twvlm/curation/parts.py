"""Sources split into parts of at most `batch_samples` samples, and which parts a run already did.

A part is the unit of work and of resumption: its marker (work/analysed/<source>/part-<p>.json) is
written after its table and its quarantine tar, so a part with a marker is complete.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.sample import Rejection, Sample, SampleBatch
from nemo_twvlm.curation.storage import read_json


@dataclass(frozen=True)
class RowRange:
    """Rows [start, stop) of an input file of `total` rows, read as one task (a file too large to hold
    whole: stages.io.list_inputs). `start` is a multiple of the part size, so a part is never split.
    A JSON or JSONL file's range also holds the byte offset of row `start` and the keys of the whole
    file's rows (what a missing column is judged by). `stamp` is the file's (size, mtime_ns) when it was
    listed: the reader refuses a file changed since."""

    start: int
    stop: int
    total: int
    offset: int | None = None
    columns: tuple[str, ...] | None = None
    stamp: tuple[int, int] | None = None

    def parts(self, batch_samples: int) -> range:
        return range(self.start // batch_samples, math.ceil(self.stop / batch_samples))


def rows_per_range(rows_per_read: int, batch_samples: int) -> int:
    """The rows of a full RowRange: `input.rows_per_read` rounded up to whole parts."""
    return math.ceil(rows_per_read / batch_samples) * batch_samples


def analysed_dir(work_dir: str | Path, source: str) -> Path:
    return Path(work_dir) / "analysed" / source


def part_table(work_dir: str | Path, source: str, part: int) -> Path:
    return analysed_dir(work_dir, source) / f"part-{part:05d}.parquet"


def part_marker(work_dir: str | Path, source: str, part: int) -> Path:
    return analysed_dir(work_dir, source) / f"part-{part:05d}.json"


def dedup_partition_dir(work_dir: str | Path, num_shards: int) -> Path:
    """The sharded dedup's partition files for `num_shards` shards (see nemo_twvlm.curation.stages.dedup.banding)."""
    return Path(work_dir) / "dedup" / f"shards-{num_shards}"


def dedup_partition(work_dir: str | Path, num_shards: int, source: str, part: int) -> Path:
    """The band keys of one part, one record batch per shard they go to."""
    return dedup_partition_dir(work_dir, num_shards) / source / f"part-{part:05d}.arrow"


def final_marker(work_dir: str | Path, source: str) -> Path:
    return Path(work_dir) / "final" / f"{source}.json"


def done_parts(work_dir: str | Path, source: str) -> tuple[set[int], int | None]:
    """Parts with a marker, and the part count they agree on (None if none or they disagree)."""
    markers = sorted(analysed_dir(work_dir, source).glob("part-*.json"))
    counts = {read_json(m)["num_parts"] for m in markers}
    parts = {int(m.stem.split("-")[1]) for m in markers}
    return parts, (counts.pop() if len(counts) == 1 else None)


def require_every_part(parts: list[tuple[str, int, int]], stage: str) -> None:
    """A fan-in stage must see every part of every source: (source, part, num_parts) triples."""
    by_source: dict[str, list[tuple[int, int]]] = {}
    for source, part, num_parts in parts:
        by_source.setdefault(source, []).append((part, num_parts))
    for source, got in by_source.items():
        if sorted(p for p, _ in got) != list(range(got[0][1])):
            raise RuntimeError(f"{stage} got parts {sorted(p for p, _ in got)} of {got[0][1]} for source {source!r}: "
                               "the executor split the fan-in batch")


def resumed_batches(work_dir: str | Path, source: str, dataset_name: str, rows: RowRange | None,
                    batch_samples: int) -> list[SampleBatch] | None:
    """Empty `resumed` batches when every part of `source` (or of its `rows`, in parts of `batch_samples`) is
    done, so that input is not read again."""
    parts, num_parts = done_parts(work_dir, source)
    if num_parts is None or (rows is not None and num_parts != max(1, math.ceil(rows.total / batch_samples))):
        return None
    wanted = range(num_parts) if rows is None else rows.parts(batch_samples)
    if not parts.issuperset(wanted):
        return None
    return [SampleBatch(dataset_name=dataset_name, source=source, part=p, num_parts=num_parts, resumed=True)
            for p in wanted]


def split_parts(dataset_name: str, source: str, samples: list[Sample], rejected: list[Rejection], batch_samples: int,
                work_dir: str | Path, stage: str, rows: RowRange | None = None) -> list[SampleBatch]:
    """Cut a source's samples (indices 0..n-1, or those of `rows`) into parts; parts already done come back
    `resumed`."""
    total = rows.total if rows else 1 + max([s.index for s in samples] + [r.index for r in rejected], default=-1)
    num_parts = max(1, math.ceil(total / batch_samples))
    done, done_count = done_parts(work_dir, source)
    if done_count != num_parts:
        done = set()  # markers from a run that cut the source differently: redo every part
    batches = {p: SampleBatch(dataset_name=dataset_name, source=source, part=p, num_parts=num_parts,
                              resumed=p in done) for p in (rows.parts(batch_samples) if rows else range(num_parts))}
    for sample in samples:
        batch = batches[sample.index // batch_samples]
        if not batch.resumed:
            batch.data.append(sample)
    for rejection in rejected:
        batch = batches[rejection.index // batch_samples]
        if not batch.resumed:
            batch.rejected.append(rejection)
    for batch in batches.values():
        reasons = Counter(r.reason for r in batch.rejected)
        batch.record(stage, len(batch.data) + len(batch.rejected), len(batch.data), reasons)
    return list(batches.values())
