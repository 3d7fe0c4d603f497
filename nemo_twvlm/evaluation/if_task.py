"""The instruction-following probe as the harness runs it: samples (held-out synthetic shards, or drawn
now), the suite of instruction_following.py answered and scored, the images saved for the report."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nemo_twvlm.data.synthetic import render_image
from nemo_twvlm.data.world import sample_attributes
from nemo_twvlm.evaluation import scorers
from nemo_twvlm.evaluation.attribute_probe import read_probe_samples
from nemo_twvlm.evaluation.context import EvalContext
from nemo_twvlm.evaluation.instruction_following import compliance, default_suite, grounding, run_suite

IF_PROBE = "if_probe"
DEFAULT_IF_SAMPLES = 20


def if_samples(source: str | None, count: int, *, seed: int = 0):
    """(image [3,H,W] in [0,1], synthetic metadata): from held-out shards, or drawn now."""
    if source:
        return read_probe_samples(source, count)
    rng = np.random.default_rng([seed, 7919])  # a stream no training split uses
    samples = []
    for _ in range(count):
        meta = sample_attributes(rng)
        image = np.asarray(render_image(meta, rng), dtype=np.float32) / 255.0
        samples.append((torch.from_numpy(image).permute(2, 0, 1).contiguous(), meta))
    return samples


def _save_png(image, path: Path) -> None:
    array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def run_if_probe(ctx: EvalContext, source: str | None, count: int, out_dir: Path, seed: int) -> dict:
    samples = if_samples(source, count, seed=seed)
    suite = default_suite(samples, seed=seed)
    records = run_suite(ctx.model, ctx.tokenizer, ctx.preset, suite, image_token_index=ctx.image_token_index,
                        max_new_tokens=ctx.max_new_tokens, prompt_style=ctx.prompt_style)
    for s, (image, _) in enumerate(samples):
        _save_png(image, out_dir / "images" / f"if_probe_{s:04d}.png")
    for record in records:
        record["image"] = str((out_dir / "images" / f"if_probe_{record['sample']:04d}.png").resolve())
    counts: dict[str, int] = {}
    for record in records:
        counts[record["constraint"]] = counts.get(record["constraint"], 0) + 1
    yes_no = [r["correct"] for r in records if "correct" in r]
    return {"name": IF_PROBE, "kind": IF_PROBE, "source": source or "synthetic (drawn)", "samples": len(samples),
            "rates": compliance(records), "counts": counts, "grounded_rates": grounding(records),
            "yes_no_accuracy": scorers.accuracy(yes_no) if yes_no else None, "records": records}
