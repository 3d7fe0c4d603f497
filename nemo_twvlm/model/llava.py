"""Preset -> megatron-core LLaVAModel (CLIP ViT + mlp2x_gelu projector + Llama-style LM).

One builder for every size: the debug, 8b and 70b presets differ only in numbers. Layer specs come from
Transformer Engine when it is importable and from megatron's local (pure torch) modules otherwise.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from megatron.core.activations import quick_gelu
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.models.multimodal.llava_model import LLaVAModel
from megatron.core.models.vision.vit_layer_specs import (
    get_vit_layer_with_local_spec,
    get_vit_layer_with_transformer_engine_spec,
)
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.mlp import MLPSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig

from nemo_twvlm.compat import construction_workarounds, te_available
from nemo_twvlm.presets import ModelPreset

_ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


def cpu_base_config(precision: str = "fp32") -> TransformerConfig:
    """The non-architectural settings for a single-process model (tests, evaluation, conversion)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    return TransformerConfig(
        num_layers=1, hidden_size=8, num_attention_heads=1,
        use_cpu_initialization=True, params_dtype=dtype, pipeline_dtype=dtype, bf16=precision == "bf16",
        gradient_accumulation_fusion=False, masked_softmax_fusion=False, bias_activation_fusion=False,
        bias_dropout_fusion=False, apply_rope_fusion=False, persist_layer_norm=False,
        attention_dropout=0.0, hidden_dropout=0.0,
    )


def language_config(preset: ModelPreset, base: TransformerConfig) -> TransformerConfig:
    """The language model's TransformerConfig (also what a text-only GPT of the same shape is built from)."""
    lm = preset.language
    return dataclasses.replace(
        base,
        num_layers=lm.num_layers, hidden_size=lm.hidden_size, ffn_hidden_size=lm.ffn_hidden_size,
        num_attention_heads=lm.num_attention_heads, num_query_groups=lm.num_query_groups,
        kv_channels=lm.kv_channels, normalization="RMSNorm", layernorm_epsilon=lm.norm_epsilon,
        gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False, add_qkv_bias=False,
    )


def _vision_config(preset: ModelPreset, base: TransformerConfig) -> TransformerConfig:
    vit = preset.vision
    config = dataclasses.replace(
        base,
        num_layers=vit.num_built_layers, hidden_size=vit.hidden_size, ffn_hidden_size=vit.ffn_hidden_size,
        num_attention_heads=vit.num_attention_heads, num_query_groups=vit.num_attention_heads,
        kv_channels=vit.hidden_size // vit.num_attention_heads, normalization="LayerNorm",
        layernorm_epsilon=vit.layernorm_epsilon, gated_linear_unit=False,
        activation_func=_ACTIVATIONS[vit.activation], bias_activation_fusion=False,
        add_bias_linear=True, add_qkv_bias=True,
        # The ViT sits on the first pipeline stage whole, and is small enough not to need context
        # parallelism or FP8 (LLaVA recipes keep the encoder in BF16).
        pipeline_model_parallel_size=1, num_layers_in_first_pipeline_stage=None,
        num_layers_in_last_pipeline_stage=None, virtual_pipeline_model_parallel_size=None,
        context_parallel_size=1, fp8=None,
    )
    config.vision_model_type = "clip"
    return config


def _projector_config(preset: ModelPreset, base: TransformerConfig) -> TransformerConfig:
    if preset.projector_type != "mlp2x_gelu":
        raise ValueError(f"projector_type={preset.projector_type!r} is not supported; expected 'mlp2x_gelu'")
    lm = preset.language
    return dataclasses.replace(
        base,
        num_layers=1, hidden_size=lm.hidden_size, ffn_hidden_size=lm.hidden_size,
        num_attention_heads=lm.num_attention_heads, num_query_groups=lm.num_query_groups,
        kv_channels=lm.kv_channels, gated_linear_unit=False, activation_func=F.gelu,
        bias_activation_fusion=False, add_bias_linear=True,
        pipeline_model_parallel_size=1, num_layers_in_first_pipeline_stage=None,
        num_layers_in_last_pipeline_stage=None, virtual_pipeline_model_parallel_size=None,
        context_parallel_size=1, fp8=None,
    )


def build_llava(
    preset: ModelPreset,
    *,
    base_config: TransformerConfig | None = None,
    image_token_index: int,
    use_te: bool | None = None,
    pre_process: bool = True,
    post_process: bool = True,
    add_encoder: bool = True,
    add_decoder: bool = True,
    pg_collection=None,
    vp_stage: int | None = None,
    max_sequence_length: int | None = None,
) -> LLaVAModel:
    """Build the LLaVA model for `preset`.

    `base_config` carries the run's non-architectural settings (parallelism, precision, fusions): the
    training loop passes the config megatron.training derived from its arguments; single-process users
    leave it out and get `cpu_base_config()`.

    `max_sequence_length` is the longest combined (image + text) sequence; with pipeline parallelism
    megatron pads every micro-batch to it, since stages exchange fixed-shape tensors. Training passes its
    sequence length; inference leaves it at the preset's max_position_embeddings.

    Building has no process-wide effect; running the model on a CPU needs the workarounds an entry point
    switches on (`nemo_twvlm.compat.apply_cpu_workarounds`, called by `init_single_process`).
    """
    base = base_config if base_config is not None else cpu_base_config()
    lm_spec, vit_spec = layer_specs(te_available() if use_te is None else use_te)
    lm = preset.language
    with construction_workarounds():
        return LLaVAModel(
            language_transformer_config=language_config(preset, base),
            language_transformer_layer_spec=lm_spec,
            language_vocab_size=lm.vocab_size,
            language_max_sequence_length=max_sequence_length or lm.max_position_embeddings,
            vision_transformer_config=_vision_config(preset, base),
            vision_transformer_layer_spec=vit_spec,
            drop_vision_class_token=preset.vision.drop_class_token,
            vision_projection_config=_projector_config(preset, base),
            vision_projection_layer_spec=MLPSubmodules(linear_fc1=ColumnParallelLinear,
                                                       linear_fc2=RowParallelLinear),
            vision_projection_type="mlp",
            parallel_output=True,
            share_embeddings_and_output_weights=not lm.untie_embeddings,
            language_position_embedding_type="rope",
            language_rotary_base=int(lm.rotary_base),
            pre_process=pre_process,
            post_process=post_process,
            add_encoder=add_encoder,
            add_decoder=add_decoder,
            img_h=preset.vision.image_size,
            img_w=preset.vision.image_size,
            patch_dim=preset.vision.patch_size,
            image_token_index=image_token_index,
            pg_collection=pg_collection,
            vp_stage=vp_stage,
        )


def layer_specs(use_te: bool):
    """(language, vision) layer specs: Transformer Engine's, or megatron's local (pure torch) modules."""
    if use_te:
        return get_gpt_layer_with_transformer_engine_spec(), get_vit_layer_with_transformer_engine_spec()
    lm_spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    vit_spec = get_vit_layer_with_local_spec()
    # megatron's local ViT spec lacks the key map its GPT spec has: save layer norms under the TE names
    # so that a checkpoint written on CPU loads into a Transformer Engine run and back.
    vit_spec.submodules.sharded_state_dict_keys_map = {
        "input_layernorm.": "self_attention.linear_qkv.layer_norm_",
        "pre_mlp_layernorm.": "mlp.linear_fc1.layer_norm_",
    }
    return lm_spec, vit_spec
