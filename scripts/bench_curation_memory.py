"""Memory of curation workers. A fresh process runs the pairs pipeline on synthetic photos for several
`input.batch_samples` and image sides, with the executor given, and this script reports its peaks.

    .venv/bin/python scripts/bench_curation_memory.py [--size 256 512 1024] [--batch 64 128 256] [--pairs 1024]
                                                      [--executor in_process | ray_data | xenna | xenna_streaming]
                                                      [--ray-cpus N]

- `in_process` (default): the run's own peak RSS, all stages in one process, one task at a time, as one
  worker of a cluster run handles a task. The fit, peak = base + per_sample x batch_samples at each
  side, gives the figures `nemo_twvlm.curation.plan` charges per worker.
- `ray_data`, `xenna` (Xenna in its batch mode), `xenna_streaming` (its default mode, the cluster's):
  the run's wall time; the peak of the PSS summed over the run's process tree (driver, Ray's own
  processes, workers), with Ray's own processes at that moment (everything but the driver and the
  workers); the largest worker's own peak PSS over the run (the analysing worker), sampled every 0.3 s;
  and the most worker processes alive at once.
- `--ray-cpus N` starts Ray with N logical CPUs. Xenna's streaming mode wants a CPU per stage (six here)
  and does not start on a 2-core box without it; oversubscribed so, the memory figures hold and the wall
  times do not.

The input is `--pairs` samples in one tar (bench_curation.write_input's photos); a 1024 px input is
resized to the config's max side as it ships. Each run prints a JSON line, each side a summary line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Run in the child: the pipeline once (stages only, as a worker runs them), then its own peak RSS and its
# file-backed RSS (mapped libraries, which the workers of a node share through the page cache).
CHILD = """{ray_start}
import json, resource, sys
sys.path.insert(0, {scripts!r})
from bench_curation import REPO
from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.executors import make_executor
from nemo_twvlm.curation.pipeline import build_pipeline
cfg = compose_config("pairs_zh_tw", [
    "input_dir={inp}", "output_dir={out}", "input.batch_samples={batch}", "executor.name={executor}",
    *{extra!r}, f"lang.model_path={{REPO / '.venv' / 'share' / 'nemo_twvlm' / 'lid.176.ftz'}}",
    f"tokens.tokenizer={{REPO / 'data' / 'tokenizer'}}"])
build_pipeline(cfg).run(executor=make_executor(cfg.executor.name, dict(cfg.executor.config)))
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({{"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "file_bytes": int(status["RssFile"].split()[0]) * 1024}}))
"""
# --executor: (executor.name, its overrides).
EXECUTORS = {"in_process": ("in_process", []), "ray_data": ("ray_data", []),
             "xenna": ("xenna", ["+executor.config.execution_mode=batch"]), "xenna_streaming": ("xenna", [])}
# Ray Data's and Xenna's worker processes: busy (named for their stage), between tasks, or starting.
WORKER_NAMES = ("ray::MapBatches", "ray::StageWorker", "ray::IDLE")


def run(inp: Path, out: Path, batch: int, executor: str, ray_cpus: int | None = None) -> dict:
    name, extra = EXECUTORS[executor]
    ray_start = f"import ray; ray.init(num_cpus={ray_cpus})" if ray_cpus else ""
    code = CHILD.format(ray_start=ray_start, scripts=str(HERE), inp=str(inp), out=str(out), batch=batch,
                        executor=name, extra=extra)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                 cwd=REPO, env=env)
        peak, worker_peak, most_workers = {"pss": 0}, 0, 0
        while child.poll() is None:
            now = _tree_pss(child.pid)
            if now["pss"] > peak["pss"]:
                peak = now
            workers = [pss for pss, name in now["processes"].values() if _worker(name)]
            worker_peak, most_workers = max([worker_peak, *workers]), max(most_workers, len(workers))
            time.sleep(0.3)
        stdout = child.stdout.read()
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"the curation child failed ({executor}, batch {batch}, {inp}):\n{stderr.read()[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if executor != "in_process":  # the child is then the driver, not a worker
        result["driver_peak_bytes"] = result.pop("peak_bytes")
    workers = [pss for pss, name in peak["processes"].values() if _worker(name)]
    driver = peak["processes"].get(child.pid, (0, ""))[0]
    return {**result, "wall_s": round(time.perf_counter() - start, 1), "tree_pss_bytes": peak["pss"],
            "largest_worker_pss_bytes": worker_peak, "most_workers": most_workers,
            "ray_own_pss_bytes": peak["pss"] - sum(workers) - driver if executor != "in_process" else 0}


def _worker(cmdline: str) -> bool:
    return cmdline.startswith(WORKER_NAMES) or "workers/default_worker.py" in cmdline


def _tree_pss(root: int) -> dict:
    """PSS of `root` and its descendants, each process's and summed (a process gone meanwhile is left out)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    processes, todo = {}, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pss = next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
        processes[pid] = (pss, name)
    return {"pss": sum(pss for pss, _ in processes.values()), "processes": processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="in_process")
    parser.add_argument("--ray-cpus", type=int, help="logical CPUs to start Ray with (default: the machine's)")
    args = parser.parse_args()
    if args.executor == "in_process" and len(args.batch) < 2:
        parser.error("--batch needs two sizes at least, for the fit")
    sys.path.insert(0, str(HERE))
    from bench_curation import write_input

    mib = 2 ** 20
    for size in args.size:
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in"
            write_input(inp, args.pairs, size, per_tar=args.pairs)
            runs = []
            for batch in args.batch:
                runs.append(run(inp, Path(tmp) / f"out{batch}", batch, args.executor, args.ray_cpus))
                print(json.dumps({"size": size, "batch_samples": batch, "executor": args.executor,
                                  **{k.replace("_bytes", "_mib"): round(v / mib, 1) if k.endswith("_bytes") else v
                                     for k, v in runs[-1].items()}}), flush=True)
            if args.executor != "in_process":
                continue
            peaks = [r["peak_bytes"] for r in runs]
            per_sample, base = np.polyfit(args.batch, peaks, 1)
            residual = max(abs(p - (base + per_sample * b)) for b, p in zip(args.batch, peaks))
            print(f"bench_curation_memory: size={size}px base={base / mib:.0f} MiB "
                  f"(file-backed {max(r['file_bytes'] for r in runs) / mib:.0f} MiB) "
                  f"per_sample={per_sample / 2**10:.0f} KiB ({per_sample / size ** 2:.2f} B/px) "
                  f"max_residual={residual / mib:.0f} MiB over batch_samples {args.batch}", flush=True)


if __name__ == "__main__":
    main()
