"""Wall time of one short debug training process on CPU: eager (the package's CPU workarounds, which turn
torch.compile off) against megatron's default, where its jit_fuser functions go through torch.compile,
with inductor's on-disk cache cold (a fresh machine or container: CI, a new job) and warm (a second run).

Each run is `python -m nemo_twvlm.training.pretrain CONFIG.json` in a child process, as the test suite and
the demo start training: the `twvlm_debug` recipe on --data, --steps steps, a checkpoint every --steps/2
(so the save path is in the time). The baseline child wraps `apply_cpu_workarounds` so that torch.compile
is on again after it, which is how every training process ran before. A cold run gets an empty
TORCHINDUCTOR_CACHE_DIR of its own; warm runs share one that an untimed compiled run filled first. The
variants alternate, --repeats times each, so all see the same load.

    .venv/bin/python scripts/bench_train_start.py

Reported: each child's wall time and megatron's own "time to initialize megatron", and the ratio of the
means (compiled / eager, for each cache).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import DEFAULT_DATA, ROOT, ensure_data, machine_info, print_machine  # noqa: E402
from bench_step import bench_config  # noqa: E402

# The baseline: megatron's default (inductor compiles its fused element-wise kernels) with every other
# CPU workaround in place.
_COMPILED_LAUNCH = """
import runpy, sys
import torch
import nemo_twvlm.compat as compat
import nemo_twvlm.compat.cpu as cpu

applied = cpu.apply_cpu_workarounds

def apply_and_compile():
    names = applied()
    torch._dynamo.config.disable = False
    return names

cpu.apply_cpu_workarounds = compat.apply_cpu_workarounds = apply_and_compile
runpy.run_module("nemo_twvlm.training.pretrain", run_name="__main__", alter_sys=True)
"""
_INIT_LINE = re.compile(r"time to initialize megatron \(seconds\): ([0-9.]+)")
VARIANTS = ("eager", "compiled_warm", "compiled_cold")


def run_child(variant: str, config_path: Path, log_path: Path, cache_dir: Path) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
    if variant == "eager":
        command = [sys.executable, "-m", "nemo_twvlm.training.pretrain", str(config_path)]
    else:
        command = [sys.executable, "-c", _COMPILED_LAUNCH, str(config_path)]
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"the {variant} run failed (exit {proc.returncode}); see {log_path}")
    init = _INIT_LINE.search(log_path.read_text())
    if init is None:
        raise RuntimeError(f"no 'time to initialize megatron' line in {log_path}")
    return {"variant": variant, "wall_s": wall, "init_s": float(init[1])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=8, help="training steps per run (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, alternated (default 3)")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.repeats < 1:
        parser.error(f"--steps {args.steps} / --repeats {args.repeats}: expected --steps >= 2 and --repeats >= 1")
    info = machine_info()
    print_machine(info)
    data = ensure_data(args.data)
    from nemo_twvlm.training.config import config_to_json

    def child(tmp: Path, variant: str, name: str, cache_dir: Path) -> dict:
        run_dir = tmp / name
        cfg = bench_config(data, args.steps, log_interval=1)
        cfg.name = "bench_train_start"
        cfg.checkpoint = dataclasses.replace(cfg.checkpoint, save=str(run_dir / "ckpt"),
                                             save_interval=args.steps // 2)
        run_dir.mkdir()
        config_path = run_dir / "config.json"
        config_path.write_text(config_to_json(cfg))
        return run_child(variant, config_path, run_dir / "log.txt", cache_dir)

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_train_start_") as tmp_dir:
        tmp = Path(tmp_dir)
        warm_cache = tmp / "inductor_warm"
        child(tmp, "compiled_warm", "fill_warm_cache", warm_cache)
        for repeat in range(args.repeats):
            # Alternate the order, so no variant always runs first (on a warmer page cache).
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                cache = warm_cache if variant != "compiled_cold" else tmp / f"inductor_cold_{repeat}"
                run = {**child(tmp, variant, f"{variant}_{repeat}", cache), "repeat": repeat}
                runs.append(run)
                print(f"repeat {repeat} {variant:>13}: wall {run['wall_s']:6.1f} s, "
                      f"megatron init {run['init_s']:5.1f} s", flush=True)
    means = {v: statistics.mean(r["wall_s"] for r in runs if r["variant"] == v) for v in VARIANTS}
    ratios = {v: means[v] / means["eager"] for v in VARIANTS[1:]}
    print("mean wall: " + ", ".join(f"{v} {means[v]:.1f} s" for v in VARIANTS) + "; "
          + ", ".join(f"{v} / eager = {ratios[v]:.2f}" for v in ratios))
    result = {"machine": info, "steps": args.steps, "runs": runs, "mean_wall_s": means, "ratios": ratios}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
