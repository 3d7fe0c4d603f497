"""Optional aesthetic filter (`models.aesthetic_model`; left out with a warning without it)."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.stages.models.heads import Head, HeadFilterStage


@dataclass
class AestheticStage(HeadFilterStage):
    """The LAION improved-aesthetic-predictor head: a linear MLP over L2-normalised CLIP ViT-L/14
    image embeddings, scores roughly 1-10. A document scores as its least aesthetic image."""

    min_score: float  # models.min_aesthetic_score
    name: str = "aesthetic"
    head = Head("nemo_curator.models.aesthetics:MLP", "layers.0.in_features", "models.aesthetic_model",
                "aesthetic_score", "low_aesthetic", min)

    def rejects(self, score: float) -> str | None:
        return f"{score:.3f} < {self.min_score}" if score < self.min_score else None
