"""`nemo twvlm evaluate`: task files (and the instruction-following probe) against a checkpoint.

    evaluate("runs/demo/cpt", ["mcq:/data/vistw_mcq.jsonl", "/data/captions.jsonl", "if_probe:runs/demo/data/pairs_val"],
             out_dir="runs/eval/cpt")

Task specs: `PATH` (kind inferred), `KIND:PATH` with KIND in mcq / open_qa / caption (see tasks.py for
the formats), `if_probe` (instruction-following probe on freshly drawn synthetic images) or
`if_probe:SHARD_DIR` (on the samples of held-out synthetic shards, e.g. runs/demo/data/pairs_val).
Published benchmarks in their own layouts: `vistw_mcq:DIR`, `vistw_dialogue:DIR`, `taiwanvqa:DIR`,
`vlmeval_mcq:TSV`, generated and scored by their authors' rules (benchmarks/); `judge=` scores
VisTW-Dialogue (benchmarks/judge.py).

This module is the driver: it reads every task before a model is loaded, then hands each to its runner
in `RUNNERS` (scoring rules in runners.py, benchmarks/ and, for the probe, if_task.py). Prompts and
generation are inference's (inference/prompt.py: prompt_style "chat" or "plain"; inference/answer.py).

Writes out_dir/results.json (everything, per line) and out_dir/report.html (self-contained).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

from nemo_twvlm import rundir
from nemo_twvlm.evaluation import benchmarks
from nemo_twvlm.evaluation.context import EvalContext
from nemo_twvlm.evaluation.if_task import DEFAULT_IF_SAMPLES, IF_PROBE, run_if_probe
from nemo_twvlm.evaluation.report import write_report
from nemo_twvlm.evaluation.runners import run_caption, run_mcq, run_open_qa, usable_items
from nemo_twvlm.evaluation.tasks import TaskFile, parse_task_spec, read_task, summarise
from nemo_twvlm.inference.prompt import PROMPT_STYLES

log = logging.getLogger(__name__)

MODES = ("loglik", "generate")

# Task kind -> runner(ctx, task, items) -> (scores, records), filed under results["tasks"]; the probe's
# runner takes samples instead of task items, and its results go under results["if_probe"].
RUNNERS = {"mcq": run_mcq, "open_qa": run_open_qa, "caption": run_caption,
           **{kind: benchmarks.run for kind in benchmarks.KINDS}, IF_PROBE: run_if_probe}


# --- entry points -------------------------------------------------------------------------------------

def load_tasks(specs: Sequence[str]) -> tuple[list[TaskFile], list[tuple[str | None, str]]]:
    """Read every task file (before any model is loaded: a wrong path fails in seconds); the IF specs apart."""
    tasks, probes, names = [], [], set()
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec == IF_PROBE or spec.startswith(IF_PROBE + ":"):
            probes.append((spec, spec.partition(":")[2] or None))
            continue
        bench_kind, bench_path = benchmarks.parse_spec(spec)
        if bench_kind:
            task = benchmarks.read(bench_kind, bench_path)
        else:
            kind, path = parse_task_spec(spec)
            task = read_task(path, kind)
        base, k = task.name, 1
        while task.name in names:
            k += 1
            task.name = f"{base}_{k}"
        names.add(task.name)
        tasks.append(task)
    return tasks, probes


def evaluate_model(model, tokenizer, preset, task_specs: Sequence[str], *, out_dir: str | Path, image_token_index: int,
                   limit: int | None = None, modes: Sequence[str] = MODES, max_new_tokens: int = 64,
                   prompt_style: str = "chat", seed: int = 0, meta: dict | None = None,
                   loaded_tasks: tuple | None = None, judge=None) -> dict:
    """Evaluate a built model; writes results.json and report.html into out_dir and returns the results.

    `limit` caps the items evaluated per task file (the first ones) and the images of the IF probe
    (default 20 images, 5 prompts each). `judge` (benchmarks/judge.py) scores VisTW-Dialogue answers."""
    modes = tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes={modes}: expected a non-empty subset of {MODES}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={prompt_style!r}: expected one of {PROMPT_STYLES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks, probes = loaded_tasks or load_tasks(task_specs)
    ctx = EvalContext(model, tokenizer, preset, image_token_index, max_new_tokens=max_new_tokens,
                   prompt_style=prompt_style, modes=modes, out_dir=out_dir, judge=judge)
    start = time.perf_counter()
    results: dict = {"meta": {**(meta or {}), "modes": list(modes), "prompt_style": prompt_style, "limit": limit,
                              "max_new_tokens": max_new_tokens, "preset": preset.name,
                              "created": time.strftime("%Y-%m-%d %H:%M:%S")},
                     "tasks": [], "problems": []}
    for task in tasks:
        items = task.items[:limit] if limit else task.items
        log.info("evaluating %s (%s, %d items)", task.name, task.kind, len(items))
        if task.kind in RUNNERS and task.kind not in benchmarks.KINDS:
            items = usable_items(ctx, task, items)
        scores, records = RUNNERS[task.kind](ctx, task, items) if task.kind in RUNNERS else ({"n": 0}, [])
        results["tasks"].append({"name": task.name, "kind": task.kind, "path": str(task.path),
                                 "summary": {**task.summary(), "evaluated": len(items)},
                                 "scores": scores, "records": records})
        results["problems"] += [p.as_dict() for p in task.problems]
    results["if_probe"] = [RUNNERS[IF_PROBE](ctx, source, limit or DEFAULT_IF_SAMPLES, out_dir, seed)
                           for _, source in probes]
    results["summary"] = {**summarise(tasks), "evaluated": sum(t["summary"]["evaluated"] for t in results["tasks"]),
                          "if_probe_prompts": sum(len(p["records"]) for p in results["if_probe"]),
                          "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    write_report(results, out_dir / "report.html")
    return results


def evaluate(ckpt_dir: str | Path, task_paths: Sequence[str], *, out_dir: str | Path, limit: int | None = None,
             modes: Sequence[str] = MODES, max_new_tokens: int = 64, prompt_style: str = "chat", seed: int = 0,
             judge: str | None = None, judge_model: str | None = None) -> dict:
    """Load the latest checkpoint in `ckpt_dir` and evaluate it on `task_paths` (task specs, see the module
    docstring); writes out_dir/results.json and out_dir/report.html and returns the results. `judge`: an
    OpenAI-compatible endpoint URL (`judge_model` names its model) or a checkpoint directory."""
    from nemo_twvlm.evaluation.benchmarks.judge import make_judge
    from nemo_twvlm.inference.loading import load_for_inference

    tasks = load_tasks(task_paths)  # a wrong task path fails before any time goes into the model
    iteration = rundir.latest_iteration(str(ckpt_dir))
    loaded = load_for_inference(str(ckpt_dir), iteration)
    return evaluate_model(loaded.model, loaded.tokenizer, loaded.preset, task_paths, out_dir=out_dir,
                          image_token_index=loaded.image_token_index, limit=limit, modes=modes,
                          max_new_tokens=max_new_tokens, prompt_style=prompt_style, seed=seed,
                          meta={"checkpoint": str(Path(ckpt_dir).resolve()), "iteration": iteration},
                          loaded_tasks=tasks, judge=make_judge(judge, judge_model) if judge else None)


def cli_evaluate(ckpt: str, tasks: str, out_dir: str = "runs/eval", limit: int | None = None,
                 modes: str = "loglik,generate", max_new_tokens: int = 64, prompt_style: str = "chat",
                 seed: int = 0, judge: str | None = None, judge_model: str | None = None) -> dict:
    """`nemo twvlm evaluate ckpt=DIR tasks=SPEC[,SPEC...] out_dir=DIR`: comma-separated task specs and modes."""
    results = evaluate(ckpt, [t for t in tasks.split(",") if t.strip()], out_dir=out_dir, limit=limit,
                       modes=[m.strip() for m in modes.split(",") if m.strip()], max_new_tokens=max_new_tokens,
                       prompt_style=prompt_style, seed=seed, judge=judge, judge_model=judge_model)
    print(headline(results))
    return results


def headline(results: dict) -> str:
    """A few lines for the terminal: per-task scores, IF compliance, skipped lines, where the report is."""
    lines = []
    for task in results["tasks"]:
        numbers = ", ".join(f"{k}={v:.3f}" for k, v in task["scores"].items() if isinstance(v, float))
        lines.append(f"{task['name']} ({task['kind']}, n={task['summary']['evaluated']}, "
                     f"skipped={task['summary']['skipped']}): {numbers}")
    for probe in results["if_probe"]:
        lines.append("if_probe compliance: " + ", ".join(f"{k}={v:.2f}" for k, v in probe["rates"].items()))
        lines.append("if_probe on-topic (names a true attribute; yes/no: correct): "
                     + ", ".join(f"{k}={v:.2f}" for k, v in probe["grounded_rates"].items()))
    summary = results["summary"]
    lines.append(f"lines={summary['lines']} loaded={summary['loaded']} skipped={summary['skipped']} "
                 f"{summary['skipped_by_reason'] or ''}".rstrip())
    return "\n".join(lines)
