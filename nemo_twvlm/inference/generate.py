"""Image-conditioned generation with the megatron-core LLaVA model: greedy or top-p, with a KV cache.

The prompt (with its images) is run once; each new token then attends to cached keys/values through
megatron's StaticInferenceContext. `use_cache=False` recomputes the whole sequence every step, the
reference the cached path is tested against.

A prompt is never cut to fit: the prompt (each image counted as its image tokens) plus max_new_tokens must
fit the model's context, or `PromptTooLong` names the lengths. (megatron's LLaVA would silently keep the
first positions, dropping the end of the question and the assistant header, and answer something else.)
Chat, evaluation and scoring share the rule (`check_fits`).
"""
from dataclasses import dataclass, field

import torch
from megatron.core.inference.contexts import StaticInferenceContext
from megatron.core.utils import get_attr_wrapped_model


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    stop_ids: tuple[int, ...] = field(default_factory=tuple)
    # Ids at or past this are never sampled (padding rows of the vocabulary); None = every logit.
    num_tokens: int | None = None


class PromptTooLong(ValueError):
    """A prompt (and what is to follow it) longer than the model's context."""


def context_length(model) -> int:
    """The longest sequence (image tokens included) the model's language model takes; `model` may be
    wrapped (DDP, Float16Module), as in-training evaluation hands it over."""
    return get_attr_wrapped_model(model, "language_model").max_sequence_length


def expanded_length(prompt_ids: list[int], *, image_token_index: int, num_image_tokens: int) -> int:
    """The prompt's length as the language model sees it: each image id becomes its image tokens."""
    return len(prompt_ids) + prompt_ids.count(image_token_index) * (num_image_tokens - 1)


def check_fits(length: int, following: int, context: int, *, what: str = "new tokens") -> None:
    """Raise `PromptTooLong` unless a prompt of `length` positions and `following` more fit `context`."""
    if length + following > context:
        raise PromptTooLong(f"the prompt takes {length} positions (images as their tokens) and {following} "
                            f"{what} must follow, {length + following} in all, more than the model's context of "
                            f"{context}; shorten the prompt" + (" or lower max_new_tokens" if what == "new tokens" else ""))


def _next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        keep = sorted_probs.cumsum(0) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


@torch.no_grad()
def generate(model, prompt_ids: list[int], images: torch.Tensor, *, image_token_index: int,
             num_image_tokens: int, params: SamplingParams | None = None, use_cache: bool = True) -> list[int]:
    """New token ids after `prompt_ids` (which hold one image id per row of `images`), stop id excluded."""
    params = params or SamplingParams()
    model.eval()
    generator = torch.Generator().manual_seed(params.seed)
    num_images = prompt_ids.count(image_token_index)
    if num_images != len(images):
        raise ValueError(f"prompt has {num_images} image placeholders but {len(images)} images were given")
    expanded = expanded_length(prompt_ids, image_token_index=image_token_index, num_image_tokens=num_image_tokens)
    check_fits(expanded, params.max_new_tokens, context_length(model))
    context = StaticInferenceContext(1, expanded + params.max_new_tokens) if use_cache else None
    ids = list(prompt_ids)
    out: list[int] = []
    step_ids, step_images = ids, images
    for _ in range(params.max_new_tokens):
        tokens = torch.tensor([step_ids])
        positions = torch.arange(tokens.shape[1]).unsqueeze(0)
        logits, _ = model(step_images, tokens, positions, None, inference_context=context)
        token = _next_token(logits[0, -1, : params.num_tokens], params, generator)
        if token in params.stop_ids:
            break
        out.append(token)
        ids.append(token)
        if use_cache:
            # The cache now holds everything fed so far; the next step feeds only the new token.
            context.sequence_len_offset += expanded if len(out) == 1 else 1
            context.enable_decode_mode()
            step_ids, step_images = [token], None
        else:
            step_ids = ids
    return out
