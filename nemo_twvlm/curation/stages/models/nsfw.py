"""Optional NSFW filter: the LAION CLIP-based-NSFW-Detector head (normalisation + 4-layer MLP +
sigmoid over L2-normalised CLIP ViT-L/14 image embeddings, as converted to PyTorch by NeMo
Curator) from a local weights file. Without `models.nsfw_model` the stage is left out with a
warning. A document scores as its least safe image."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.stages.models.heads import HeadFilterStage


@dataclass
class NsfwStage(HeadFilterStage):
    max_score: float  # models.max_nsfw_score
    name: str = "nsfw"

    weights_field = "models.nsfw_model"
    score_key = "nsfw_score"
    reason = "nsfw"
    worst = max

    def new_head(self):
        # Curator's head, not its NSFWScorer: that one reads a fixed path under a model directory
        # and its filter stage downloads the weights there.
        from nemo_curator.models.nsfw import NSFWModel

        return NSFWModel()

    def head_width(self) -> int:
        return self._head.linear_1.in_features

    def rejects(self, score: float) -> str | None:
        return f"{score:.3f} > {self.max_score}" if score > self.max_score else None
