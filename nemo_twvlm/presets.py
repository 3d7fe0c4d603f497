"""Named model presets: every architecture number lives here once.

`debug` is the CPU size used by tests and the demo; `8b` and `70b` mirror the public checkpoints
(CLIP ViT-L/14-336 + Llama-3-8B / Llama-3-Taiwan-70B). All three build the same model class.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class VisionPreset:
    """A CLIP ViT. `num_layers` is the checkpoint's depth; layers after `feature_layer` are not built."""

    image_size: int
    patch_size: int
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    activation: str = "quick_gelu"
    layernorm_epsilon: float = 1e-5
    feature_layer: int = -2
    drop_class_token: bool = True
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_built_layers(self) -> int:
        # hidden_states[feature_layer] in HF counts the embedding output as index 0, so layer -2 of a
        # 24-layer ViT is the output of block 23: blocks after it never influence the LM.
        return self.num_layers + 1 + self.feature_layer if self.feature_layer < 0 else self.feature_layer


@dataclass(frozen=True)
class LanguagePreset:
    """A Llama-style decoder: RMSNorm, SwiGLU, GQA, RoPE, untied embeddings."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int
    vocab_size: int
    rotary_base: float
    max_position_embeddings: int
    norm_epsilon: float = 1e-5
    untie_embeddings: bool = True

    @property
    def kv_channels(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class ModelPreset:
    name: str
    vision: VisionPreset
    language: LanguagePreset
    projector_type: str = "mlp2x_gelu"
    hf_reference: str = ""

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_image_tokens

    def with_vocab_size(self, vocab_size: int) -> "ModelPreset":
        return replace(self, language=replace(self.language, vocab_size=vocab_size))


CLIP_VIT_L_14_336 = VisionPreset(
    image_size=336, patch_size=14, num_layers=24, hidden_size=1024, num_attention_heads=16, ffn_hidden_size=4096,
)

LLAMA3_70B = LanguagePreset(
    num_layers=80, hidden_size=8192, num_attention_heads=64, num_query_groups=8, ffn_hidden_size=28672,
    vocab_size=128256, rotary_base=500000.0, max_position_embeddings=8192,
)

LLAMA3_8B = LanguagePreset(
    num_layers=32, hidden_size=4096, num_attention_heads=32, num_query_groups=8, ffn_hidden_size=14336,
    vocab_size=128256, rotary_base=500000.0, max_position_embeddings=8192,
)

DEBUG_VISION = VisionPreset(
    image_size=64, patch_size=16, num_layers=3, hidden_size=64, num_attention_heads=4, ffn_hidden_size=256,
)

# The debug vocabulary is the size of the tokenizer trained by scripts/train_tokenizer.py (data/tokenizer).
DEBUG_LANGUAGE = LanguagePreset(
    num_layers=2, hidden_size=128, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=352,
    vocab_size=1024, rotary_base=10000.0, max_position_embeddings=1024,
)

PRESETS: dict[str, ModelPreset] = {
    "debug": ModelPreset("debug", DEBUG_VISION, DEBUG_LANGUAGE),
    "8b": ModelPreset("8b", CLIP_VIT_L_14_336, LLAMA3_8B,
                      hf_reference="openai/clip-vit-large-patch14-336 + meta-llama/Meta-Llama-3-8B"),
    "70b": ModelPreset("70b", CLIP_VIT_L_14_336, LLAMA3_70B,
                       hf_reference="openai/clip-vit-large-patch14-336 + yentinglin/Llama-3-Taiwan-70B-Instruct"),
}


def architecture_diff(a: ModelPreset, b: ModelPreset) -> list[str]:
    """'field: a vs b' for every architecture field that differs (the name and reference are labels)."""
    diffs = []
    for part in ("vision", "language"):
        left, right = getattr(a, part), getattr(b, part)
        for f in dataclasses.fields(left):
            x, y = getattr(left, f.name), getattr(right, f.name)
            if x != y and not (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= 1e-9 * max(abs(x), abs(y))):
                diffs.append(f"{part}.{f.name}: {x!r} vs {y!r}")
    if a.projector_type != b.projector_type:
        diffs.append(f"projector_type: {a.projector_type!r} vs {b.projector_type!r}")
    return diffs


# Sizes that are not registered (e.g. an imported HF checkpoint) travel as this file beside the checkpoint.
PRESET_FILE = "twvlm_preset.json"


def preset_to_dict(preset: ModelPreset) -> dict:
    return dataclasses.asdict(preset)


def preset_from_dict(raw: dict) -> ModelPreset:
    vision = dict(raw["vision"])
    vision["mean"], vision["std"] = tuple(vision["mean"]), tuple(vision["std"])
    return ModelPreset(name=raw["name"], vision=VisionPreset(**vision), language=LanguagePreset(**raw["language"]),
                       projector_type=raw.get("projector_type", "mlp2x_gelu"), hf_reference=raw.get("hf_reference", ""))


def save_preset(preset: ModelPreset, directory: str | Path) -> Path:
    path = Path(directory, PRESET_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(preset_to_dict(preset), indent=2) + "\n", encoding="utf-8")
    return path


def load_preset(path: str | Path) -> ModelPreset:
    """A preset from a `twvlm_preset.json` file, or from a checkpoint directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / PRESET_FILE
    return preset_from_dict(json.loads(path.read_text(encoding="utf-8")))


def get_preset(name: str) -> ModelPreset:
    """A registered preset by name, or the preset file (or checkpoint directory) at path `name`."""
    if name in PRESETS:
        return PRESETS[name]
    if name and (Path(name).is_file() or Path(name, PRESET_FILE).is_file()):
        return load_preset(name)
    raise ValueError(f"model.preset={name!r} is not a known preset; expected one of {sorted(PRESETS)} "
                     f"or the path of a {PRESET_FILE}")
