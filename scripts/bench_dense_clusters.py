"""Dense near-duplicate clusters in the sharded dedup: every matching pair as an edge (the previous
form) vs dense values left to the merge's index (banding.DENSE_DEGREE), in edges, time and peak memory.

    .venv/bin/python scripts/bench_dense_clusters.py [--sizes 20000 100000] [--shards 8]

Signatures as in bench_dedup_scale.py (near_dup_search.synthetic_codes: uniform pHashes, 20% in clusters
of 2-5,000 within 6 bits of a centre (12 of each other); MinHash signatures likewise, clusters sharing ~90% of their values),
in 1,024-sample parts, partitioned once; then both forms run the shard tasks and the merge one after
another on one core. "every pair" is the same code with dense_degree set past any count. Times are
untraced; peak memory is tracemalloc's in a second pass (Python objects and numpy arrays). Decisions
are checked equal between the two forms and to the single-process DedupStage.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup_scale import JACCARD, NUM_PERM, RADIUS, minhash_signatures  # noqa: E402

from nemo_twvlm.curation.near_dup_search import synthetic_codes  # noqa: E402
from nemo_twvlm.curation.sample import SignatureBatch  # noqa: E402
from nemo_twvlm.curation.stages.dedup import banding  # noqa: E402
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage  # noqa: E402
from nemo_twvlm.curation.stages.dedup.sharded import (  # noqa: E402
    DedupFanoutStage,
    DedupMergeStage,
    DedupPartitionStage,
    DedupShardStage,
)

PART = 1024
SETTINGS = {"exact": True, "image_hamming": RADIUS, "image_bands": 8, "caption_jaccard": JACCARD, "num_perm": NUM_PERM}
EVERY_PAIR = 10 ** 12  # a dense_degree no count reaches: every matching pair an edge


def batches(n: int) -> list[SignatureBatch]:
    codes, sigs = synthetic_codes(n, RADIUS, seed=3).tolist(), minhash_signatures(n, seed=4)
    num_parts = -(-n // PART)
    out = []
    for p in range(num_parts):
        idx = range(p * PART, min((p + 1) * PART, n))
        out.append(SignatureBatch(dataset_name="bench", source="src", part=p, num_parts=num_parts, data={
            "index": list(idx), "key": [f"k{i}" for i in idx], "content_sha": [f"{i:032x}" for i in idx],
            "phash": [codes[i] for i in idx], "minhash": [sigs[i] for i in idx],
            "text_tokens": [1] * len(idx), "image_tokens": [1] * len(idx)}))
    return out


def measure(work: Path, tasks, dense_degree: int) -> tuple[dict, dict]:
    banding.DENSE_DEGREE = dense_degree
    start = time.perf_counter()
    found = [DedupShardStage(str(work), banding.Banding(**SETTINGS)).process(t) for t in tasks]
    shard_s = time.perf_counter() - start
    start = time.perf_counter()
    decisions = DedupMergeStage(str(work), banding.Banding(**SETTINGS), None).process_batch(found)
    merge_s = time.perf_counter() - start
    tracemalloc.start()
    peaks = []
    for t in tasks:
        tracemalloc.reset_peak()
        DedupShardStage(str(work), banding.Banding(**SETTINGS)).process(t)
        peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.reset_peak()
    DedupMergeStage(str(work), banding.Banding(**SETTINGS), None).process_batch(found)
    merge_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row = {"edges": sum(len(f.data.edges) for f in found),
           "dense": sum(len(v) for f in found for v in f.data.dense.values()),
           "shards_s": round(shard_s, 2), "merge_s": round(merge_s, 2),
           "shard_peak_mb_max": round(max(peaks) / 2**20, 1), "merge_peak_mb": round(merge_peak / 2**20, 1)}
    return {d.source: d.data for d in decisions}, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    if args.shards < 1 or min(args.sizes) < 1:
        parser.error(f"--shards {args.shards} --sizes {args.sizes}: expected counts >= 1")
    default = banding.DENSE_DEGREE
    for n in args.sizes:
        parts = batches(n)
        expected = {d.source: d.data for d in DedupStage(**SETTINGS, token_budget=None, joint=False).process_batch(parts)}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            partition = DedupPartitionStage(str(work), args.shards, banding.Banding(**SETTINGS))
            tasks = DedupFanoutStage(args.shards).process_batch([partition.process(b) for b in parts])
            row = {"samples": n, "shards": args.shards, "dropped": sum(len(d) for d in expected.values())}
            for name, degree in (("every_pair", EVERY_PAIR), (f"dense_degree_{default}", default)):
                decisions, row[name] = measure(work, tasks, degree)
                assert decisions == expected, f"{name} decided differently from DedupStage at n={n}"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
