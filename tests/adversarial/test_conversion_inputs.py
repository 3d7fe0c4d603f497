"""Conversion inputs that are cut short, of a dtype no weight has, or not finite, and an export run from
outside the repository: each is named (file, tensor, field), never a raw error or a hub lookup."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nemo_twvlm.conversion import ConversionError, export_hf, import_hf
from tests.conversion.conftest import write_llava

@pytest.fixture(scope="module")
def hf_source(tmp_path_factory) -> Path:
    return write_llava(tmp_path_factory.mktemp("adversarial_hf") / "llava")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tensor_name(directory: Path, suffix: str) -> str:
    (name,) = [n for n in load_file(directory / "model.safetensors") if n.endswith(suffix) and "language_model" in n]
    return name


def test_a_truncated_safetensors_file_is_named(hf_source, tmp_path):
    src = _copy(hf_source, tmp_path / "src")
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ConversionError, match=rf"{weights} is not a readable safetensors file .*truncated"):
        import_hf(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unsupported_dtype_names_the_file_and_the_tensor(hf_source, tmp_path):
    src = _copy(hf_source, tmp_path / "src")
    weights = src / "model.safetensors"
    tensors = load_file(weights)
    name = _tensor_name(src, "layers.0.self_attn.q_proj.weight")
    tensors[name] = tensors[name].to(torch.int32).to(torch.uint16)
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=rf"{weights}: tensor '{name}' has dtype U16"):
        import_hf(src, tmp_path / "out")


@pytest.fixture(scope="module")
def nan_import(hf_source, tmp_path_factory):
    """hf_source with three non-finite values in one tensor, imported: (checkpoint, warnings, tensor, size)."""
    src = _copy(hf_source, tmp_path_factory.mktemp("nan") / "src")
    weights = src / "model.safetensors"
    tensors = load_file(weights)
    name = _tensor_name(src, "layers.1.mlp.down_proj.weight")
    tensors[name].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    save_file(tensors, weights, metadata={"format": "pt"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import_hf(src, src.parent / "ckpt")
    return src.parent / "ckpt", [str(w.message) for w in caught], name, tensors[name].numel()


def test_nan_and_inf_weights_import_with_a_warning_naming_them(nan_import):
    ckpt, caught, name, size = nan_import
    messages = [m for m in caught if "NaN or Inf" in m]
    assert len(messages) == 1, caught
    assert messages[0].startswith("1 tensors hold NaN or Inf, imported as they are: ")
    assert f"({3} of {size} values)" in messages[0] and "layers.1.mlp.down_proj.weight" in messages[0]
    assert (ckpt / "latest_checkpointed_iteration.txt").is_file()  # imported as it is


def test_export_outside_the_repo_refuses_a_relative_tokenizer_it_cannot_find(nan_import, tmp_path, monkeypatch):
    ckpt = _copy(nan_import[0], tmp_path / "ckpt")
    tokenizer = ckpt / "tokenizer"
    # A checkpoint that names its tokenizer only in the run record, relative to where training ran (and
    # shaped like an org/name hub id).
    tokenizer.rename(tmp_path / "saved_tokenizer")
    record = json.loads((ckpt / "twvlm_config.json").read_text())
    record["data"]["tokenizer"] = "runs/tokenizer"
    (ckpt / "twvlm_config.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked for the tokenizer")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    with pytest.raises(ConversionError, match=r"names data.tokenizer='runs/tokenizer', which is not here"):
        export_hf(ckpt, tmp_path / "hf")
    (ckpt / "runs").mkdir()
    (tmp_path / "saved_tokenizer").rename(ckpt / "runs" / "tokenizer")
    assert (export_hf(ckpt, tmp_path / "hf2") / "config.json").is_file()  # found beside the checkpoint
