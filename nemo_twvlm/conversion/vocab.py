"""The vocabulary an import gives the model: `<image>` on a reserved id, or appended with rows grown.

With `image_token=append` the tokenizer gains one id (128,256 for Llama-3) and the embedding and output
layer gain rows up to a padded size: a multiple of 64 (what the public llava-llama-3 transformers
exports use, 128,320, and `resize_token_embeddings(pad_to_multiple_of=64)` gives) that the
tensor-parallel size also divides. Every new row, the image token's and the padding rows, starts as
transformers' `resize_token_embeddings` starts it by default (`mean_resizing=True`): a draw from a normal
at the old rows' mean with 1e-9 times their covariance. The image token's embedding is never read (its
positions receive image features) and padding ids are never produced by the tokenizer, so no text trains
them as tokens; inference limits sampling and scoring to the tokenizer's ids.

The rows are computed once, before any rank starts, and stored beside the import record so that every
tensor-parallel rank reads the same values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nemo_twvlm.conversion.mapping import ConversionError
from nemo_twvlm.data.tokenizer import IMAGE_TOKEN, ImageTokenRecord

PAD_MULTIPLE = 64
# Tensors whose rows are token ids.
VOCAB_TENSORS = ("language_model.embed_tokens.weight", "lm_head.weight")
ADDED_ROWS_FILE = "added_rows.safetensors"


def padded_vocab_size(num_tokens: int, tp: int) -> int:
    multiple = math.lcm(PAD_MULTIPLE, tp)
    return -(-num_tokens // multiple) * multiple


def mean_resized_rows(old: torch.Tensor, added: int, seed: int) -> torch.Tensor:
    """`added` new rows for the [vocab, hidden] matrix `old`, as transformers' mean resizing draws them."""
    weight = old.to(torch.float32)
    mean = weight.mean(dim=0)
    centered = weight - mean
    covariance = centered.T @ centered / weight.shape[0]
    scaled = 1e-9 * covariance
    generator = torch.Generator().manual_seed(seed)
    try:
        factor = torch.linalg.cholesky(scaled)
    except torch.linalg.LinAlgError:  # not positive definite: transformers falls back to the mean
        return mean[None].repeat(added, 1).to(old.dtype)
    noise = torch.randn(added, weight.shape[1], generator=generator)
    return (mean + noise @ factor.T).to(old.dtype)


@dataclass(frozen=True)
class VocabPlan:
    record: ImageTokenRecord
    source_rows: int  # rows of the source's embedding
    model_rows: int  # rows of the imported model's embedding and output layer

    @property
    def grows(self) -> bool:
        return self.model_rows > self.source_rows


def plan_vocab(record: ImageTokenRecord, source_rows: int, tp: int, *, tokenizer_dir, config_where: str) -> VocabPlan:
    """Check the tokenizer against the source's vocabulary and decide the model's."""
    if record.mode == "append":
        rows = max(source_rows, padded_vocab_size(record.tokenizer_size, tp))
        return VocabPlan(record, source_rows, rows)
    if record.id >= source_rows:
        raise ConversionError(f"tokenizer {tokenizer_dir}: {IMAGE_TOKEN} has id {record.id}, outside the model's "
                              f"vocabulary (text_config.vocab_size={source_rows} in {config_where}); import "
                              f"with image_token=append to grow the vocabulary")
    if record.tokenizer_size > source_rows:
        raise ConversionError(f"tokenizer {tokenizer_dir} has {record.tokenizer_size} tokens but "
                              f"text_config.vocab_size={source_rows} in {config_where}")
    return VocabPlan(record, source_rows, source_rows)


def write_added_rows(source, plan: VocabPlan, path: Path, seed: int) -> None:
    """The new rows of every vocabulary tensor the source holds (lm_head is absent when tied)."""
    added = plan.model_rows - plan.source_rows
    rows = {name: mean_resized_rows(source.read(name), added, seed + k)
            for k, name in enumerate(VOCAB_TENSORS) if name in source.tensors}
    save_file(rows, str(path), metadata={"format": "pt"})


def load_added_rows(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ConversionError(f"{path} not found: the grown vocabulary rows of this import are missing")
    return load_file(path)
