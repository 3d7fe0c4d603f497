"""Caption near-dup at scale: the single-process dedup stage vs the sharded form (dedup.shards), in
time and in peak memory per task, on n captions of which ~5% near-duplicate another.

    .venv/bin/python scripts/bench_dedup.py [--captions 10000 100000] [--shards 4 16]

Signatures are computed once per n and written as analysed-part tables (256 samples per part, 40
parts per source), as the pipeline's checkpoint stage leaves them; both forms then start from disk:
single = read every part's signatures + DedupStage (one task); sharded = dedup_partition per part,
then each shard task, then the merge. Everything runs in this process on one core, so the sharded
times are CPU per task: on a cluster the parts and the shards run side by side. Peak memory is
tracemalloc's (Python objects and numpy arrays, not Arrow's transient buffers), measured in a second
pass so that tracing does not slow the timed one. Decisions are checked equal. One JSON line per
measurement, then a summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_curation import near_dup_captions  # noqa: E402

from nemo_twvlm.curation.cli import compose_config  # noqa: E402
from nemo_twvlm.curation.hashing import TextMinHasher  # noqa: E402
from nemo_twvlm.curation.parts import part_table  # noqa: E402
from nemo_twvlm.curation.sample import DedupShard, SignatureBatch  # noqa: E402
from nemo_twvlm.curation.stages.dedup.banding import Banding  # noqa: E402
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage  # noqa: E402
from nemo_twvlm.curation.stages.dedup.sharded import (  # noqa: E402
    DedupFanoutStage,
    DedupMergeStage,
    DedupPartitionStage,
    DedupShardStage,
)
from nemo_twvlm.curation.storage import read_signatures, write_part_table  # noqa: E402
from nemo_twvlm.curation.zh import dedup_normalise, shingles  # noqa: E402

PART, PARTS_PER_SOURCE = 256, 40
# The pairs config's dedup settings (conf/curation/pairs_zh_tw.yaml), captions only.
_DEDUP = compose_config("pairs_zh_tw", [], check=False).dedup
SETTINGS = {"exact": _DEDUP.exact, "image_hamming": None, "image_bands": _DEDUP.image_bands,
            "caption_jaccard": _DEDUP.caption_jaccard, "num_perm": _DEDUP.num_perm}


def write_parts(work: Path, signatures: list[np.ndarray]) -> list[tuple[str, int, int]]:
    """Analysed-part tables holding the signature columns; returns (source, part, num_parts)."""
    parts = []
    per_source = PART * PARTS_PER_SOURCE
    for s, start in enumerate(range(0, len(signatures), per_source)):
        chunk = signatures[start:start + per_source]
        num_parts = -(-len(chunk) // PART)
        for p in range(num_parts):
            rows = [{"index": i, "key": f"c{start + i:07d}", "doc": "[]", "images": [], "image_exts": [],
                     "content_sha": f"{start + i:032x}", "phash": None, "minhash": chunk[i].tobytes(),
                     "text_tokens": 20, "image_tokens": 0, "meta": "{}"}
                    for i in range(p * PART, min((p + 1) * PART, len(chunk)))]
            write_part_table(part_table(work, f"src{s:03d}", p), rows)
            parts.append((f"src{s:03d}", p, num_parts))
    return parts


def _batches(work: Path, parts) -> list[SignatureBatch]:
    return [SignatureBatch(dataset_name="bench", data=read_signatures(part_table(work, source, p)), source=source,
                           part=p, num_parts=n) for source, p, n in parts]


def single(work: Path, parts) -> dict:
    batches = _batches(work, parts)
    return {d.source: d.data for d in DedupStage(**SETTINGS, token_budget=None, joint=False).process_batch(batches)}


def sharded(work: Path, parts, shards: int, seconds: dict) -> dict:
    """The four stages in turn; `seconds` gets partition (all parts), each shard, and merge."""
    start = time.perf_counter()
    partition = DedupPartitionStage(str(work), shards, Banding(**SETTINGS))
    done = [partition.process(b) for b in _batches(work, parts)]
    seconds["partition"] = time.perf_counter() - start
    tasks = DedupFanoutStage(shards).process_batch(done)
    found, seconds["shards"] = [], []
    for task in tasks:
        start = time.perf_counter()
        found.append(shard_task(work, task))
        seconds["shards"].append(time.perf_counter() - start)
    start = time.perf_counter()
    decisions = DedupMergeStage(str(work), Banding(**SETTINGS), None).process_batch(found)
    seconds["merge"] = time.perf_counter() - start
    return {d.source: d.data for d in decisions}


def shard_task(work: Path, task: DedupShard):
    return DedupShardStage(str(work), Banding(**SETTINGS)).process(task)


def peak_mb(fn, *args) -> tuple[float, object]:
    tracemalloc.start()
    try:
        result = fn(*args)
        return tracemalloc.get_traced_memory()[1] / 2**20, result
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--shards", type=int, nargs="*", default=[4, 16])
    args = parser.parse_args()
    hasher = TextMinHasher(num_perm=SETTINGS["num_perm"])
    rows = []
    for n in args.captions:
        start = time.perf_counter()
        signatures = [hasher(shingles(dedup_normalise(c), _DEDUP.shingle))
                      for c in near_dup_captions(n, np.random.default_rng(1))]
        minhash_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            parts = write_parts(work, signatures)
            start = time.perf_counter()
            expected = single(work, parts)
            row = {"captions": n, "minhash_s": round(minhash_s, 2), "single_s": round(time.perf_counter() - start, 2),
                   "single_peak_mb": round(peak_mb(single, work, parts)[0], 1),
                   "near_dups": sum(len(d) for d in expected.values())}
            for shards in args.shards:
                seconds: dict = {}
                assert sharded(work, parts, shards, seconds) == expected, f"{shards} shards decided differently"
                tasks = DedupFanoutStage(shards).process_batch(
                    [SignatureBatch(dataset_name="bench", source=s, part=p, num_parts=k) for s, p, k in parts])
                shard_peaks, found = zip(*(peak_mb(shard_task, work, t) for t in tasks))
                merge_peak, _ = peak_mb(DedupMergeStage(str(work), Banding(**SETTINGS), None).process_batch, list(found))
                row[f"shards_{shards}"] = {
                    "partition_s": round(seconds["partition"], 2),
                    "partition_ms_per_part": round(1e3 * seconds["partition"] / len(parts), 1),
                    "shard_s_max": round(max(seconds["shards"]), 3), "shard_s_sum": round(sum(seconds["shards"]), 2),
                    "merge_s": round(seconds["merge"], 3),
                    "shard_peak_mb_max": round(max(shard_peaks), 1), "merge_peak_mb": round(merge_peak, 1),
                    "candidates": sum(len(f.data.refs) for f in found)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = last["captions"] / first["captions"]
        line = (f"bench_dedup: captions {first['captions']}->{last['captions']} (x{growth:.0f}): single dedup "
                f"{first['single_s']}->{last['single_s']} s, peak {first['single_peak_mb']}->{last['single_peak_mb']} MB")
        for shards in args.shards:
            a, b = first[f"shards_{shards}"], last[f"shards_{shards}"]
            line += (f"; {shards} shards: largest shard {a['shard_s_max']}->{b['shard_s_max']} s, "
                     f"{a['shard_peak_mb_max']}->{b['shard_peak_mb_max']} MB, merge {a['merge_s']}->{b['merge_s']} s")
        print(line)


if __name__ == "__main__":
    main()
