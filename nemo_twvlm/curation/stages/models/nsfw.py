"""Optional NSFW filter (`models.nsfw_model`; left out with a warning without it)."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.stages.models.heads import Head, HeadFilterStage


@dataclass
class NsfwStage(HeadFilterStage):
    """The LAION CLIP-based-NSFW-Detector head (normalisation + 4-layer MLP + sigmoid over
    L2-normalised CLIP ViT-L/14 image embeddings), as NeMo Curator converts it to PyTorch, so its
    score is a probability. A document scores as its least safe image."""

    max_score: float  # models.max_nsfw_score
    name: str = "nsfw"
    head = Head("nemo_curator.models.nsfw:NSFWModel", "linear_1.in_features", "models.nsfw_model", "nsfw_score",
                "nsfw", max)

    def rejects(self, score: float) -> str | None:
        return f"{score:.3f} > {self.max_score}" if score > self.max_score else None
