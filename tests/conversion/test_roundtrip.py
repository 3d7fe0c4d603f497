"""HF -> ours -> HF gives the HF checkpoint back bit for bit, from a TP=1 and a TP=2 import alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({name: f.get_tensor(name) for name in f.keys()})
    return out


def _assert_identical(expected: dict, actual: dict) -> None:
    assert set(actual) == set(expected), (sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected)))
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype and torch.equal(actual[name], tensor), name


def test_llava_round_trip_is_bitwise(hf_llava, export_tp1):
    _assert_identical(_tensors(hf_llava), _tensors(export_tp1))


def test_config_round_trips(hf_llava, export_tp1):
    original = json.loads((hf_llava / "config.json").read_text())
    exported = json.loads((export_tp1 / "config.json").read_text())
    assert exported == original


def test_checkpoint_records_the_preset_and_carries_unused_tensors(ours_tp1):
    from nemo_twvlm.presets import get_preset, load_preset
    from nemo_twvlm.training.checkpoint import load_run_config

    preset = load_preset(ours_tp1)
    assert preset.vision.num_layers == 3 and preset.vision.num_built_layers == 2
    assert preset.name == "imported"
    # An unregistered size is recorded by its preset file, which training resolves like a preset name.
    recorded = load_run_config(str(ours_tp1)).model.preset
    assert recorded == str((ours_tp1 / "twvlm_preset.json").resolve())
    assert get_preset(recorded) == preset
    with safe_open(str(ours_tp1 / "hf_source" / "sidecar.safetensors"), framework="pt") as f:
        sidecar = set(f.keys())
    # The layer after the feature layer and the post-layernorm never reach the language model.
    assert "vision_tower.post_layernorm.weight" in sidecar
    assert "vision_tower.encoder.layers.2.mlp.fc1.weight" in sidecar
    assert not any(".layers.1." in name or ".layers.0." in name for name in sidecar)


@pytest.fixture(scope="module")
def export_tp2(hf_llava, tmp_path_factory) -> Path:
    """Import at TP=2 (two gloo processes), then export from the sharded checkpoint."""
    from nemo_twvlm.conversion import export_hf, import_hf

    ours = tmp_path_factory.mktemp("ours_tp2") / "ckpt"
    import_hf(hf_llava, ours, tp=2)
    assert json.loads((ours / "twvlm_config.json").read_text())["parallel"]["tensor_parallel"] == 2
    return export_hf(ours, tmp_path_factory.mktemp("export_tp2") / "hf")


def test_tp2_import_exports_the_same_tensors_as_tp1(export_tp1, export_tp2, hf_llava):
    _assert_identical(_tensors(export_tp1), _tensors(export_tp2))
    _assert_identical(_tensors(hf_llava), _tensors(export_tp2))


def test_pair_export_loads_as_llava_with_the_source_parts(hf_pair, ours_pair, tmp_path):
    """A CLIP + Llama import exports one llava-hf directory holding both sources' tensors unchanged."""
    from transformers import LlavaForConditionalGeneration

    from nemo_twvlm.conversion import export_hf

    out = export_hf(ours_pair, tmp_path / "hf")
    model, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    clip, llama = (_tensors(d) for d in hf_pair)
    exported = _tensors(out)
    for name, tensor in clip.items():
        assert torch.equal(exported[f"vision_tower.vision_model.{name}"], tensor), name
    for name, tensor in llama.items():
        key = "language_model.lm_head.weight" if name == "lm_head.weight" else f"language_model.{name}"
        assert torch.equal(exported[key], tensor), name
    assert model.config.vision_feature_layer == -2 and model.config.text_config.vocab_size == 1030


def test_export_without_sidecar_uses_the_built_layers_only(ours_tp1, tmp_path, hf_llava):
    """A checkpoint that never came from HF (here: the sidecar removed) exports a tower of
    num_built_layers layers read at vision_feature_layer=-1, which computes the same features."""
    import shutil

    from transformers import LlavaForConditionalGeneration

    from nemo_twvlm.conversion import export_hf

    ckpt = tmp_path / "ckpt"
    shutil.copytree(ours_tp1, ckpt)
    shutil.rmtree(ckpt / "hf_source")
    out = export_hf(ckpt, tmp_path / "hf")
    short, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert short.config.vision_feature_layer == -1 and short.config.vision_config.num_hidden_layers == 2
    full = LlavaForConditionalGeneration.from_pretrained(hf_llava)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = short.model.get_image_features(pixel_values=pixels)
        b = full.model.get_image_features(pixel_values=pixels)
    a = a.pooler_output if hasattr(a, "pooler_output") else a
    b = b.pooler_output if hasattr(b, "pooler_output") else b
    a, b = (torch.stack(list(x)) if isinstance(x, (list, tuple)) else x for x in (a, b))
    assert torch.equal(a, b)


def test_sharded_export_writes_an_index_that_transformers_loads(ours_tp1, hf_llava, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from nemo_twvlm.conversion import export_hf

    out = export_hf(ours_tp1, tmp_path / "hf", max_shard_size="200KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    _assert_identical(_tensors(hf_llava), _tensors(out))
    _, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.slow
def test_tp2_pp2_import_round_trips(hf_llava, tmp_path):
    """Four gloo ranks: the vision tower and projector live on the first pipeline stage only."""
    from nemo_twvlm.conversion import export_hf, import_hf

    import_hf(hf_llava, tmp_path / "ours", tp=2, pp=2)
    _assert_identical(_tensors(hf_llava), _tensors(export_hf(tmp_path / "ours", tmp_path / "hf")))


def test_bf16_checkpoint_with_tied_embeddings_round_trips(tiny, tmp_path):
    """Llama-3-70B is stored in bf16; a tied-embedding LM has no lm_head tensor and no output layer."""
    from safetensors import safe_open as open_st

    from nemo_twvlm.conversion import export_hf, import_hf

    src = tiny.write_llava(tmp_path / "hf", seed=5, text={"tie_word_embeddings": True}, tie_word_embeddings=True,
                           dtype=torch.bfloat16)
    with open_st(str(src / "model.safetensors"), framework="pt") as f:
        assert "language_model.lm_head.weight" not in f.keys()
        assert f.get_slice("language_model.model.embed_tokens.weight").get_dtype() == "BF16"
    preset = import_hf(src, tmp_path / "ours")
    assert not preset.language.untie_embeddings
    out = export_hf(tmp_path / "ours", tmp_path / "out")
    _assert_identical(_tensors(src), _tensors(out))
    assert json.loads((out / "config.json").read_text()) == json.loads((src / "config.json").read_text())


def test_a_full_clip_model_dir_gives_its_vision_tower_and_names_what_it_drops(hf_pair, tmp_path):
    """openai/clip-vit-large-patch14-336 is a whole CLIPModel: its text tower has no place in LLaVA."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionModel

    from nemo_twvlm.conversion import export_hf, import_hf

    clip_dir, llama_dir = hf_pair
    vision = CLIPVisionModel.from_pretrained(clip_dir)
    full = CLIPModel(CLIPConfig(vision_config=vision.config.to_dict(),
                                text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=4)))
    full.vision_model.load_state_dict(vision.state_dict())
    full.save_pretrained(tmp_path / "clip_full")
    with pytest.warns(UserWarning, match=r"CLIP text-tower tensors are not part of LLaVA"):
        import_hf((tmp_path / "clip_full", llama_dir), tmp_path / "ours")
    exported = _tensors(export_hf(tmp_path / "ours", tmp_path / "hf"))
    for name, tensor in _tensors(clip_dir).items():
        assert torch.equal(exported[f"vision_tower.vision_model.{name}"], tensor), name
