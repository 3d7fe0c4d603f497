"""Bad inputs fail before any model is built, with a message naming the tensor, field or file."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nemo_twvlm.conversion import ConversionError, import_hf

REPO = Path(__file__).resolve().parents[2]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_tensors(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def _edit_config(directory: Path, edit) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_missing_tensor_is_named_with_its_shape(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_tensors(src, lambda t: t.pop("language_model.model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(ConversionError, match=r"missing 1 tensor.*language_model\.layers\.1\.self_attn\.k_proj\.weight "
                                              r"\(expected shape \(32, 64\)\)"):
        import_hf(src, tmp_path / "out")


def test_extra_tensor_is_named(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_tensors(src, lambda t: t.update({"language_model.model.layers.0.self_attn.q_norm.weight": torch.ones(16)}))
    with pytest.raises(ConversionError, match=r"unexpected tensor 'language_model\.model\.layers\.0\.self_attn\.q_norm"
                                              r"\.weight' with shape \(16,\)"):
        import_hf(src, tmp_path / "out")


def test_tensor_outside_any_llava_part_is_named(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_tensors(src, lambda t: t.update({"value_head.weight": torch.ones(1, 64)}))
    with pytest.raises(ConversionError, match=r"unexpected tensor 'value_head\.weight' \(1, 64\)"):
        import_hf(src, tmp_path / "out")


def test_shape_mismatch_names_tensor_expected_and_actual(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_tensors(src, lambda t: t.update({"multi_modal_projector.linear_2.weight": torch.zeros(64, 32)}))
    with pytest.raises(ConversionError, match=r"'multi_modal_projector\.linear_2\.weight' has shape \(64, 32\); "
                                              r"the config expects \(64, 64\)"):
        import_hf(src, tmp_path / "out")


@pytest.mark.parametrize("model_type", ["qwen2", "mistral"])
def test_unknown_architecture_is_refused_by_name(tmp_path, model_type):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 64}))
    with pytest.raises(ConversionError, match=rf"model_type='{model_type}' is not supported"):
        import_hf(src, tmp_path / "out")


def test_llava_with_a_mistral_language_model_is_refused(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_config(src, lambda c: c["text_config"].update(model_type="mistral"))
    with pytest.raises(ConversionError, match=r"text_config: model_type='mistral' is not supported"):
        import_hf(src, tmp_path / "out")


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.update(vision_feature_select_strategy="full"), "vision_feature_select_strategy='full'"),
    (lambda c: c.update(vision_feature_layer=[-2, -1]), r"vision_feature_layer=\[-2, -1\]"),
    (lambda c: c["text_config"].update(attention_bias=True), "attention_bias=True"),
    (lambda c: c["text_config"].update(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
     "rope_parameters.rope_type='linear'"),
])
def test_unsupported_architecture_features_are_refused_by_field(hf_llava, tmp_path, edit, field):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_config(src, edit)
    with pytest.raises(ConversionError, match=field):
        import_hf(src, tmp_path / "out")


def test_named_preset_mismatch_lists_fields(hf_llava, tmp_path):
    with pytest.raises(ConversionError, match=r"does not match preset 'debug'.*language\.vocab_size: 1030 vs 1024"):
        import_hf(hf_llava, tmp_path / "out", preset="debug")


def test_tp_that_does_not_divide_the_model_is_refused(hf_llava, tmp_path):
    with pytest.raises(ConversionError, match=r"tp=3 does not divide language\.num_attention_heads=4"):
        import_hf(hf_llava, tmp_path / "out", tp=3)


def test_image_token_disagreeing_with_tokenizer_is_refused(hf_llava, tmp_path):
    src = _copy(hf_llava, tmp_path / "src")
    _edit_config(src, lambda c: c.update(image_token_index=7))
    with pytest.raises(ConversionError, match=r"image_token_index=7 but tokenizer .* has <image>=5"):
        import_hf(src, tmp_path / "out")


def test_destination_is_never_overwritten(hf_llava, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConversionError, match="exists and is not empty"):
        import_hf(hf_llava, tmp_path / "out")


def test_pickled_code_in_a_bin_checkpoint_is_not_executed(hf_llava, tmp_path):
    """.bin checkpoints are read with torch.load(weights_only=True): a pickled object is refused."""
    src = _copy(hf_llava, tmp_path / "src")
    tensors = load_file(src / "model.safetensors")
    (src / "model.safetensors").unlink()
    torch.save({**tensors, "evil": _Payload()}, src / "pytorch_model.bin")
    with pytest.raises(ConversionError, match=r"pytorch_model\.bin cannot be read with torch\.load\(weights_only=True\)"):
        import_hf(src, tmp_path / "out")


class _Payload:
    def __reduce__(self):
        return (print, ("payload executed",))


def test_export_trtllm_without_gpu_stops_with_a_clear_message(tmp_path):
    from nemo_twvlm.conversion import export_trtllm
    from nemo_twvlm.conversion.trtllm import TRTLLMUnavailable

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TRTLLMUnavailable, match="export_trtllm needs a CUDA GPU"):
        export_trtllm(tmp_path, tmp_path / "engines")


def test_cli_reports_conversion_errors_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run([sys.executable, "-m", "nemo_twvlm.conversion", "export_trtllm", f"hf_dir={tmp_path}",
                             f"engine_dir={tmp_path / 'engines'}"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: export_trtllm: export_trtllm needs a CUDA GPU")
