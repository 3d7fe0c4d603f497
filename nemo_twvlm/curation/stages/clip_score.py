"""Optional image-text agreement filter: cosine similarity of CLIP embeddings from a local model
directory (any Hugging Face model with get_image_features / get_text_features, e.g. a Chinese
CLIP for zh captions). Nothing is downloaded: without `models.clip_model` the stage is left out
with a warning. Documents are scored image by image against their whole text; the lowest counts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse


@dataclass
class ClipScoreStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    model_path: str
    min_score: float = 0.2
    chunk: int = 32
    name: str = "clip_score"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def setup_on_node(self, node_info=None, worker_metadata=None) -> None:
        if not Path(self.model_path).is_dir():
            raise FileNotFoundError(f"models.clip_model={self.model_path!r} is not a local model directory")

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self._model = AutoModel.from_pretrained(self.model_path, local_files_only=True).eval()
        self._images = AutoImageProcessor.from_pretrained(self.model_path, local_files_only=True)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        text_config = getattr(self._model.config, "text_config", self._model.config)
        self._max_tokens = getattr(text_config, "max_position_embeddings", 77)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        pairs = [(sample, item.pil) for sample, item in batch.images()]
        scores: dict[int, float] = {}
        for k in range(0, len(pairs), self.chunk):
            chunk = pairs[k:k + self.chunk]
            for (sample, _), score in zip(chunk, self._scores([img for _, img in chunk], [s.text for s, _ in chunk])):
                scores[id(sample)] = min(scores.get(id(sample), score), score)

        def check(sample: Sample) -> None:
            score = scores[id(sample)]
            sample.meta["clip_score"] = round(score, 4)
            if score < self.min_score:
                raise Reject("low_clip_score", f"{score:.3f} < {self.min_score}")

        return batch.apply(self.name, check)

    def _scores(self, images, texts) -> list[float]:
        import torch

        pixels = self._images(images=images, return_tensors="pt")
        tokens = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_tokens)
        with torch.no_grad():
            image = _features(self._model.get_image_features(**pixels))
            text = _features(self._model.get_text_features(**tokens))
        return torch.nn.functional.cosine_similarity(image, text).tolist()


def _features(output):
    """Newer transformers return a model output whose pooler_output is the projected embedding."""
    return output if hasattr(output, "dim") else output.pooler_output
