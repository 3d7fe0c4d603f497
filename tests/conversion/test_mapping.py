"""The declared mapping table: its special cases invert, its TP slicing reproduces megatron's shards,
and it covers every tensor of the model under both layer-spec layouts."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nemo_twvlm.conversion.mapping import (
    RULES, ClassTokenMapping, ConversionError, GatedMLPMapping, Mapping, OutputLayerMapping, QKVMapping,
    expected_hf_names, match, tp_slice,
)
from nemo_twvlm.presets import PRESETS

DEBUG = PRESETS["debug"]
LM_QKV = "language_model.decoder.layers.1.self_attention.linear_qkv.weight"


def _rule(name: str):
    return match(name)[0]


def test_gqa_qkv_interleaves_per_query_group_and_inverts():
    lm = DEBUG.language  # 4 heads, 2 query groups, head_dim 32
    d = lm.kv_channels
    q = torch.arange(lm.num_attention_heads * d).float()[:, None].expand(-1, 3).clone()
    k, v = -1 - torch.arange(lm.num_query_groups * d).float()[:, None].expand(-1, 3), 1000 + q[: 2 * d]
    fused = _rule(LM_QKV).hf_to_megatron([q, k, v], DEBUG)
    # group 0 = [q heads 0, 1; k head 0; v head 0], then group 1.
    expected = torch.cat([q[: 2 * d], k[:d], v[:d], q[2 * d:], k[d:], v[d:]])
    assert torch.equal(fused, expected)
    back = _rule(LM_QKV).megatron_to_hf(fused, DEBUG)
    assert all(torch.equal(a, b) for a, b in zip(back, (q, k, v)))


def test_tp_shards_of_the_special_cases_concatenate_to_megatrons_tp1_layout():
    """Slicing each HF tensor and transforming gives rank r the r-th chunk megatron expects: whole query
    groups for QKV, [gate_r; up_r] for the gated fc1."""
    g = torch.Generator().manual_seed(0)
    lm = DEBUG.language
    qkv = [torch.randn(n * lm.kv_channels, lm.hidden_size, generator=g)
           for n in (lm.num_attention_heads, lm.num_query_groups, lm.num_query_groups)]
    full = _rule(LM_QKV).hf_to_megatron(qkv, DEBUG)
    shards = [_rule(LM_QKV).hf_to_megatron([t[slice(*tp_slice(t.shape, 0, r, 2))] for t in qkv], DEBUG) for r in range(2)]
    assert torch.equal(torch.cat(shards), full)

    fc1 = _rule("language_model.decoder.layers.0.mlp.linear_fc1.weight")
    gate, up = (torch.randn(lm.ffn_hidden_size, lm.hidden_size, generator=g) for _ in range(2))
    for r in range(2):
        rows = slice(*tp_slice(gate.shape, 0, r, 2))
        assert torch.equal(fc1.hf_to_megatron([gate[rows], up[rows]], DEBUG), torch.cat([gate[rows], up[rows]]))
    assert [t.shape for t in fc1.megatron_to_hf(torch.cat([gate, up]), DEBUG)] == [gate.shape, up.shape]
    with pytest.raises(ConversionError, match="does not split into 3"):
        tp_slice((1030, 64), 0, 0, 3)


def test_vit_class_token_and_qkv_bias():
    cls = _rule("vision_model.class_token")
    assert cls.hf_to_megatron([torch.arange(4.0)], DEBUG).shape == (1, 1, 4)
    bias = _rule("vision_model.decoder.layers.0.self_attention.linear_qkv.bias")
    h, heads = DEBUG.vision.hidden_size, DEBUG.vision.num_attention_heads
    q, k, v = (torch.randn(h) for _ in range(3))
    fused = bias.hf_to_megatron([q, k, v], DEBUG)
    d = h // heads
    assert torch.equal(fused[: 3 * d], torch.cat([q[:d], k[:d], v[:d]]))  # per head [q; k; v]
    assert all(torch.equal(a, b) for a, b in zip(bias.megatron_to_hf(fused, DEBUG), (q, k, v)))


def test_every_model_tensor_has_one_rule_whose_tp_split_is_megatrons(debug_megatron):
    covered = set()
    for name, param in debug_megatron.state_dict(keep_vars=True).items():
        if param is None or name.endswith("_extra_state"):
            continue
        rule, layer = match(name)
        assert sum(1 for r in RULES for p in r.megatron if p == rule.megatron[0]) == 1
        declared = rule.tp_dim
        actual = getattr(param, "partition_dim", None) if getattr(param, "tensor_model_parallel", False) else None
        assert declared == actual, f"{name}: table says tp_dim={declared}, megatron partitions dim {actual}"
        covered.update(rule.hf_names(layer, DEBUG))
    assert covered == set(expected_hf_names(DEBUG))


def test_transformer_engine_layout_maps_to_the_same_hf_tensors(debug_megatron):
    """Under TE specs the layer norms are fused into linear_qkv / linear_fc1; both names are declared."""
    te_renames = {"input_layernorm.": "self_attention.linear_qkv.layer_norm_",
                  "pre_mlp_layernorm.": "mlp.linear_fc1.layer_norm_"}
    for name, param in debug_megatron.state_dict(keep_vars=True).items():
        if param is None or name.endswith("_extra_state"):
            continue
        te_name = name
        for local, te in te_renames.items():
            te_name = te_name.replace(local, te)
        rule, layer = match(name)
        te_rule, te_layer = match(te_name)
        assert (te_rule, te_layer) == (rule, layer)
        assert rule.megatron_name(layer, te=True) == te_name


def test_tied_embeddings_read_the_output_layer_from_the_embedding():
    tied = dataclasses.replace(DEBUG, language=dataclasses.replace(DEBUG.language, untie_embeddings=False))
    rule, layer = match("language_model.output_layer.weight")
    assert rule.hf_names(layer, tied) == ("language_model.embed_tokens.weight",)
    assert "lm_head.weight" not in expected_hf_names(tied)


def test_unknown_megatron_tensor_is_named():
    with pytest.raises(ConversionError, match="'language_model.decoder.layers.0.mlp.router.weight' has no rule"):
        match("language_model.decoder.layers.0.mlp.router.weight")


def _inverse_cases():
    """(rule, HF parts) per mapping class, the parts random and shaped as the debug model's."""
    lm, vit = DEBUG.language, DEBUG.vision
    g = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    d = lm.kv_channels
    return {
        "copy": (_rule("language_model.decoder.layers.0.self_attention.linear_proj.weight"),
                 [rand(lm.hidden_size, lm.num_attention_heads * d)]),
        "output_layer": (_rule("language_model.output_layer.weight"), [rand(lm.vocab_size, lm.hidden_size)]),
        "class_token": (_rule("vision_model.class_token"), [rand(vit.hidden_size)]),
        "gated_mlp": (_rule("language_model.decoder.layers.0.mlp.linear_fc1.weight"),
                      [rand(lm.ffn_hidden_size, lm.hidden_size) for _ in range(2)]),
        "qkv_gqa": (_rule(LM_QKV), [rand(n * d, lm.hidden_size)
                                    for n in (lm.num_attention_heads, lm.num_query_groups, lm.num_query_groups)]),
        "qkv_vit_bias": (_rule("vision_model.decoder.layers.0.self_attention.linear_qkv.bias"),
                         [rand(vit.hidden_size) for _ in range(3)]),
    }


@pytest.mark.parametrize("case", sorted(_inverse_cases()))
def test_each_mapping_class_has_two_directions_that_invert_bitwise(case):
    rule, parts = _inverse_cases()[case]
    fused = rule.hf_to_megatron(parts, DEBUG)
    back = rule.megatron_to_hf(fused, DEBUG)
    assert len(back) == len(parts) == len(rule.hf)
    assert all(torch.equal(a, b) for a, b in zip(back, parts))
    assert torch.equal(rule.hf_to_megatron(back, DEBUG), fused)
    megatron_side = torch.randn(fused.shape, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    assert torch.equal(rule.hf_to_megatron(rule.megatron_to_hf(megatron_side, DEBUG), DEBUG), megatron_side)


def test_every_mapping_class_in_the_table_has_an_inverse_case():
    assert {type(rule) for rule in RULES} == {type(rule) for rule, _ in _inverse_cases().values()} == {
        Mapping, OutputLayerMapping, ClassTokenMapping, GatedMLPMapping, QKVMapping}
