"""Optional aesthetic filter: the LAION improved-aesthetic-predictor head (a linear MLP over
L2-normalised CLIP ViT-L/14 image embeddings, scores roughly 1-10) from a local weights file.
Without `models.aesthetic_model` the stage is left out with a warning. A document scores as its
least aesthetic image."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.stages.models.heads import HeadFilterStage


@dataclass
class AestheticStage(HeadFilterStage):
    min_score: float  # models.min_aesthetic_score
    name: str = "aesthetic"

    weights_field = "models.aesthetic_model"
    score_key = "aesthetic_score"
    reason = "low_aesthetic"
    worst = min

    def new_head(self):
        # Curator's head, not its AestheticScorer: that one reads a fixed hub layout under a model
        # directory and its filter stage downloads the weights there.
        from nemo_curator.models.aesthetics import MLP

        return MLP()

    def head_width(self) -> int:
        return self._head.layers[0].in_features

    def rejects(self, score: float) -> str | None:
        return f"{score:.3f} < {self.min_score}" if score < self.min_score else None
