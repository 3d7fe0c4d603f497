"""VLM FLOPs: hand-computed toys and the published Llama-3-70B anchors of both attention conventions."""
from __future__ import annotations

import pytest

from nemo_twvlm.model.flops import (
    CAUSAL_HALVED,
    FLOPS_CONVENTIONS,
    FULL_ATTENTION,
    language_flops_per_token,
    lm_flops_per_token,
    projector_flops_per_image,
    vit_flops_per_image,
)
from nemo_twvlm.presets import PRESETS, VisionPreset

LLAMA3_70B = PRESETS["70b"].language


def test_toy_lm_flops_by_hand():
    # 1 layer, h=4, 2 heads (head_dim 2), 1 KV group, ffn 8, vocab 10, seq 6. Forward MACs per token:
    #   q 4*4=16, k+v 2*4*(1*2)=16, proj 16, MLP 3*4*8=96, logits 4*10=40     -> 184
    #   attention QK^T + AV: full 2*6*4 = 48, causal-halved 24
    # training FLOPs = 3 passes * 2 FLOPs/MAC * MACs
    args = dict(num_layers=1, hidden_size=4, num_attention_heads=2, num_query_groups=1, ffn_hidden_size=8,
                vocab_size=10, seq_length=6)
    assert lm_flops_per_token(**args, causal=False) == 6 * (184 + 48) == 1392
    assert lm_flops_per_token(**args, causal=True) == 6 * (184 + 24) == 1248
    assert lm_flops_per_token(**args) == 1248  # default is the causal-halved convention


def test_two_layer_toy_scales_layers_not_logits():
    args = dict(hidden_size=4, num_attention_heads=2, num_query_groups=1, ffn_hidden_size=8,
                vocab_size=10, seq_length=6, causal=False)
    one, two = lm_flops_per_token(num_layers=1, **args), lm_flops_per_token(num_layers=2, **args)
    assert two - one == 6 * (16 + 16 + 16 + 96 + 48)  # one more layer, same logits


def _llama70b(causal: bool) -> float:
    return lm_flops_per_token(
        LLAMA3_70B.num_layers, LLAMA3_70B.hidden_size, LLAMA3_70B.num_attention_heads,
        LLAMA3_70B.num_query_groups, LLAMA3_70B.ffn_hidden_size, LLAMA3_70B.vocab_size, 8192, causal=causal)


def test_preset_numbers_are_the_published_llama3_70b():
    assert (LLAMA3_70B.num_layers, LLAMA3_70B.hidden_size, LLAMA3_70B.num_attention_heads,
            LLAMA3_70B.num_query_groups, LLAMA3_70B.ffn_hidden_size, LLAMA3_70B.vocab_size) == (
        80, 8192, 64, 8, 28672, 128256)


def test_megatron_bridge_anchor_uses_causal_halved_attention():
    published = 719e12 / 1602  # Megatron-Bridge 25.11: TFLOP/s/GPU / tokens/s/GPU = 448.8 GFLOP/token
    assert FLOPS_CONVENTIONS["megatron-bridge"] is CAUSAL_HALVED
    assert _llama70b(CAUSAL_HALVED) == pytest.approx(published, rel=0.01)
    assert _llama70b(FULL_ATTENTION) != pytest.approx(published, rel=0.05)  # the other convention is 7 % off


def test_nemo_2407_anchor_uses_full_attention():
    published = 738e12 / 1533  # NeMo 24.07: 481.4 GFLOP/token
    assert FLOPS_CONVENTIONS["nemo-24.07"] is FULL_ATTENTION
    assert _llama70b(FULL_ATTENTION) == pytest.approx(published, rel=0.01)
    assert _llama70b(CAUSAL_HALVED) != pytest.approx(published, rel=0.05)


def test_language_flops_per_token_reads_the_preset():
    assert language_flops_per_token(PRESETS["70b"], 8192, causal=False) == _llama70b(False)
    assert language_flops_per_token(LLAMA3_70B, 8192) == _llama70b(True)


def test_toy_vit_and_projector_flops_by_hand():
    # 4x4 image, patch 2 -> 4 patches + 1 class token = 5 tokens; 2-layer checkpoint, feature layer -2 -> 1 built.
    v = VisionPreset(image_size=4, patch_size=2, num_layers=2, hidden_size=4, num_attention_heads=1, ffn_hidden_size=8)
    assert v.num_built_layers == 1
    conv = 4 * 3 * 2 * 2 * 4  # patches * (3 p^2) * h = 192
    layer = 5 * (4 * 4 * 4 + 2 * 4 * 8) + 2 * 5 * 5 * 4  # 640 + 200 (bidirectional attention)
    assert vit_flops_per_image(v) == 6 * (conv + layer) == 6192
    assert vit_flops_per_image(v, backward=False) == 2 * (conv + layer)

    debug = PRESETS["debug"]  # 16 image tokens, 64 -> 128 -> 128
    assert projector_flops_per_image(debug) == 6 * 16 * (64 * 128 + 128 * 128) == 2_359_296
