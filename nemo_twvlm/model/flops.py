"""Training FLOPs of the VLM: the language model per token, the ViT and projector per image, and a whole
run's model FLOPs. Pure arithmetic on presets, shared by the planner and the training log's TFLOP/s.

Conventions used throughout
---------------------------
* One multiply-accumulate (MAC) = 2 FLOPs.
* "Training FLOPs" = forward + backward = 3 x forward (backward computes gradients w.r.t. both the
  activations and the weights, each costing one forward). This is the "model FLOPs" of MFU: activation
  recomputation is *not* counted.
* Elementwise work (norms, softmax, activations, RoPE, residual adds) is ignored: it is < 1 % of the
  matmul FLOPs for every preset here.
* Attention-score FLOPs of a causal LM can be counted two ways, and published tables use both:

  - `CAUSAL_HALVED` (``causal=True``): the QK^T and softmax·V matmuls only touch the lower triangle,
    so each token attends to s/2 tokens on average. Megatron-Bridge's performance summary (container
    25.11: Llama3-70B, 719 TFLOP/s/GPU at 1,602 tokens/s/GPU) uses this one.
  - `FULL_ATTENTION` (``causal=False``): the full s x s score matrix is counted, as in Megatron-LM's
    `num_floating_point_operations` of 2024. The NeMo 24.07 performance summary (Llama3-70B,
    738 TFLOP/s/GPU at 1,533 tokens/s/GPU) uses this one.

  Both tables are reproduced to within 0.1 % by `lm_flops_per_token` (see tests/model/test_flops.py).
  The multimodal plan uses `CAUSAL_HALVED`: it is the work a flash-attention kernel actually does.
"""
from __future__ import annotations

from typing import Union

from nemo_twvlm.presets import LanguagePreset, ModelPreset, VisionPreset

# --- FLOPs conventions ------------------------------------------------------------------------------
CAUSAL_HALVED = True    # Megatron-Bridge performance summary (25.11)
FULL_ATTENTION = False  # NeMo 24.07 performance summary / Megatron-LM 2024 formula
FLOPS_CONVENTIONS: dict[str, bool] = {
    "megatron-bridge": CAUSAL_HALVED,
    "nemo-24.07": FULL_ATTENTION,
}

TRAIN_PASSES = 3  # forward + backward
FLOPS_PER_MAC = 2


def lm_flops_per_token(
    num_layers: int,
    hidden_size: int,
    num_attention_heads: int,
    num_query_groups: int,
    ffn_hidden_size: int,
    vocab_size: int,
    seq_length: int,
    *,
    causal: bool = CAUSAL_HALVED,
) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward, 2 FLOPs per MAC) of a Llama-style LM.

    Forward MACs per token and layer, with h = hidden, d = h / heads, g = query groups, s = seq_length:

    * QKV projections with GQA: q h x h, k and v h x (g d) each  -> h^2 + 2 h g d
    * attention scores QK^T and scores x V: s h each when every token sees all s tokens -> 2 s h;
      ``causal=True`` (`CAUSAL_HALVED`, Megatron-Bridge) counts half of it, s h;
      ``causal=False`` (`FULL_ATTENTION`, NeMo 24.07) counts the full 2 s h
    * output projection h x h                                    -> h^2
    * SwiGLU MLP: gate, up (h x ffn) and down (ffn x h)          -> 3 h ffn

    plus the logits layer h x vocab once per token (the embedding lookup is free).
    """
    h, s, L = hidden_size, seq_length, num_layers
    head_dim = h // num_attention_heads
    qkv = h * h + 2 * h * num_query_groups * head_dim
    attention = 2 * s * h * (0.5 if causal else 1.0)
    proj = h * h
    mlp = 3 * h * ffn_hidden_size
    logits = h * vocab_size
    macs = L * (qkv + attention + proj + mlp) + logits
    return float(TRAIN_PASSES * FLOPS_PER_MAC * macs)


def language_flops_per_token(
    language: Union[LanguagePreset, ModelPreset], seq_length: int, *, causal: bool = CAUSAL_HALVED
) -> float:
    """`lm_flops_per_token` for a preset's language model."""
    lm = language.language if isinstance(language, ModelPreset) else language
    return lm_flops_per_token(
        lm.num_layers, lm.hidden_size, lm.num_attention_heads, lm.num_query_groups,
        lm.ffn_hidden_size, lm.vocab_size, seq_length, causal=causal,
    )


def vit_flops_per_image(vision: Union[VisionPreset, ModelPreset], *, backward: bool = True) -> float:
    """FLOPs of the built CLIP ViT on one image: training (3 x forward) by default, forward only with
    ``backward=False`` (a frozen ViT runs forward only).

    Per image, with n = patches + 1 class token, h = hidden, p = patch:
    patch conv n_patches x 3 p^2 x h MACs; per built layer n (4 h^2 + 2 h ffn) MACs for QKV, output
    projection and MLP, plus 2 n^2 h for the (bidirectional) attention scores and scores x V.
    """
    v = vision.vision if isinstance(vision, ModelPreset) else vision
    h, n_patches = v.hidden_size, v.num_image_tokens
    n = n_patches + 1  # megatron's CLIPViTModel always prepends one class token for "clip"
    conv = n_patches * 3 * v.patch_size**2 * h
    per_layer = n * (4 * h * h + 2 * h * v.ffn_hidden_size) + 2 * n * n * h
    macs = conv + v.num_built_layers * per_layer
    return float((TRAIN_PASSES if backward else 1) * FLOPS_PER_MAC * macs)


def projector_flops_per_image(preset: ModelPreset, *, backward: bool = True) -> float:
    """Training FLOPs (3 x forward) of the mlp2x_gelu projector on one image's tokens."""
    vh, lh = preset.vision.hidden_size, preset.language.hidden_size
    macs = preset.num_image_tokens * (vh * lh + lh * lh)
    return float((TRAIN_PASSES if backward else 1) * FLOPS_PER_MAC * macs)


def training_flops(preset: ModelPreset, *, images: float, text_tokens: float, seq_length: int,
                   train_vision: bool) -> float:
    """Model FLOPs of training on `images` images and `text_tokens` text tokens: every image through the
    ViT (3 x forward only when it trains) and the projector, and its `num_image_tokens` positions plus
    the text through the LM. The plan's budget and the training log's TFLOP/s both use it."""
    lm_fpt = language_flops_per_token(preset, seq_length, causal=CAUSAL_HALVED)
    per_image = (vit_flops_per_image(preset.vision, backward=train_vision) + projector_flops_per_image(preset)
                 + preset.num_image_tokens * lm_fpt)
    return images * per_image + text_tokens * lm_fpt
