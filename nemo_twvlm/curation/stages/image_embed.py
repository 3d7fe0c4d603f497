"""CLIP image embeddings, computed once per image for the stages that score them (aesthetic, NSFW,
and CLIP score when it uses the same model), from a local model directory; nothing is downloaded.

Embeddings are L2-normalised, as the LAION aesthetic and NSFW heads expect. They travel in
`ImageItem.meta[EMBEDDING]` and are never written out (the checkpoint stage leaves them behind).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse

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


@dataclass
class ImageEmbedStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    model_path: str
    chunk: int = 32
    name: str = "image_embed"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

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
