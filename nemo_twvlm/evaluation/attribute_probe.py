"""The demo's visual-grounding check: pick each held-out image's colour, object and position by
log-likelihood, once with the real image and once with the image blanked.

Each question's candidates are whole captions that differ in one attribute (the others true), scored
as full strings so that BPE merges across word boundaries cannot favour one option.

With the image blanked the model can only follow its prior, so its accuracy falls to chance on a
balanced set; the gap between the two is what the image contributes.
"""
from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from nemo_twvlm.data.image import blank_image, preprocess_image
from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption
from nemo_twvlm.data.task_encoder import CAPTION_PROMPT
from nemo_twvlm.evaluation.scoring import ScoringItem, continuation_logprobs
from nemo_twvlm.inference.prompt import prompt_ids
from nemo_twvlm.presets import ModelPreset


@dataclass
class ProbeResult:
    correct: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    chance: dict[str, float] = field(default_factory=dict)

    def accuracy(self, question: str | None = None) -> float:
        keys = [question] if question else list(self.total)
        total = sum(self.total[k] for k in keys)
        return sum(self.correct[k] for k in keys) / total if total else 0.0

    def mean_chance(self) -> float:
        total = sum(self.total.values())
        return sum(self.chance[k] * self.total[k] for k in self.total) / total if total else 0.0


QUESTIONS = {"color": COLORS, "object": OBJECTS, "position": POSITIONS}


def read_probe_samples(shard_dir: str | Path, limit: int | None = None) -> list[tuple[torch.Tensor, dict]]:
    """(image [3,H,W] in [0,1], attribute metadata) for each sample of the held-out shards."""
    shards = sorted(str(p) for p in Path(shard_dir).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no .tar shards in {shard_dir}")
    samples = []
    for raw in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        image = np.asarray(Image.open(io.BytesIO(raw["png"])).convert("RGB"), dtype=np.float32) / 255.0
        meta = json.loads(raw["json"])
        samples.append((torch.from_numpy(image).permute(2, 0, 1), meta))
        if limit and len(samples) >= limit:
            break
    return samples


def run_attribute_probe(model, tokenizer, preset: ModelPreset, samples, *, image_token_index: int,
                        blank: bool = False) -> ProbeResult:
    # The layout the caption pairs were trained in (prompt_style "plain"), whatever the checkpoint's stage.
    context = prompt_ids(tokenizer, CAPTION_PROMPT, image_token_index=image_token_index, prompt_style="plain")
    items, index = [], []  # index: (sample, question) for each candidate row
    for s, (image, meta) in enumerate(samples):
        pixels = blank_image(preset.vision) if blank else preprocess_image(image, preset.vision)
        for question, values in QUESTIONS.items():
            for value in values:
                ids = tokenizer.encode(caption({**meta, question: value.key}, "zh"), add_special_tokens=False)
                items.append(ScoringItem(pixels, context, ids))
                index.append((s, question))
    scores = continuation_logprobs(model, items, image_token_index=image_token_index,
                                   num_image_tokens=preset.num_image_tokens,
                                   pad_id=tokenizer.pad_token_id or tokenizer.eos_token_id, num_tokens=len(tokenizer))
    by_question: dict[tuple[int, str], list[float]] = defaultdict(list)
    for key, score in zip(index, scores):
        by_question[key].append(score)
    result = ProbeResult()
    for (s, question), option_scores in by_question.items():
        truth = [value.key for value in QUESTIONS[question]].index(samples[s][1][question])
        result.total[question] += 1
        result.correct[question] += int(int(np.argmax(option_scores)) == truth)
        result.chance[question] = 1.0 / len(QUESTIONS[question])
    return result


def evaluate_checkpoint(save_dir: str, shard_dir: str, *, limit: int | None = None) -> dict[str, ProbeResult]:
    """Probe the latest checkpoint in `save_dir` on held-out shards, with real and with blank images."""
    from nemo_twvlm.inference.loading import load_for_inference

    loaded = load_for_inference(save_dir)
    samples = read_probe_samples(shard_dir, limit)
    return {mode: run_attribute_probe(loaded.model, loaded.tokenizer, loaded.preset, samples,
                                      image_token_index=loaded.image_token_index, blank=mode == "blank")
            for mode in ("images", "blank")}
