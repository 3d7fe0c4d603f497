"""CLIP image embeddings, computed once per image for the stages that score them (aesthetic, NSFW,
and CLIP score when it uses the same model), from a local model directory; nothing is downloaded.

Embeddings are L2-normalised, as the LAION aesthetic and NSFW heads expect. They travel in
`ImageItem.meta[EMBEDDING]` and are never written out (the checkpoint stage leaves them behind).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse

if TYPE_CHECKING:
    import torch

EMBEDDING = "clip_embedding"


@functools.cache
def load_clip(path: str):
    """(model, image processor) for a local CLIP directory, once per process: the embedding and the
    CLIP-score stages share one copy, and Ray Data tasks on a reused worker do not reload it."""
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return model, AutoImageProcessor.from_pretrained(path, local_files_only=True)


def embed_images(model, processor, images) -> torch.Tensor:
    import torch

    pixels = processor(images=images, return_tensors="pt")
    with torch.no_grad():
        features = model.get_image_features(**pixels)
    # Newer transformers return a model output whose pooler_output is the projected embedding.
    features = features if hasattr(features, "dim") else features.pooler_output
    return torch.nn.functional.normalize(features.float(), dim=-1)


@dataclass
class ImageEmbedStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    model_path: str
    chunk: int = 32
    name: str = "image_embed"

    def load(self) -> None:
        self._model, self._images = load_clip(self.model_path)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        items = [item for _, item in batch.images()]
        for k in range(0, len(items), self.chunk):
            chunk = items[k:k + self.chunk]
            for item, vector in zip(chunk, embed_images(self._model, self._images, [i.pil for i in chunk]).numpy()):
                item.meta[EMBEDDING] = vector
        batch.record(self.name, len(batch.data), len(batch.data), {})  # a row in the report; it rejects nothing
        return batch
