"""Option log-likelihood scoring with the LLaVA model: log p(continuation | image, context), or with no
image for text-only sets (the text-retention suite)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ScoringItem:
    image: torch.Tensor | None  # [3, S, S], CLIP-normalised; None: a text-only item
    context: list[int]  # ids before the continuation; exactly one image id (none for a text-only item)
    continuation: list[int]  # ids whose log-probability is summed


@torch.no_grad()
def continuation_logprobs(model, items: list[ScoringItem], *, image_token_index: int, num_image_tokens: int,
                          pad_id: int, batch_size: int = 64, num_tokens: int | None = None) -> list[float]:
    """Sum of log-probabilities of each item's continuation, in one causal forward per batch.

    `num_tokens`: the tokenizer's size; the distribution is over its ids only, not over padding rows
    of the model's vocabulary (None: over every row)."""
    from nemo_twvlm.inference.generate import check_fits, context_length, expanded_length

    model.eval()
    for item in items:
        check_fits(expanded_length(item.context, image_token_index=image_token_index, num_image_tokens=num_image_tokens),
                   len(item.continuation), context_length(model), what="option tokens")
    scores: list[float] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        sequences = [item.context + item.continuation for item in chunk]
        width = max(len(s) for s in sequences)
        tokens = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            tokens[row, : len(seq)] = torch.tensor(seq)
        with_image = chunk[0].image is not None
        if any((item.image is not None) != with_image for item in chunk):
            raise ValueError("a scoring batch mixes items with and without an image; score them apart")
        for item in chunk:
            if item.context.count(image_token_index) != int(with_image):
                raise ValueError(f"a scoring context {'with' if with_image else 'without'} an image must hold "
                                 f"{int(with_image)} image placeholder(s), not {item.context.count(image_token_index)}")
        # LLaVA takes an empty image batch for text-only rows.
        images = torch.stack([item.image for item in chunk]) if with_image else torch.empty(0)
        position_ids = torch.arange(width).expand(len(chunk), -1)
        logits, _ = model(images, tokens, position_ids, None)
        logprobs = torch.log_softmax(logits[..., :num_tokens].float(), dim=-1)
        shift = num_image_tokens - 1 if with_image else 0
        for row, item in enumerate(chunk):
            total = 0.0
            for offset, token in enumerate(item.continuation):
                compact = len(item.context) + offset  # position of this token among the compact ids
                total += logprobs[row, compact - 1 + shift, token].item()
            scores.append(total)
    return scores
