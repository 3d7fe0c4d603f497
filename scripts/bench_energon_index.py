"""What indexing curated shards for Energon costs (curation's last step, `energon_prep.prepare`).

    .venv/bin/python scripts/bench_energon_index.py [--samples 20000] [--members 3 5] [--workers 1 2] [--repeat 2]

Writes shards of 1,000 samples as curation does (`storage.tar_bytes`: a 20 KB image part, then small
text and JSON parts, `--members` parts a sample in all) and runs `prepare` on them with each worker
count, alternating, best of `--repeat`. Energon reads every member's header in its worker processes and
feeds one index writer (SQLite) in the calling process, so per sample it prints the workers' CPU (children)
and the index writer's (this process), by member count; their fit per member is what `plan.py` charges.
`--check` also times the header pass `prepare(check_shards=True)` makes first (curation skips it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from nemo_twvlm.curation.storage import tar_bytes
from nemo_twvlm.data import energon_prep

PER_SHARD = 1000


def write_shards(folder: Path, samples: int, members: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    for first in range(0, samples, PER_SHARD):
        rows = []
        for i in range(first, min(first + PER_SHARD, samples)):
            parts = {"jpg": image, "txt": "臺灣的夜市很熱鬧".encode(), "json": json.dumps({"key": i}).encode()}
            parts.update({f"{k}.jpg": image for k in range(members - 3)})
            rows.append((f"src-{i:07d}", parts))
        (folder / f"src-{first // PER_SHARD:05d}.tar").write_bytes(tar_bytes(rows))


def timed_prepare(folder: Path, workers: int, check: bool) -> dict:
    shutil.rmtree(folder / ".nv-meta", ignore_errors=True)
    for index in folder.glob("*.idx"):
        index.unlink()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    energon_prep.prepare(folder, sample_type="CaptioningSample", field_map={"image": "jpg", "caption": "txt"},
                         check_shards=check, workers=workers)
    wall = time.perf_counter() - start
    own2, children2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(a, b):
        return b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime

    return {"wall_s": wall, "writer_cpu_s": cpu(own, own2), "workers_cpu_s": cpu(children, children2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5], help="parts per sample, >= 3")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="also time prepare(check_shards=True)")
    args = parser.parse_args()
    if min(args.members) < 3:
        raise SystemExit(f"--members {min(args.members)}: a curated pair has 3 parts (image, txt, json)")
    per_member = {}
    for members in args.members:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_shards(folder, args.samples, members)
            runs: dict[tuple[int, bool], list[dict]] = {}
            modes = [(w, False) for w in args.workers] + ([(max(args.workers), True)] if args.check else [])
            for _ in range(args.repeat):
                for workers, check in modes:
                    runs.setdefault((workers, check), []).append(timed_prepare(folder, workers, check))
            for (workers, check), results in runs.items():
                best = {k: min(r[k] for r in results) for k in results[0]}
                line = {"members": members, "workers": workers, "check_shards": check,
                        **{k.replace("_s", "_ms_per_sample"): round(1e3 * v / args.samples, 4)
                           for k, v in best.items()}}
                print(json.dumps(line), flush=True)
                if workers == min(args.workers) and not check:
                    per_member[members] = line
    if len(per_member) > 1:
        (m0, a), (m1, b) = sorted(per_member.items())[0], sorted(per_member.items())[-1]
        for key in ("workers_cpu_ms_per_sample", "writer_cpu_ms_per_sample"):
            slope = (b[key] - a[key]) / (m1 - m0)
            print(f"{key}: {a[key] - slope * m0:.4f} per sample + {slope:.4f} per member "
                  f"(from {m0} and {m1} members, {os.cpu_count()} CPUs here)")


if __name__ == "__main__":
    main()
