"""Whole-run growth: the pairs pipeline end to end (every stage, the single-process dedup, finalize with
Energon's index) on 10^4 -> 10^5 pairs, one core, each size in a fresh process warmed on one tar first;
time per sample by stage, peak RSS, and the fitted exponent of each against n. The 5*10^7 plan
(plan.py) extrapolates per-sample costs linearly: this is the check that nothing in a run grows
faster than n.

    .venv/bin/python scripts/bench_curation_growth.py [--pairs 10000 30000 100000] [--size 256]

Input: bench_curation's photos and captions (as its write_input makes them), in tars of 1,000,
written once for the largest size by two processes; each size reads the first n of them.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_curation  # noqa: E402

PER_TAR = 1000


def _write_tar(args: tuple[Path, int, int]) -> None:
    folder, index, size = args
    rng = np.random.default_rng(index)
    samples = []
    for i in range(PER_TAR):
        caption = "".join(bench_curation.ZH[j] for j in rng.choice(len(bench_curation.ZH), 3, replace=False))
        samples.append((f"s{index * PER_TAR + i:08d}", {"jpg": bench_curation.photo(rng, size),
                                                         "txt": caption.encode()}))
    (folder / f"{index:05d}.tar").write_bytes(bench_curation.tar_bytes(samples))


def one_size(folder: Path, out: Path, tokenizer: Path) -> dict:
    """The run on `folder`, in this (fresh) process, after a run on its first tar has paid the imports and
    model loads: stage CPU by stage, wall, finalize and peak RSS."""
    warm = out.parent / f"{out.name}_warm_in"
    warm.mkdir()
    (warm / "00000.tar").symlink_to((folder / "00000.tar").resolve())
    bench_curation.pipeline_rate(bench_curation.config(warm, out.parent / f"{out.name}_warm", tokenizer))
    run = bench_curation.pipeline_rate(bench_curation.config(folder, out, tokenizer))
    return {"input": run["input"], "stages_s": run["stages_s"], "finalize_s": round(run["with_finalize_s"] -
            run["stages_s"], 3), "stage_cpu_s": {k: round(v, 3) for k, v in run["stage_cpu_s"].items()},
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def exponent(sizes: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) on log(n)."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--one", nargs=3, metavar=("FOLDER", "OUT", "TOKENIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(*map(Path, args.one))))
        return
    if any(n < PER_TAR or n % PER_TAR for n in args.pairs):
        raise SystemExit(f"--pairs: multiples of {PER_TAR}, the pairs a tar holds")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "all"
        source.mkdir()
        with Pool(2) as pool:
            pool.map(_write_tar, [(source, i, args.size) for i in range(max(args.pairs) // PER_TAR)])
        tokenizer = bench_curation.tokenizer_dir("meta", tmp)
        results = []
        for n in args.pairs:
            folder = tmp / f"in{n}"
            folder.mkdir()
            for tar in sorted(source.glob("*.tar"))[: n // PER_TAR]:
                (folder / tar.name).symlink_to(tar)
            command = [sys.executable, __file__, "--one", str(folder), str(tmp / f"out{n}"), str(tokenizer)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps({"pairs": n, **results[-1]}), flush=True)
    sizes = [r["input"] for r in results]
    stages = list(results[0]["stage_cpu_s"])
    growth = {name: round(exponent(sizes, [max(r["stage_cpu_s"][name], 1e-3) for r in results]), 2)
              for name in stages if results[-1]["stage_cpu_s"][name] >= 0.5}
    print(json.dumps({"exponents": {"stages_wall": round(exponent(sizes, [r["stages_s"] for r in results]), 2),
                                    "finalize": round(exponent(sizes, [r["finalize_s"] for r in results]), 2),
                                    "stage_cpu (>= 0.5 s at the largest)": growth}}))
    print(f"bench_curation_growth: {sizes[0]}->{sizes[-1]} pairs at {args.size} px: "
          f"{1e3 * results[0]['stages_s'] / sizes[0]:.3f} -> {1e3 * results[-1]['stages_s'] / sizes[-1]:.3f} ms/sample "
          f"(stages, wall), finalize {1e3 * results[0]['finalize_s'] / sizes[0]:.3f} -> "
          f"{1e3 * results[-1]['finalize_s'] / sizes[-1]:.3f} ms/sample; peak RSS "
          f"{results[0]['max_rss_mib']} -> {results[-1]['max_rss_mib']} MiB")


if __name__ == "__main__":
    main()
