"""The base of the filters that score CLIP image embeddings with a small head (LAION aesthetic,
LAION NSFW): the weights come from a local file, the embeddings from `image_embed` (one image pass
for every head), and a document scores as its worst image. A subclass names its head, its config
field, and which side of its threshold rejects."""
from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse
from nemo_twvlm.curation.stages.models.image_embed import EMBEDDING

if TYPE_CHECKING:
    import torch


def load_head(module, path: str, field: str):
    """Weights for a scoring head from .safetensors, or from a .pt/.pth state dict loaded with
    weights_only=True (tensors only, no pickled code)."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{field}={path!r} does not hold weights for {type(module).__name__}: {e}") from None
    return module.eval()


def head_scores(batch: SampleBatch, head, head_in: int, field: str, worst) -> dict[int, float]:
    """A scoring head over every image's embedding -> score per sample (by `id`); `worst` (min or
    max) picks a document's score from its images'."""
    import numpy as np
    import torch

    pairs = list(batch.images())
    if not pairs:
        return {}
    embeddings = torch.from_numpy(np.stack([item.meta[EMBEDDING] for _, item in pairs]))
    if embeddings.shape[-1] != head_in:  # a model the head was not trained on: refuse before judging
        raise ValueError(f"{field} expects {head_in}-d image embeddings (CLIP ViT-L/14) but "
                         f"models.embedding_model gives {embeddings.shape[-1]}-d ones")
    with torch.no_grad():
        values = head(embeddings).squeeze(1).tolist()
    scores: dict[int, float] = {}
    for (sample, _), score in zip(pairs, values):
        scores[id(sample)] = worst(scores.get(id(sample), score), score)
    return scores


@dataclass(frozen=True)
class Head:
    """One LAION head as NeMo Curator defines it, and what a stage makes of its score."""

    module: str          # "package.module:Class", Curator's head (not its scorer: that one reads a fixed
                         # hub layout under a model directory, and its filter stage downloads the weights)
    width: str           # the attribute path of the embedding width its first layer reads
    weights_field: str   # the config key that names the weights, for errors
    score_key: str       # where the score goes in Sample.meta (and the shard's json)
    reason: str          # the drop reason
    worst: Callable[[float, float], float]  # a document's score from its images': min or max

    def new(self) -> torch.nn.Module:
        module, cls = self.module.split(":")
        return getattr(importlib.import_module(module), cls)()


@dataclass
class HeadFilterStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    model_path: str

    head: ClassVar[Head]

    def rejects(self, score: float) -> str | None:
        """Why `score` drops the sample (the detail), or None."""
        raise NotImplementedError

    def load(self) -> None:
        self._head = load_head(self.head.new(), self.model_path, self.head.weights_field)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        width = operator.attrgetter(self.head.width)(self._head)
        scores = head_scores(batch, self._head, width, self.head.weights_field, self.head.worst)

        def check(sample: Sample) -> None:
            score = scores[id(sample)]
            sample.meta[self.head.score_key] = round(score, 4)
            detail = self.rejects(score)
            if detail:
                raise Reject(self.head.reason, detail)

        return batch.apply(self.name, check)
