"""Optional NSFW filter: the LAION CLIP-based-NSFW-Detector head (normalisation + 4-layer MLP +
sigmoid over L2-normalised CLIP ViT-L/14 image embeddings, as converted to PyTorch by NeMo
Curator) from a local weights file. Without `models.nsfw_model` the stage is left out with a
warning. A document scores as its least safe image."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse
from nemo_twvlm.curation.stages.image_embed import head_scores, load_head

FIELD = "models.nsfw_model"


@dataclass
class NsfwStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    model_path: str
    max_score: float = 0.5
    name: str = "nsfw"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def load(self) -> None:
        # Curator's head, not its NSFWScorer: that one reads a fixed path under a model directory
        # and its filter stage downloads the weights there.
        from nemo_curator.models.nsfw import NSFWModel

        self._head = load_head(NSFWModel(), self.model_path, FIELD)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        scores = head_scores(batch, self._head, self._head.linear_1.in_features, FIELD, max)

        def check(sample: Sample) -> None:
            score = scores[id(sample)]
            sample.meta["nsfw_score"] = round(score, 4)
            if score > self.max_score:
                raise Reject("nsfw", f"{score:.3f} > {self.max_score}")

        return batch.apply(self.name, check)
