"""Generation: the KV-cache path produces the same tokens as recomputing the whole sequence."""
import pytest
import torch

from nemo_twvlm.inference.generate import SamplingParams, _next_token, generate

IMAGE_ID, IMAGE_TOKENS = 5, 16


def test_greedy_with_kv_cache_equals_without(debug_model):
    torch.manual_seed(0)
    images = torch.randn(1, 3, 64, 64)
    prompt = [0, IMAGE_ID, 205, 443, 461, 456, 2, 296, 3]
    params = SamplingParams(max_new_tokens=12)
    cached = generate(debug_model, prompt, images, image_token_index=IMAGE_ID, num_image_tokens=IMAGE_TOKENS,
                      params=params, use_cache=True)
    recomputed = generate(debug_model, prompt, images, image_token_index=IMAGE_ID, num_image_tokens=IMAGE_TOKENS,
                          params=params, use_cache=False)
    assert len(cached) == 12
    assert cached == recomputed


def test_generation_stops_at_a_stop_token(debug_model):
    images = torch.randn(1, 3, 64, 64)
    prompt = [0, IMAGE_ID, 205, 443]
    first = generate(debug_model, prompt, images, image_token_index=IMAGE_ID, num_image_tokens=IMAGE_TOKENS,
                     params=SamplingParams(max_new_tokens=5))
    stopped = generate(debug_model, prompt, images, image_token_index=IMAGE_ID, num_image_tokens=IMAGE_TOKENS,
                       params=SamplingParams(max_new_tokens=5, stop_ids=(first[2],)))
    assert stopped == first[: first.index(first[2])]


def test_image_placeholder_count_must_match_images(debug_model):
    with pytest.raises(ValueError, match="2 image placeholders but 1 images"):
        generate(debug_model, [0, IMAGE_ID, IMAGE_ID, 7], torch.randn(1, 3, 64, 64), image_token_index=IMAGE_ID,
                 num_image_tokens=IMAGE_TOKENS)


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(0)
    draws = {_next_token(logits, SamplingParams(temperature=1.0, top_p=0.7), g) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.7; tokens 2 and 3 are never drawn
    assert _next_token(logits, SamplingParams(temperature=0.0), g) == 0
