"""Optional image-text agreement filter: cosine similarity of CLIP embeddings from a local model
directory (any Hugging Face model with get_image_features / get_text_features, e.g. a Chinese
CLIP for zh captions). Nothing is downloaded: without `models.clip_model` the stage is left out
with a warning. Documents are scored image by image against their whole text; the lowest counts.

When the image-embedding stage ran with the same model (`models.embedding_model`), its
embeddings are reused: each image goes through the vision tower once."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse
from nemo_twvlm.curation.stages.models.image_embed import EMBEDDING, embed_images, load_clip


@dataclass
class ClipScoreStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    model_path: str
    min_score: float
    reuse_image_embeddings: bool  # the image_embed stage ran with the same model
    chunk: int = 32
    name: str = "clip_score"

    def load(self) -> None:
        from transformers import AutoTokenizer

        self._model, self._images = load_clip(self.model_path)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        text_config = getattr(self._model.config, "text_config", self._model.config)
        self._max_tokens = getattr(text_config, "max_position_embeddings", 77)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        pairs = list(batch.images())
        scores: dict[int, float] = {}
        for k in range(0, len(pairs), self.chunk):
            chunk = pairs[k:k + self.chunk]
            for (sample, _), score in zip(chunk, self._scores([item for _, item in chunk], [s.text for s, _ in chunk])):
                scores[id(sample)] = min(scores.get(id(sample), score), score)

        def check(sample: Sample) -> None:
            score = scores[id(sample)]
            sample.meta["clip_score"] = round(score, 4)
            if score < self.min_score:
                raise Reject("low_clip_score", f"{score:.3f} < {self.min_score}")

        return batch.apply(self.name, check)

    def _scores(self, items, texts) -> list[float]:
        import numpy as np
        import torch

        if self.reuse_image_embeddings:
            image = torch.from_numpy(np.stack([item.meta[EMBEDDING] for item in items]))
        else:
            image = embed_images(self._model, self._images, [item.pil for item in items])
        tokens = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_tokens)
        with torch.no_grad():
            text = self._model.get_text_features(**tokens)
        text = text if hasattr(text, "dim") else text.pooler_output  # as in embed_images
        return torch.nn.functional.cosine_similarity(image, text.float()).tolist()
