"""Near-duplicate search at the seed's scale: time and peak memory per dedup task as n grows, the fitted
growth exponent, decision identity with exhaustive search, and an extrapolation to 5*10^7.

    nice -n 10 .venv/bin/python scripts/bench_dedup_scale.py [--sizes 100000 1000000 5000000] [--queries 5000]

Signatures are synthetic with a web-like mix (near_dup_search.synthetic_codes: uniform 64-bit codes,
20% in clusters of 2-5,000 within the radius; MinHash signatures likewise, clusters sharing ~90% of
their values). Each (method, n) runs in its own process, on one thread, so its peak RSS is its own.

A dedup task at n does n adds (of kept items) and n queries against an index that grows to n. Timing
every query of the flat layout at 5*10^6 takes hours on this shared machine, so each task is
measured at its final size: the first n - q items are added in bulk (all of them: an upper bound on
the kept set) and timed per item, then the last q go through the stage's own loop (lookahead, query,
add if kept) and are timed per item. Task time = (n - q) * add + n * decide. `--full` also runs whole
tasks (every query) up to a size, to check the sampled figure.
Methods: `flat` / `small` (MultiHashIndex layouts), `lsh` (today's HammingLSH, 8 bands of 8 bits),
`minhash` (today's MinHashIndex, 64 permutations, threshold 0.85).
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
    FLAT, SMALL, MultiHashIndex, first_kept_within, first_kept_within_exhaustive, synthetic_codes,
)

RADIUS, JACCARD, NUM_PERM = 6, 0.85, 64  # the dedup defaults (conf/curation: dedup.*)


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


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one(method: str, n: int, queries: int, full: bool) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    t = time.perf_counter()
    data = minhash_signatures(n) if method == "minhash" else synthetic_codes(n, RADIUS)
    gen_s = time.perf_counter() - t
    base = 0 if full else n - queries
    t = time.perf_counter()
    if method in ("flat", "small"):
        index = MultiHashIndex(RADIUS, layout=FLAT if method == "flat" else SMALL, block=4096)
        index._faiss.add(data[:base].view(np.uint8).reshape(-1, 8))  # bulk add: the kept set so far
        index._ids.extend(range(base))
    elif method == "lsh":
        index = HammingLSH(RADIUS)
        for i, h in enumerate(data[:base].tolist()):
            index.add(i, h)
    else:
        index = MinHashIndex(JACCARD, NUM_PERM)
        for i in range(base):
            index.add(i, data[i])
    add_s = time.perf_counter() - t
    tail = data[base:]
    values = tail.tolist() if method != "minhash" else list(tail)
    t = time.perf_counter()
    kept = 0
    for start in range(0, len(values), 4096):
        block = values[start:start + 4096]
        if method in ("flat", "small"):
            index.lookahead(block)
        for j, v in enumerate(block):
            if index.query(v) is None:
                index.add(base + start + j, v)
                kept += 1
    decide_s = time.perf_counter() - t
    per_add, per_decide = (add_s / base if base else 0.0), decide_s / len(values)
    task_s = decide_s + add_s if full else base * per_add + n * per_decide
    return {"method": method, "n": n, "full": full, "task_s": round(task_s, 2),
            "add_us": round(per_add * 1e6, 2), "decide_us": round(per_decide * 1e6, 1),
            "kept_share_of_decided": round(kept / len(values), 3), "peak_rss_gb": round(rss_gb(), 3),
            "gen_s": round(gen_s, 1)}


def identity(n: int = 20_000) -> dict:
    codes = synthetic_codes(n, RADIUS, seed=7).tolist()
    want = first_kept_within_exhaustive(codes, RADIUS)
    out = {"n": n, "kept": int((want[0] < 0).sum())}
    for name, layout in (("flat", FLAT), ("small", SMALL)):
        got = first_kept_within(codes, RADIUS, layout=layout)
        out[name] = bool(np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]))
    return out


def exponent(rows: list[dict]) -> float:
    n = np.log([r["n"] for r in rows])
    return float(np.polyfit(n, np.log([r["task_s"] for r in rows]), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--methods", nargs="+", default=["flat", "small", "lsh", "minhash"])
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--full", type=int, default=0, help="also run whole tasks up to this n")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.queries, args.whole)))
        return
    print("uptime:", os.popen("uptime").read().strip(), flush=True)
    print(json.dumps({"identity_20k": identity()}), flush=True)
    results: dict[str, list[dict]] = {}
    for method in args.methods:
        for n in args.sizes:
            for whole in ([False, True] if n <= args.full else [False]):
                cmd = [sys.executable, __file__, "--one", method, str(n), "--queries", str(args.queries)]
                done = subprocess.run(cmd + (["--whole"] if whole else []), capture_output=True, text=True)
                if done.returncode:
                    print(json.dumps({"method": method, "n": n, "error": done.stderr.strip()[-400:]}), flush=True)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                if not whole:
                    results.setdefault(method, []).append(row)
    for method, rows in results.items():
        if len(rows) < 2:
            continue
        e = exponent(rows)
        last = rows[-1]
        # 5*10^7 on one node's 32 cores: FAISS spreads each lookahead block over them (the
        # range search is most of the per-item cost); the adds and the ordered loop stay serial.
        t50 = last["task_s"] * (5e7 / last["n"]) ** e
        print(json.dumps({"method": method, "exponent": round(e, 3), "task_s_at_5e7_one_core": round(t50),
                          "peak_rss_gb_at_5e7": round(last["peak_rss_gb"] * 5e7 / last["n"], 1)}), flush=True)
    print("uptime:", os.popen("uptime").read().strip(), flush=True)


if __name__ == "__main__":
    main()
