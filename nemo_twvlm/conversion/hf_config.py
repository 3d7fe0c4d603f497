"""Hugging Face LLaVA config <-> ModelPreset.

A preset is inferred from the config, never assumed; every architecture feature our model does not
build (RoPE scaling, attention biases, a kept class token, several feature layers, ...) is refused by
its field name rather than converted into a model that silently computes something else.
"""
from __future__ import annotations

import dataclasses
import json

from nemo_twvlm.conversion.mapping import ConversionError
from nemo_twvlm.presets import PRESETS, LanguagePreset, ModelPreset, VisionPreset, architecture_diff, get_preset

_VISION_ACTIVATIONS = ("quick_gelu", "gelu")


def llava_config(config: dict):
    """transformers' LlavaConfig for a llava config.json dict (fills the defaults a saved config omits)."""
    from transformers import LlavaConfig

    try:
        return LlavaConfig.from_dict(config)
    except Exception as error:  # transformers' own validation, e.g. hidden size vs heads
        raise ConversionError(f"config.json is not a valid LlavaConfig: {error}") from None


def _require(where: str, field: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ConversionError(f"{where}.{field}={value!r} is not supported; expected {expected}")


def _rope_theta(text) -> float:
    params = getattr(text, "rope_parameters", None)
    if params is None:  # transformers 4.x
        params = {"rope_type": (text.rope_scaling or {}).get("rope_type", "default"), "rope_theta": text.rope_theta}
    _require("text_config", "rope_parameters.rope_type", params.get("rope_type"),
             params.get("rope_type", "default") == "default", "'default' (no RoPE scaling)")
    return float(params["rope_theta"])


def infer_preset(config: dict, *, image_mean=None, image_std=None, hf_reference: str = "") -> ModelPreset:
    cfg = llava_config(config)
    vision, text = cfg.vision_config, cfg.text_config
    _require("config", "vision_feature_select_strategy", cfg.vision_feature_select_strategy,
             cfg.vision_feature_select_strategy == "default", "'default' (class token dropped)")
    layer = cfg.vision_feature_layer
    _require("config", "vision_feature_layer", layer,
             isinstance(layer, int) and (-vision.num_hidden_layers <= layer <= -1 or 1 <= layer <= vision.num_hidden_layers),
             f"one layer index in [-{vision.num_hidden_layers}, -1] or [1, {vision.num_hidden_layers}]")
    _require("config", "projector_hidden_act", cfg.projector_hidden_act, cfg.projector_hidden_act == "gelu", "'gelu'")
    _require("config", "multimodal_projector_bias", getattr(cfg, "multimodal_projector_bias", True),
             getattr(cfg, "multimodal_projector_bias", True), "True")

    _require("vision_config", "hidden_act", vision.hidden_act, vision.hidden_act in _VISION_ACTIVATIONS,
             f"one of {list(_VISION_ACTIVATIONS)}")
    _require("vision_config", "num_channels", vision.num_channels, vision.num_channels == 3, "3")
    _require("vision_config", "image_size", vision.image_size, vision.image_size % vision.patch_size == 0,
             f"a multiple of patch_size={vision.patch_size}")

    _require("text_config", "hidden_act", text.hidden_act, text.hidden_act == "silu", "'silu'")
    _require("text_config", "attention_bias", text.attention_bias, not text.attention_bias, "False")
    _require("text_config", "mlp_bias", getattr(text, "mlp_bias", False), not getattr(text, "mlp_bias", False), "False")
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    _require("text_config", "head_dim", head_dim, head_dim * text.num_attention_heads == text.hidden_size,
             f"hidden_size / num_attention_heads = {text.hidden_size // text.num_attention_heads}")
    kv_heads = text.num_key_value_heads or text.num_attention_heads
    _require("text_config", "num_key_value_heads", kv_heads, text.num_attention_heads % kv_heads == 0,
             f"a divisor of num_attention_heads={text.num_attention_heads}")

    statistics = {key: tuple(value) for key, value in (("mean", image_mean), ("std", image_std)) if value is not None}
    preset = ModelPreset(
        name="imported",
        vision=VisionPreset(
            image_size=vision.image_size, patch_size=vision.patch_size, num_layers=vision.num_hidden_layers,
            hidden_size=vision.hidden_size, num_attention_heads=vision.num_attention_heads,
            ffn_hidden_size=vision.intermediate_size, activation=vision.hidden_act,
            layernorm_epsilon=vision.layer_norm_eps, feature_layer=layer, drop_class_token=True, **statistics,
        ),
        language=LanguagePreset(
            num_layers=text.num_hidden_layers, hidden_size=text.hidden_size,
            num_attention_heads=text.num_attention_heads, num_query_groups=kv_heads,
            ffn_hidden_size=text.intermediate_size, vocab_size=text.vocab_size, rotary_base=_rope_theta(text),
            max_position_embeddings=text.max_position_embeddings, norm_epsilon=text.rms_norm_eps,
            untie_embeddings=not tied_embeddings(config),
        ),
        hf_reference=hf_reference,
    )
    registered = next((name for name, known in PRESETS.items() if architecture_diff(preset, known) == []), None)
    return dataclasses.replace(preset, name=registered or "imported")


def tied_embeddings(config: dict) -> bool:
    return bool(config.get("tie_word_embeddings")) or bool(config.get("text_config", {}).get("tie_word_embeddings"))


def check_against(inferred: ModelPreset, preset: ModelPreset | str) -> ModelPreset:
    """The named preset, if the checkpoint matches it field for field."""
    expected = get_preset(preset) if isinstance(preset, str) else preset
    diffs = architecture_diff(inferred, expected)
    if diffs:
        raise ConversionError(f"checkpoint does not match preset {expected.name!r} "
                              f"(checkpoint vs preset): {'; '.join(diffs)}")
    return dataclasses.replace(expected, hf_reference=inferred.hf_reference or expected.hf_reference)


def export_llava_config(preset: ModelPreset, *, image_token_index: int, dtype: str, tokenizer,
                        source: dict | None, full_vision_tower: bool) -> dict:
    """The config.json of an export.

    With a recorded source config (an import from HF) that config is written back, so that HF -> ours -> HF
    round-trips it; otherwise the config is built from the preset. Without the source's dropped ViT
    layers (`full_vision_tower` False) the tower has `num_built_layers` layers and features come from its
    last one, which computes exactly what `feature_layer` of the full tower did.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if source is not None and source.get("model_type") == "llava":
        config = json.loads(json.dumps(source))
        config["image_token_index"] = image_token_index
        config["image_seq_length"] = preset.num_image_tokens
        return config
    vision, lm = preset.vision, preset.language
    if source is not None:  # a CLIP + Llama pair: keep both configs' extra fields
        vision_config, text_config = source["vision_config"], source["text_config"]
    else:
        vision_config = CLIPVisionConfig(
            hidden_size=vision.hidden_size, intermediate_size=vision.ffn_hidden_size,
            num_hidden_layers=vision.num_built_layers, num_attention_heads=vision.num_attention_heads,
            image_size=vision.image_size, patch_size=vision.patch_size, hidden_act=vision.activation,
            layer_norm_eps=vision.layernorm_epsilon,
        ).to_dict()
        text_config = LlamaConfig(
            vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, intermediate_size=lm.ffn_hidden_size,
            num_hidden_layers=lm.num_layers, num_attention_heads=lm.num_attention_heads,
            num_key_value_heads=lm.num_query_groups, max_position_embeddings=lm.max_position_embeddings,
            rms_norm_eps=lm.norm_epsilon, rope_theta=lm.rotary_base, tie_word_embeddings=not lm.untie_embeddings,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ).to_dict()
    config = LlavaConfig(
        vision_config=vision_config, text_config=text_config, image_token_index=image_token_index,
        image_seq_length=preset.num_image_tokens, projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=vision.feature_layer if full_vision_tower else -1,
        tie_word_embeddings=not lm.untie_embeddings,
    ).to_dict()
    config["architectures"] = ["LlavaForConditionalGeneration"]
    config["dtype"] = dtype
    config.pop("transformers_version", None)
    return config
