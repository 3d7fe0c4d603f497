"""Near-duplicate search at the seed's scale: time and peak memory per dedup task as n grows, the fitted
growth exponent, decision identity with exhaustive search, and an extrapolation to 5*10^7.

    nice -n 10 .venv/bin/python scripts/bench_dedup_scale.py [--sizes 100000 1000000 5000000] [--full 5000000]

Signatures are synthetic with a web-like mix (near_dup_search.synthetic_codes: uniform 64-bit codes,
20% in clusters of 2-5,000 within the radius; MinHash signatures likewise, clusters sharing ~90% of
their values). Each (method, n) runs in its own process, on one thread, so its peak RSS is its own
(it includes the n signatures themselves).

A dedup task at n makes n decisions in input order (lookahead a block, query, add if kept), as
`DedupStage` does. `--full N` times whole tasks up to N. Above it a task is sampled at its final size:
the first n - q items are added (all of them: an upper bound on the kept set) and timed per item, then
the last q are decided and timed; task time = (n - q) * add + n * decide.
Methods: `mih` (near_dup_search.MultiHashIndex), `faiss` (FAISS's IndexBinaryMultiHash, 2 x 32 bits,
nflip 3: what MultiHashIndex was before, the baseline), `lsh` (hashing.HammingLSH, 8 bands of 8 bits)
and `minhash` (hashing.MinHashIndex, the caption index: 64 permutations, threshold 0.85).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from nemo_twvlm.curation.hashing import HammingLSH, MinHashIndex
from nemo_twvlm.curation.near_dup_search import (
    MultiHashIndex, first_kept_within, first_kept_within_exhaustive, synthetic_codes,
)

RADIUS, JACCARD, NUM_PERM, BLOCK = 6, 0.85, 64, 4096  # the dedup defaults (conf/curation: dedup.*)
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # per-core figures unless asked


def minhash_signatures(n: int, seed: int = 0, clustered: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 2**32, size=(n, NUM_PERM), dtype=np.uint32)
    at = 0
    while at < clustered * n:
        size = min(int(np.exp(rng.uniform(np.log(2), np.log(5001)))), n - at)
        redraw = rng.random((size, NUM_PERM)) < 0.1
        sigs[at:at + size] = np.where(redraw, sigs[at:at + size], sigs[at])
        at += size
    return sigs[rng.permutation(n)]


class FaissMultiHash:
    """The baseline: FAISS's multi-index hashing in the same decide loop (pending codes checked by popcount)."""

    def __init__(self):
        import faiss

        faiss.omp_set_num_threads(1)
        self._faiss = faiss.IndexBinaryMultiHash(64, 2, 32)
        self._faiss.nflip = RADIUS // 2
        self._pending: list[int] = []
        self._ahead: dict[int, bool] = {}

    def add(self, _, h: int) -> None:
        self._pending.append(h)

    def lookahead(self, block: list[int]) -> None:
        if self._pending:
            self._faiss.add(np.array(self._pending, np.uint64).view(np.uint8).reshape(-1, 8))
            self._pending = []
        codes = np.unique(np.array(block, np.uint64))
        lims, _, _ = self._faiss.range_search(codes.view(np.uint8).reshape(-1, 8), RADIUS + 1)
        self._ahead = dict(zip(codes.tolist(), (np.diff(lims.astype(np.int64)) > 0).tolist()))

    def query(self, h: int):
        if self._ahead[h]:
            return True
        near = np.bitwise_count(np.array(self._pending, np.uint64) ^ np.uint64(h)) <= RADIUS
        return True if near.any() else None


def make_index(method: str):
    if method == "mih":
        return MultiHashIndex(RADIUS, block=BLOCK, threads=THREADS)
    if method == "faiss":
        return FaissMultiHash()
    if method == "lsh":
        return HammingLSH(RADIUS)
    return MinHashIndex(JACCARD, NUM_PERM)


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one(method: str, n: int, queries: int, full: bool) -> dict:
    t = time.perf_counter()
    data = minhash_signatures(n) if method == "minhash" else synthetic_codes(n, RADIUS)
    values = list(data) if method == "minhash" else data.tolist()
    gen_s = time.perf_counter() - t
    base = 0 if full else n - queries
    index = make_index(method)
    t = time.perf_counter()
    for i in range(base):
        index.add(i, values[i])
    if hasattr(index, "lookahead"):
        index.lookahead(values[:1])  # moves the bulk into the index, inside the timed add
    add_s = time.perf_counter() - t
    t = time.perf_counter()
    kept = 0
    for start in range(base, n, BLOCK):
        block = values[start:start + BLOCK]
        if hasattr(index, "lookahead"):
            index.lookahead(block)
        for j, v in enumerate(block):
            if index.query(v) is None:
                index.add(start + j, v)
                kept += 1
    decide_s = time.perf_counter() - t
    per_add, per_decide = (add_s / base if base else 0.0), decide_s / (n - base)
    task_s = decide_s + add_s if full else base * per_add + n * per_decide
    return {"method": method, "n": n, "full": full, "task_s": round(task_s, 2),
            "add_us": round(per_add * 1e6, 2), "decide_us": round(per_decide * 1e6, 1),
            "kept_share_of_decided": round(kept / (n - base), 3), "peak_rss_gb": round(rss_gb(), 3),
            "gen_s": round(gen_s, 1)}


def identity(n: int = 20_000) -> dict:
    codes = synthetic_codes(n, RADIUS, seed=7).tolist()
    want = first_kept_within_exhaustive(codes, RADIUS)
    got = first_kept_within(codes, RADIUS)
    return {"n": n, "kept": int((want[0] < 0).sum()),
            "mih": bool(np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]))}


def exponent(rows: list[dict]) -> float:
    n = np.log([r["n"] for r in rows])
    return float(np.polyfit(n, np.log([r["task_s"] for r in rows]), 1)[0])


def run_all(args) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for method in args.methods:
        for n in args.sizes:
            whole = n <= args.full and method not in ("faiss", "lsh")
            cmd = [sys.executable, __file__, "--one", method, str(n), "--queries", str(args.queries)]
            done = subprocess.run(cmd + (["--whole"] if whole else []), capture_output=True, text=True)
            if done.returncode:
                print(json.dumps({"method": method, "n": n, "error": done.stderr.strip()[-400:]}), flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            results.setdefault(method, []).append(row)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--methods", nargs="+", default=["mih", "faiss", "minhash"])
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--full", type=int, default=5_000_000,
                    help="time whole tasks up to this n (faiss, lsh: always sampled, whole tasks take hours)")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.queries, args.whole)))
        return
    print("uptime:", os.popen("uptime").read().strip(), flush=True)
    print(json.dumps({"identity_20k": identity()}), flush=True)
    for method, rows in run_all(args).items():
        if len(rows) < 2:
            continue
        e = exponent(rows)
        prev, last = rows[-2], rows[-1]
        t50 = last["task_s"] * (5e7 / last["n"]) ** e
        # Memory is a fixed part (the bitmaps) plus a part per item: extend the last two sizes' line.
        per_item = (last["peak_rss_gb"] - prev["peak_rss_gb"]) / (last["n"] - prev["n"])
        rss50 = last["peak_rss_gb"] + per_item * (5e7 - last["n"])
        print(json.dumps({"method": method, "exponent": round(e, 3), "task_s_at_5e7_one_core": round(t50),
                          "peak_rss_gb_at_5e7": round(rss50, 1)}), flush=True)
    print("uptime:", os.popen("uptime").read().strip(), flush=True)


if __name__ == "__main__":
    main()
