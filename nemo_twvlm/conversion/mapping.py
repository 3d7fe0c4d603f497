"""The one declared HF <-> megatron parameter mapping, read in both directions.

HF names here are *canonical*: the prefixes that differ between transformers versions and between a
llava-hf checkpoint and separate CLIP / Llama checkpoints are normalised by `sources.canonical_name`:

    vision_tower.<CLIPVisionTransformer params>      e.g. vision_tower.encoder.layers.0.mlp.fc1.weight
    multi_modal_projector.linear_{1,2}.{weight,bias}
    language_model.<LlamaModel params>               e.g. language_model.layers.0.self_attn.q_proj.weight
    lm_head.weight

`*` in a pattern is a layer index; a megatron name's index is global (pipeline offset added).
Each rule lists its megatron name under the local (pure torch) layer specs and, where they differ, under
Transformer Engine specs, whose layer norms are fused into the following linear layer; a model's own
state-dict keys pick the layout.

A rule is a `Mapping`: the plain case copies one tensor; the special cases are subclasses that carry
both directions (`hf_to_megatron`, `megatron_to_hf`): `QKVMapping` (GQA query groups),
`GatedMLPMapping` (SwiGLU fc1), `ClassTokenMapping` (CLIP's class embedding), `OutputLayerMapping`
(tied embeddings). A new special case is one subclass and its rows in RULES.

Tensor parallelism: `tp_dim` 0 is column-parallel (rows split: qkv, fc1, embedding, output, projector
fc1), 1 is row-parallel (columns split: attention proj, fc2, projector fc2), None is replicated (norms,
row-parallel biases, ViT embeddings). Slicing each HF source tensor along `tp_dim` and then applying the
rule's transform gives exactly megatron's local shard, for the special cases too: a QKV shard holds whole
query groups (each [q heads of the group; k; v]) and a gated fc1 shard is [gate shard; up shard].
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from nemo_twvlm.presets import ModelPreset


class ConversionError(ValueError):
    """A checkpoint that cannot be converted: the message names the tensor, field or file."""


@dataclass(frozen=True)
class Mapping:
    """One megatron tensor and the HF tensor(s) it is made of, with both directions of the transform.

    This base is the plain case: one HF tensor in the same layout (linear layers, norms, the projector,
    CLIP's patch and position embeddings, which megatron keeps in HF's order, class position first).
    """

    megatron: tuple[str, ...]  # local-spec name first, then the Transformer Engine name if different
    hf: tuple[str, ...]
    tp_dim: int | None = None

    @property
    def tower(self) -> str:
        return "language" if self.megatron[0].startswith("language_model.") else "vision"

    def hf_names(self, layer: int | None, preset: ModelPreset) -> tuple[str, ...]:
        return tuple(name.replace("*", str(layer)) for name in self.hf)

    def megatron_name(self, layer: int | None, *, te: bool = False) -> str:
        pattern = self.megatron[-1] if te else self.megatron[0]
        return pattern.replace("*", str(layer))

    def hf_to_megatron(self, parts: list[torch.Tensor], preset: ModelPreset) -> torch.Tensor:
        """HF tensors (already sliced to this rank's TP shard along `tp_dim`) -> the megatron tensor."""
        return parts[0]

    def megatron_to_hf(self, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
        """A full (TP=1) megatron tensor -> its HF tensors, in `hf` order."""
        return [tensor]


class OutputLayerMapping(Mapping):
    """With tied embeddings the output layer exists only on a last pipeline stage that is not also the
    first, where it is a copy of the embedding: it is read from the embedding and adds no HF tensor."""

    def hf_names(self, layer: int | None, preset: ModelPreset) -> tuple[str, ...]:
        if not preset.language.untie_embeddings:
            return ("language_model.embed_tokens.weight",)
        return super().hf_names(layer, preset)


class ClassTokenMapping(Mapping):
    """CLIP's class embedding: HF (hidden,), megatron (1, 1, hidden)."""

    def hf_to_megatron(self, parts: list[torch.Tensor], preset: ModelPreset) -> torch.Tensor:
        return parts[0].reshape(1, 1, -1)

    def megatron_to_hf(self, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
        return [tensor.reshape(-1)]


class GatedMLPMapping(Mapping):
    """SwiGLU fc1: HF gate_proj and up_proj, megatron one [gate; up] (a TP shard is [gate_r; up_r])."""

    def hf_to_megatron(self, parts: list[torch.Tensor], preset: ModelPreset) -> torch.Tensor:
        return torch.cat(parts, dim=0)

    def megatron_to_hf(self, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
        return list(torch.chunk(tensor, 2, dim=0))


class QKVMapping(Mapping):
    """HF q/k/v projections <-> megatron's fused linear_qkv, grouped per query group: each group is
    [its q heads; k; v] (GQA in the LM; the ViT has one group per head). A TP shard holds whole groups."""

    def head_dim(self, preset: ModelPreset) -> int:
        if self.tower == "language":
            return preset.language.kv_channels
        return preset.vision.hidden_size // preset.vision.num_attention_heads

    def heads_and_groups(self, preset: ModelPreset) -> tuple[int, int]:
        if self.tower == "language":
            return preset.language.num_attention_heads, preset.language.num_query_groups
        return preset.vision.num_attention_heads, preset.vision.num_attention_heads

    def hf_to_megatron(self, parts: list[torch.Tensor], preset: ModelPreset) -> torch.Tensor:
        q, k, v = parts
        head_dim = self.head_dim(preset)
        # Groups from the (possibly TP-sliced) k rows, not the preset: a shard holds only its groups.
        groups = k.shape[0] // head_dim
        if groups == 0 or q.shape[0] % (groups * head_dim) or k.shape != v.shape:
            raise ConversionError(f"{self.hf[0]}: q/k/v shapes {tuple(q.shape)}, {tuple(k.shape)}, "
                                  f"{tuple(v.shape)} do not split into query groups of head_dim={head_dim}")
        rest = q.shape[1:]
        per_group = [q.reshape(groups, -1, *rest), k.reshape(groups, head_dim, *rest), v.reshape(groups, head_dim, *rest)]
        return torch.cat(per_group, dim=1).reshape(-1, *rest)

    def megatron_to_hf(self, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
        heads, groups = self.heads_and_groups(preset)
        head_dim = self.head_dim(preset)
        rest = tensor.shape[1:]
        grouped = tensor.reshape(groups, (heads // groups + 2) * head_dim, *rest)
        q, k, v = torch.split(grouped, [heads // groups * head_dim, head_dim, head_dim], dim=1)
        return [part.reshape(-1, *rest) for part in (q, k, v)]


def _lm(name: str) -> str:
    return f"language_model.decoder.layers.*.{name}"


def _vit(name: str) -> str:
    return f"vision_model.decoder.layers.*.{name}"


def _hf_lm(name: str) -> str:
    return f"language_model.layers.*.{name}"


def _hf_vit(name: str) -> str:
    return f"vision_tower.encoder.layers.*.{name}"


RULES: tuple[Mapping, ...] = (
    # Language model (Llama).
    Mapping(("language_model.embedding.word_embeddings.weight",), ("language_model.embed_tokens.weight",), tp_dim=0),
    Mapping((_lm("input_layernorm.weight"), _lm("self_attention.linear_qkv.layer_norm_weight")),
            (_hf_lm("input_layernorm.weight"),)),
    QKVMapping((_lm("self_attention.linear_qkv.weight"),),
               (_hf_lm("self_attn.q_proj.weight"), _hf_lm("self_attn.k_proj.weight"), _hf_lm("self_attn.v_proj.weight")),
               tp_dim=0),
    Mapping((_lm("self_attention.linear_proj.weight"),), (_hf_lm("self_attn.o_proj.weight"),), tp_dim=1),
    Mapping((_lm("pre_mlp_layernorm.weight"), _lm("mlp.linear_fc1.layer_norm_weight")),
            (_hf_lm("post_attention_layernorm.weight"),)),
    GatedMLPMapping((_lm("mlp.linear_fc1.weight"),), (_hf_lm("mlp.gate_proj.weight"), _hf_lm("mlp.up_proj.weight")),
                    tp_dim=0),
    Mapping((_lm("mlp.linear_fc2.weight"),), (_hf_lm("mlp.down_proj.weight"),), tp_dim=1),
    Mapping(("language_model.decoder.final_layernorm.weight",), ("language_model.norm.weight",)),
    OutputLayerMapping(("language_model.output_layer.weight",), ("lm_head.weight",), tp_dim=0),
    # Vision tower (CLIP ViT).
    ClassTokenMapping(("vision_model.class_token",), ("vision_tower.embeddings.class_embedding",)),
    Mapping(("vision_model.conv1.weight",), ("vision_tower.embeddings.patch_embedding.weight",)),
    Mapping(("vision_model.position_embeddings.weight",), ("vision_tower.embeddings.position_embedding.weight",)),
    Mapping(("vision_model.ln_pre.weight",), ("vision_tower.pre_layrnorm.weight",)),
    Mapping(("vision_model.ln_pre.bias",), ("vision_tower.pre_layrnorm.bias",)),
    *(
        rule
        for part in ("weight", "bias")
        for rule in (
            Mapping((_vit(f"input_layernorm.{part}"), _vit(f"self_attention.linear_qkv.layer_norm_{part}")),
                    (_hf_vit(f"layer_norm1.{part}"),)),
            QKVMapping((_vit(f"self_attention.linear_qkv.{part}"),),
                       (_hf_vit(f"self_attn.q_proj.{part}"), _hf_vit(f"self_attn.k_proj.{part}"),
                        _hf_vit(f"self_attn.v_proj.{part}")),
                       tp_dim=0),
            Mapping((_vit(f"self_attention.linear_proj.{part}"),), (_hf_vit(f"self_attn.out_proj.{part}"),),
                    tp_dim=1 if part == "weight" else None),
            Mapping((_vit(f"pre_mlp_layernorm.{part}"), _vit(f"mlp.linear_fc1.layer_norm_{part}")),
                    (_hf_vit(f"layer_norm2.{part}"),)),
            Mapping((_vit(f"mlp.linear_fc1.{part}"),), (_hf_vit(f"mlp.fc1.{part}"),), tp_dim=0),
            Mapping((_vit(f"mlp.linear_fc2.{part}"),), (_hf_vit(f"mlp.fc2.{part}"),),
                    tp_dim=1 if part == "weight" else None),
        )
    ),
    # Projector (mlp2x_gelu).
    Mapping(("vision_projection.encoder.linear_fc1.weight",), ("multi_modal_projector.linear_1.weight",), tp_dim=0),
    Mapping(("vision_projection.encoder.linear_fc1.bias",), ("multi_modal_projector.linear_1.bias",), tp_dim=0),
    Mapping(("vision_projection.encoder.linear_fc2.weight",), ("multi_modal_projector.linear_2.weight",), tp_dim=1),
    Mapping(("vision_projection.encoder.linear_fc2.bias",), ("multi_modal_projector.linear_2.bias",)),
)


def _compile(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", r"(\d+)") + "$")


_MATCHERS = [(_compile(pattern), rule) for rule in RULES for pattern in rule.megatron]


def match(megatron_name: str) -> tuple[Mapping, int | None]:
    """The rule for a (global) megatron parameter name and its layer index, if any."""
    for regex, rule in _MATCHERS:
        found = regex.match(megatron_name)
        if found:
            return rule, int(found.group(1)) if found.groups() else None
    raise ConversionError(f"megatron tensor {megatron_name!r} has no rule in nemo_twvlm.conversion.mapping.RULES")


def expected_hf_names(preset: ModelPreset) -> list[str]:
    """Every HF tensor the megatron model is built from, in table order (the sidecar holds the rest)."""
    names = []
    for rule in RULES:
        if "*" not in rule.megatron[0]:
            names.extend(rule.hf_names(None, preset))
            continue
        layers = preset.language.num_layers if rule.tower == "language" else preset.vision.num_built_layers
        for layer in range(layers):
            names.extend(rule.hf_names(layer, preset))
    return list(dict.fromkeys(names))  # a tied output layer names the embedding again


def tp_slice(tensor_shape: tuple[int, ...], tp_dim: int | None, rank: int, size: int) -> tuple[int, int] | None:
    """[start, stop) along tp_dim of `rank`'s shard, or None when the tensor is replicated."""
    if tp_dim is None or size == 1:
        return None
    length = tensor_shape[tp_dim]
    if length % size:
        raise ConversionError(f"dimension {tp_dim} of size {length} does not split into {size} tensor-parallel shards")
    step = length // size
    return rank * step, (rank + 1) * step
