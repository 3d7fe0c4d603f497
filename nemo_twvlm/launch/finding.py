"""The seed's key finding in miniature: an instruction-aligned LM keeps following instructions about
images after continual pre-training on image-text data alone, with no visual instructions.

Per seed, on the demo's synthetic world (nemo_twvlm.data.synthetic):
    text_sft  the debug LM (the demo's starting point) tuned on text-only instructions
              (nemo_twvlm.data.synthetic_text_instructions): Llama-3-Taiwan-Instruct's part
    base      debug LM          -> align -> CPT  (pairs + interleaved, no instructions)
    aligned   text_sft's LM     -> align -> CPT  (the same recipes, the same data bytes)
    vsft      aligned + visual SFT (the demo's SFT stage), for reference
then the instruction-following probe (evaluation.finding) on each arm, with and without the image.
Every stage of a seed uses that seed for its data and its initialisation, so base and text_sft start
from the same weights and the two arms differ only in what the LM learnt from text instructions.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nemo_twvlm.launch.demo import _fresh, _stage, curate_instructions, train_stage
from nemo_twvlm.launch.recipes import find_recipes
from nemo_twvlm.training.config import PretrainConfig

SEEDS = (1, 2, 3)  # megatron wants a positive seed
# The stages, in run_finding's order: text_sft, align, CPT (both arms), visual SFT (the reference arm).
STAGE_RECIPES = ("twvlm_debug_text_sft", "twvlm_debug_align", "twvlm_debug_finding_cpt", "twvlm_debug_sft")
NUM_PROBE_IMAGES = 24  # a multiple of every family's template count (2 and 3): each template as often
TEXT_INSTRUCTIONS_COUNT = 4000


def finding_recipes() -> tuple[PretrainConfig, ...]:
    """The experiment's four stage configs (STAGE_RECIPES), as run_finding takes them."""
    recipes = find_recipes("pretrain")
    return tuple(recipes[name]() for name in STAGE_RECIPES)


def _seeded(cfg: PretrainConfig, seed: int) -> PretrainConfig:
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, seed=seed),
                               data=dataclasses.replace(cfg.data, seed=seed))


def curate_text_instructions(data: Path, cfg: PretrainConfig, seed: int) -> dict:
    """The text instructions through the `conversations` curation kind (text-only rows); stats.json."""
    from nemo_twvlm.curation.cli import run
    from nemo_twvlm.data.synthetic_text_instructions import (
        TEXT_INSTRUCTIONS, TEXT_INSTRUCTIONS_RAW, write_text_instructions)

    write_text_instructions(data / TEXT_INSTRUCTIONS_RAW, TEXT_INSTRUCTIONS_COUNT, seed=seed)
    output = data / TEXT_INSTRUCTIONS
    _fresh(output)
    return run("conversations_zh_tw", [f"input_dir={data / TEXT_INSTRUCTIONS_RAW}", f"output_dir={output}",
                                       "executor.name=in_process", f"tokens.tokenizer={cfg.data.tokenizer}",
                                       f"tokens.preset={cfg.model.preset}"])


def _train(cfg: PretrainConfig, attempts: int = 3) -> None:
    """train_stage, again when the rendezvous port was taken between picking and binding it (another
    job on the machine): eighteen stages in a row on a shared machine meet that race."""
    log = Path(cfg.checkpoint.save).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        _fresh(Path(cfg.checkpoint.save))
        try:
            return train_stage(cfg, log)
        except RuntimeError:
            if attempt == attempts - 1 or "EADDRINUSE" not in log.read_text(encoding="utf-8", errors="replace"):
                raise


def plan_seed(text_sft: PretrainConfig, align: PretrainConfig, cpt: PretrainConfig, sft: PretrainConfig,
              seed: int, out: Path) -> dict[str, PretrainConfig]:
    """The stages of one seed, in training order, pointed at `out`: "text_sft", "base/align",
    "base/cpt", "aligned/align", "aligned/cpt", "vsft". The arms' align and CPT stages are the same
    recipes on the same data files; only `model.init_from` and `checkpoint.save` differ (tested)."""
    from nemo_twvlm.data.synthetic_text_instructions import TEXT_INSTRUCTIONS

    data = out / "data"
    stages = {"text_sft": _stage(text_sft, data / TEXT_INSTRUCTIONS / "shards", out / "text_sft", None)}
    for arm, start in (("base", None), ("aligned", out / "text_sft")):
        stages[f"{arm}/align"] = _stage(align, data / "blend.yaml", out / arm / "align", start)
        stages[f"{arm}/cpt"] = _stage(cpt, data / "blend.yaml", out / arm / "cpt", out / arm / "align")
    stages["vsft"] = _stage(sft, data / "sft_blend.yaml", out / "vsft", out / "aligned" / "cpt")
    return {name: _seeded(cfg, seed) for name, cfg in stages.items()}


def run_seed(text_sft: PretrainConfig, align: PretrainConfig, cpt: PretrainConfig, sft: PretrainConfig,
             seed: int, out: Path) -> dict[str, dict]:
    """Write the seed's data, train its stages under `out` and measure the three arms."""
    from nemo_twvlm.data.synthetic import write_dataset
    from nemo_twvlm.evaluation.attribute_probe import read_probe_samples
    from nemo_twvlm.evaluation.finding import measure
    from nemo_twvlm.inference.loading import load_for_inference

    data = out / "data"
    write_dataset(data, seed=seed)
    curate_text_instructions(data, text_sft, seed)
    curate_instructions(data, sft)
    for cfg in plan_seed(text_sft, align, cpt, sft, seed, out).values():
        _train(cfg)

    samples = read_probe_samples(data / "pairs_val", NUM_PROBE_IMAGES)
    arms = {}
    for arm, checkpoint in (("base", out / "base" / "cpt"), ("aligned", out / "aligned" / "cpt"),
                            ("vsft", out / "vsft")):
        loaded = load_for_inference(str(checkpoint))
        arms[arm] = measure(loaded.model, loaded.tokenizer, loaded.preset, samples,
                            image_token_index=loaded.image_token_index)
    return arms


def run_finding(text_sft: PretrainConfig, align: PretrainConfig, cpt: PretrainConfig, sft: PretrainConfig,
                out_dir: str = "runs/finding", seeds: tuple[int, ...] = SEEDS) -> dict[int, dict[str, float]]:
    """Every seed in turn; prints a table per seed and one `finding:` line per seed; writes
    results.json and report.html (evaluation.finding.write_report) under `out_dir`."""
    import torch

    from nemo_twvlm.evaluation.finding import finding_line, finding_values, holds, write_report
    from nemo_twvlm.training.pretrain import torch_threads

    torch.set_num_threads(torch_threads())  # the probes' generation, as the stages train
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    per_seed, values, lines = {}, {}, []
    for seed in seeds:
        start = time.time()
        per_seed[seed] = run_seed(text_sft, align, cpt, sft, seed, out / f"seed{seed}")
        values[seed] = finding_values(per_seed[seed])
        table = Table(title=f"seed {seed}: form (compliance) and content, with the image / blanked "
                            f"({int(time.time() - start)} s)")
        for column in ("arm", "constraint", "form", "form blank", "content", "chance", "content blank",
                       "chance blank"):
            table.add_column(column, justify="right")
        for arm, result in per_seed[seed].items():
            images, blank = result["images"], result["blank"]
            for constraint, rate in images["form"].items():
                overall = constraint == "overall"
                table.add_row(arm, constraint, f"{rate:.2f}", f"{blank['form'][constraint]:.2f}",
                              *([f"{images['content']:.3f}", f"{images['chance']:.3f}",
                                 f"{blank['content']:.3f}", f"{blank['chance']:.3f}"] if overall else [""] * 4))
        console.print(table)
        console.print(", ".join(f"{k}: {'holds' if v else 'FAILS'}" for k, v in holds(values[seed]).items()))
        lines.append(finding_line(values[seed], seed))
        print(lines[-1], flush=True)
    (out / "results.json").write_text(json.dumps(
        {seed: {"values": values[seed], "arms": arms} for seed, arms in per_seed.items()},
        ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    report = write_report(per_seed, out / "report.html")
    console.print(f"report: {report}")
    print(*lines, sep="\n", flush=True)  # every seed's line together at the end
    return values
