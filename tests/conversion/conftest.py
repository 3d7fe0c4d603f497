"""Tiny random HF models, written once per session, and their conversions.

Every weight is drawn at random (layer norms around 1, biases around 0) so that a swapped or transposed
tensor cannot hide behind a default initialisation. Vocab 1030: not a multiple of 8, even for TP=2.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "data" / "tokenizer"
IMAGE_ID = 5

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
              patch_size=8, layer_norm_eps=1e-5)
TEXT = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1030, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=0, eos_token_id=1, pad_token_id=6)


def randomize_(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_((0.2 if param.ndim > 1 else 0.05) * noise)


def llava_config(*, vision: dict | None = None, text: dict | None = None, **overrides):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision_config = CLIPVisionConfig(**{**VISION, **(vision or {})})
    tokens = (vision_config.image_size // vision_config.patch_size) ** 2
    return LlavaConfig(vision_config=vision_config, text_config=LlamaConfig(**{**TEXT, **(text or {})}),
                       image_token_index=IMAGE_ID, image_seq_length=tokens, **overrides)


def write_llava(directory: Path, *, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> Path:
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration(llava_config(**overrides))
    randomize_(model, seed)
    model.to(dtype).save_pretrained(directory)
    for path in TOKENIZER.iterdir():
        shutil.copy(path, directory / path.name)
    return directory


def write_pair(directory: Path, *, seed: int = 1) -> tuple[Path, Path]:
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    clip, llama = directory / "clip", directory / "llama"
    vision = CLIPVisionModel(CLIPVisionConfig(**VISION))
    randomize_(vision, seed)
    vision.save_pretrained(clip)
    language = LlamaForCausalLM(LlamaConfig(**TEXT))
    randomize_(language, seed + 1)
    language.save_pretrained(llama)
    for path in TOKENIZER.iterdir():
        shutil.copy(path, llama / path.name)
    return clip, llama


@pytest.fixture(scope="session")
def hf_llava(tmp_path_factory) -> Path:
    return write_llava(tmp_path_factory.mktemp("hf_llava"))


@pytest.fixture(scope="session")
def ours_tp1(hf_llava, tmp_path_factory) -> Path:
    from nemo_twvlm.conversion import import_hf

    dst = tmp_path_factory.mktemp("ours_tp1") / "ckpt"
    import_hf(hf_llava, dst)
    return dst


@pytest.fixture(scope="session")
def export_tp1(ours_tp1, tmp_path_factory) -> Path:
    from nemo_twvlm.conversion import export_hf

    return export_hf(ours_tp1, tmp_path_factory.mktemp("export_tp1") / "hf")


@pytest.fixture(scope="session")
def hf_pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("hf_pair"))


@pytest.fixture(scope="session")
def ours_pair(hf_pair, tmp_path_factory) -> Path:
    from nemo_twvlm.conversion import import_hf

    dst = tmp_path_factory.mktemp("ours_pair") / "ckpt"
    import_hf(hf_pair, dst)
    return dst


def canonical_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF directory under its canonical name (whatever naming the files use)."""
    from safetensors import safe_open

    from nemo_twvlm.conversion.sources import llava_canonical_name

    out = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({llava_canonical_name(name): f.get_tensor(name) for name in f.keys()})
    return out


def load_ours(directory: Path, image_token_index: int = IMAGE_ID):
    """Our model (TP=1, fp32, local specs, eval) with the checkpoint's weights, and its preset."""
    from nemo_twvlm.conversion import megatron_io
    from nemo_twvlm.rundir import checkpoint_preset
    from nemo_twvlm.inference.loading import load_model_weights

    megatron_io.init_single()
    preset = checkpoint_preset(directory)
    model = megatron_io.build_model(preset, dtype=torch.float32, image_token_index=image_token_index)
    load_model_weights(model, str(directory))
    return model.eval(), preset


@pytest.fixture(scope="session")
def debug_megatron():
    """The debug-preset model as conversion builds it (local specs, parameters allocated, not initialised)."""
    from nemo_twvlm.conversion import megatron_io
    from nemo_twvlm.presets import PRESETS

    megatron_io.init_single()
    return megatron_io.build_model(PRESETS["debug"], dtype=torch.float32, image_token_index=IMAGE_ID)


class Tiny:
    """The helpers above, for tests (conftest modules are not importable by name)."""

    image_id = IMAGE_ID
    tokenizer_dir = TOKENIZER
    VISION, TEXT = VISION, TEXT
    randomize_ = staticmethod(randomize_)
    llava_config = staticmethod(llava_config)
    write_llava = staticmethod(write_llava)
    write_pair = staticmethod(write_pair)
    load_ours = staticmethod(load_ours)
    canonical_tensors = staticmethod(canonical_tensors)


@pytest.fixture(scope="session")
def tiny() -> type[Tiny]:
    return Tiny
