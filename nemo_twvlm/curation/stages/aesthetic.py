"""Optional aesthetic filter: the LAION improved-aesthetic-predictor head (a linear MLP over
L2-normalised CLIP ViT-L/14 image embeddings, scores roughly 1-10) from a local weights file.
Without `models.aesthetic_model` the stage is left out with a warning. A document scores as its
least aesthetic image."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse
from nemo_twvlm.curation.stages.image_embed import head_scores, load_head

FIELD = "models.aesthetic_model"


@dataclass
class AestheticStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    model_path: str
    min_score: float = 4.5
    name: str = "aesthetic"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def load(self) -> None:
        # Curator's head, not its AestheticScorer: that one reads a fixed hub layout under a model
        # directory and its filter stage downloads the weights there.
        from nemo_curator.models.aesthetics import MLP

        self._head = load_head(MLP(), self.model_path, FIELD)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        scores = head_scores(batch, self._head, self._head.layers[0].in_features, FIELD, min)

        def check(sample: Sample) -> None:
            score = scores[id(sample)]
            sample.meta["aesthetic_score"] = round(score, 4)
            if score < self.min_score:
                raise Reject("low_aesthetic", f"{score:.3f} < {self.min_score}")

        return batch.apply(self.name, check)
