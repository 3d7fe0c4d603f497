"""Debug-recipe step time through megatron.training against a plain PyTorch loop on the same model and data.

megatron side: the `twvlm_debug` recipe (data pointed at --data, `trainer.max_steps=--steps`, no checkpoint,
log interval 1) runs as `python -m nemo_twvlm.training.pretrain CONFIG.json` in a child process; its
`elapsed time per iteration (ms)` lines after --warmup iterations are averaged.
Baseline: a second child builds the identical model (`init_single_process()` + `build_llava`, same freeze
plan), draws micro-batches from the same Energon loader (same path, seed, packing: the same batches in the
same order), and trains with `torch.optim.AdamW` + grad clipping + the same warm-up/cosine LR, timing each
step (data included, as megatron's iteration time includes it) over the same iterations. Each iteration is
paired with its twin, so the median per-iteration ratio is also reported (robust to load spikes from other
jobs). Both children run with --torch-threads intra-op threads (default 1).

    .venv/bin/python scripts/bench_step.py

The ratio megatron / plain is the cost of megatron.training's loop (DDP grad buffers, its optimizer
wrapper, timers, logging, loss reductions) on top of the model and data work both share.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import (  # noqa: E402
    DEFAULT_DATA, ROOT, add_threads_argument, apply_threads, ensure_data, machine_info, print_machine,
)

# `python -m nemo_twvlm.training.pretrain CONFIG` with torch's intra-op threads pinned: the module sets
# os.cpu_count() threads itself, so its later set_num_threads call is made a no-op.
_PINNED_LAUNCH = ("import atexit, runpy, sys, torch; torch.set_num_threads(int(sys.argv.pop(1))); "
                  "torch.set_num_threads = lambda *_: None; "
                  "atexit.register(lambda: print('bench_step: torch threads', torch.get_num_threads(), flush=True)); "
                  "runpy.run_module('nemo_twvlm.training.pretrain', run_name='__main__', alter_sys=True)")
_ITER_LINE = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?elapsed time per iteration \(ms\): ([0-9.]+)"
                        r".*?lm loss: ([0-9.E+-]+)")


def bench_config(data: Path, steps: int, log_interval: int):
    from nemo_twvlm.launch.recipes import get_recipe

    cfg = get_recipe("twvlm_debug")
    cfg.name = "bench_step"
    cfg.data = dataclasses.replace(cfg.data, path=str(data / "blend.yaml"))
    cfg.trainer = dataclasses.replace(cfg.trainer, max_steps=steps, log_interval=log_interval,
                                      warmup_steps=min(cfg.trainer.warmup_steps, steps - 1))
    cfg.checkpoint = dataclasses.replace(cfg.checkpoint, save=None, load=None, save_interval=None)
    return cfg


def run_megatron(config_path: Path, log_path: Path, threads: int) -> list[tuple[int, float, float]]:
    """(last iteration of the window, mean ms per iteration in it, lm loss) for every logged window."""
    command = [sys.executable, "-m", "nemo_twvlm.training.pretrain", str(config_path)]
    if threads:
        command = [sys.executable, "-c", _PINNED_LAUNCH, str(threads), str(config_path)]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"megatron run failed (exit {proc.returncode}); see {log_path}")
    text = log_path.read_text()
    windows = [(int(m[1]), float(m[2]), float(m[3])) for m in _ITER_LINE.finditer(text)]
    pinned = re.search(r"bench_step: torch threads (\d+)", text)
    if threads and (pinned is None or int(pinned[1]) != threads):
        raise RuntimeError(f"the megatron run did not keep torch threads at {threads}; see {log_path}")
    if not windows:
        raise RuntimeError(f"no 'elapsed time per iteration' lines in {log_path}")
    return windows


def run_baseline_child(config_path: Path, out_path: Path, threads: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--baseline-child", str(config_path), str(out_path),
               "--torch-threads", str(threads)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"baseline failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out_path.read_text())


def baseline(config_path: Path, out_path: Path, threads: int) -> None:
    """The plain PyTorch loop (runs in its own process: megatron's globals are once-per-process)."""
    import torch

    from nemo_twvlm.data.loader import train_loader
    from nemo_twvlm.data.task_encoder import LlavaTaskEncoder
    from nemo_twvlm.data.tokenizer import image_token_id, load_tokenizer
    from nemo_twvlm.model.freeze import apply_freeze_plan
    from nemo_twvlm.model.llava import build_llava
    from nemo_twvlm.presets import get_preset
    from nemo_twvlm.compat.distributed import init_single_process
    from nemo_twvlm.training.config import config_from_json
    from nemo_twvlm.training.step import masked_token_loss, model_inputs

    cfg = config_from_json(config_path.read_text(encoding="utf-8"))
    t, d = cfg.trainer, cfg.data
    # Without a pin, what nemo_twvlm.training.pretrain sets at world size 1.
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    init_single_process(t.seed)
    torch.manual_seed(t.seed)
    tokenizer = load_tokenizer(ROOT / d.tokenizer)
    preset = get_preset(cfg.model.preset)
    image_id = image_token_id(tokenizer)
    model = build_llava(preset, image_token_index=image_id, use_te=False)
    apply_freeze_plan(model, cfg.model.freeze_plan, cfg.model.train_vision)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=(0.9, t.adam_beta2), eps=1e-8, weight_decay=t.weight_decay)

    def lr_factor(step: int) -> float:  # megatron's linear warm-up then cosine decay to min_lr
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        return (t.min_lr + (t.lr - t.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / t.lr

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    loader = train_loader(str(ROOT / d.path), LlavaTaskEncoder(tokenizer, preset, d.seq_length),
                          micro_batch_size=d.micro_batch_size, packing=d.packing,
                          packing_buffer_size=d.packing_buffer_size, num_workers=d.num_workers, seed=d.seed)
    batches = iter(loader)
    steps = []
    for _ in range(t.max_steps):
        start = time.perf_counter()
        batch = next(batches)
        loaded = time.perf_counter()
        output, loss_mask = model(**model_inputs(batch, image_token_index=image_id,
                                                 num_image_tokens=preset.num_image_tokens, use_te=False))
        loss_sum, num_tokens, _ = masked_token_loss(loss_mask, output)
        loss = loss_sum / num_tokens.clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.clip_grad)
        optimizer.step()
        scheduler.step()
        steps.append({"ms": (time.perf_counter() - start) * 1e3, "data_ms": (loaded - start) * 1e3,
                      "loss": loss.item()})
    out_path.write_text(json.dumps({"steps": steps, "torch_threads": torch.get_num_threads()}), encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20, help="iterations left out of the averages")
    parser.add_argument("--log-interval", type=int, default=1,
                        help="megatron's log interval; 1 pairs every iteration with the plain loop's")
    parser.add_argument("--repeats", type=int, default=1, help="megatron/plain pairs of runs, order alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_step", help="logs and configs go here")
    add_threads_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--baseline-child", nargs=2, type=Path, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        baseline(*args.baseline_child, args.torch_threads)
        return {}
    if args.warmup % args.log_interval or args.warmup >= args.steps:
        parser.error("--warmup must be a multiple of --log-interval and less than --steps")

    apply_threads(args.torch_threads)
    info = machine_info()
    print_machine(info)
    data = ensure_data(args.data.resolve())
    from nemo_twvlm.training.config import config_to_json

    cfg = bench_config(data, args.steps, args.log_interval)
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = args.out / "config.json"
    config_path.write_text(config_to_json(cfg), encoding="utf-8")
    print(f"recipe twvlm_debug: micro-batch {cfg.data.micro_batch_size}, seq_length {cfg.data.seq_length}, "
          f"packing buffer {cfg.data.packing_buffer_size}, {args.steps} steps, iterations "
          f"{args.warmup + 1}-{args.steps} averaged, megatron log interval {args.log_interval}; "
          f"data {cfg.data.path}", flush=True)

    runs = []
    for repeat in range(args.repeats):
        order = ("megatron", "plain") if repeat % 2 == 0 else ("plain", "megatron")  # alternate against drift
        run = {}
        for side in order:
            start = time.perf_counter()
            if side == "megatron":
                run["windows"] = run_megatron(config_path, args.out / f"megatron_{repeat}.log", args.torch_threads)
            else:
                run["steps"] = run_baseline_child(config_path, args.out / f"baseline_{repeat}.json",
                                                  args.torch_threads)["steps"]
            run[f"{side}_wall_s"] = time.perf_counter() - start
        # Pair each logged megatron window with the same iterations of the plain loop (same batches).
        run["pairs"], previous = [], 0
        for iteration, ms, _ in run["windows"]:
            if iteration > args.warmup:
                plain = statistics.mean(s["ms"] for s in run["steps"][previous:iteration])
                run["pairs"].append((iteration, ms, plain))
            previous = iteration
        runs.append(run)
        m = statistics.mean(p[1] for p in run["pairs"])
        b = statistics.mean(p[2] for p in run["pairs"])
        print(f"repeat {repeat}: megatron {m:6.1f} ms/iteration (wall {run['megatron_wall_s']:.0f} s), "
              f"plain {b:6.1f} ms/iteration (wall {run['plain_wall_s']:.0f} s), ratio {m / b:.3f}", flush=True)

    pairs = [p for run in runs for p in run["pairs"]]
    megatron_ms = statistics.mean(p[1] for p in pairs)  # equal-sized windows: the mean over the iterations
    base_ms = statistics.mean(p[2] for p in pairs)
    data_ms = statistics.mean(s["data_ms"] for run in runs for s in run["steps"][args.warmup:])
    paired = statistics.median(p[1] / p[2] for p in pairs)
    # The fastest tenth of each side's windows: what a quiet machine gives, when other jobs only slow things.
    fast = {side: statistics.quantiles([p[i] for p in pairs], n=10)[0] for side, i in (("megatron", 1), ("plain", 2))}
    for side, i in (("megatron.training", 1), ("plain PyTorch    ", 2)):
        values = [p[i] for p in pairs]
        print(f"{side}: mean {statistics.mean(values):6.1f} ms/iteration, median {statistics.median(values):6.1f}, "
              f"10th percentile {statistics.quantiles(values, n=10)[0]:6.1f} (iterations {args.warmup + 1}-"
              f"{args.steps}, {args.repeats} run(s))", flush=True)
    print(f"plain PyTorch waited {data_ms:.1f} ms/iteration (mean) for the loader", flush=True)
    last = runs[-1]
    print(f"lm loss, last logged window: megatron {last['windows'][-1][2]:.3f}, plain "
          f"{statistics.mean(s['loss'] for s in last['steps'][last['windows'][-2][0]:]):.3f}", flush=True)
    print(f"ratio megatron / plain = {megatron_ms / base_ms:.3f} (means; megatron-loop overhead "
          f"{megatron_ms - base_ms:+.1f} ms/iteration); median of per-window ratios {paired:.3f}; "
          f"10th percentiles {fast['megatron'] / fast['plain']:.3f}", flush=True)
    results = {"machine": info, "megatron_ms": megatron_ms, "plain_ms": base_ms, "plain_data_ms": data_ms,
               "ratio": megatron_ms / base_ms, "median_paired_ratio": paired,
               "p10_ratio": fast["megatron"] / fast["plain"], "runs": runs,
               "loadavg_1m_end": round(os.getloadavg()[0], 2)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
