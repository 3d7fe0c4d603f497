"""An exported HF LLaVA directory -> TensorRT-LLM engines, following TensorRT-LLM's LLaVA example:

    ENGINE_DIR/llm_checkpoint/   the language model as a TensorRT-LLM checkpoint (LLaMAForCausalLM.from_hugging_face)
    ENGINE_DIR/llm/              its engine (trtllm-build, with room for the image embeddings as prompt table)
    ENGINE_DIR/vision/           the CLIP tower + projector engine (tensorrt_llm.tools.multimodal_builder)

Needs a CUDA GPU and `tensorrt_llm` (an NGC TensorRT-LLM container, TensorRT-LLM 0.1x with the TensorRT
engine flow); without either it stops before doing anything. Provisional: written against TensorRT-LLM's
documented LLaVA flow and not yet run here (no GPU); `scripts/gpu_export_check.sh` is the check.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from nemo_twvlm.conversion.mapping import ConversionError


class TRTLLMUnavailable(ConversionError):
    """No GPU or no tensorrt_llm: the export cannot start."""


def check_trtllm() -> None:
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible)")
    if importlib.util.find_spec("tensorrt_llm") is None:
        missing.append("the tensorrt_llm package (use an NGC TensorRT-LLM container)")
    if missing:
        raise TRTLLMUnavailable(f"export_trtllm needs {' and '.join(missing)}")


def export_trtllm(hf_dir, engine_dir, *, dtype: str = "bfloat16", tp: int = 1, max_batch_size: int = 1,
                  max_input_len: int = 2048, max_seq_len: int | None = None) -> Path:
    """`hf_dir` is an `export_hf` output; returns `engine_dir` with `llm/` and `vision/` engines."""
    check_trtllm()
    hf_dir, engine_dir = Path(hf_dir), Path(engine_dir)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llava":
        raise ConversionError(f"{hf_dir}/config.json: model_type={config.get('model_type')!r}; expected 'llava' "
                              f"(an export_hf directory)")
    vision = config["vision_config"]
    image_tokens = (vision["image_size"] // vision["patch_size"]) ** 2
    max_seq_len = max_seq_len or max_input_len + 512
    engine_dir.mkdir(parents=True, exist_ok=True)

    from tensorrt_llm import Mapping
    from tensorrt_llm.models import LLaMAForCausalLM

    checkpoint = engine_dir / "llm_checkpoint"
    for rank in range(tp):
        model = LLaMAForCausalLM.from_hugging_face(str(hf_dir), dtype=dtype,
                                                   mapping=Mapping(world_size=tp, rank=rank, tp_size=tp))
        model.save_checkpoint(str(checkpoint), save_config=rank == 0)
        del model
    build = shutil.which("trtllm-build") or shutil.which("trtllm-build", path=str(Path(sys.executable).parent))
    if build is None:
        raise TRTLLMUnavailable("trtllm-build is not on PATH (it comes with tensorrt_llm)")
    subprocess.run([
        build, "--checkpoint_dir", str(checkpoint),
        "--output_dir", str(engine_dir / "llm"), "--gemm_plugin", "auto", "--max_batch_size", str(max_batch_size),
        "--max_input_len", str(max_input_len), "--max_seq_len", str(max_seq_len),
        # Image embeddings enter as a prompt table: one row per image token of every image in the batch.
        "--max_multimodal_len", str(max_batch_size * image_tokens),
    ], check=True)
    _build_vision_engine(hf_dir, engine_dir / "vision", max_batch_size)
    return engine_dir


def _build_vision_engine(hf_dir: Path, out: Path, max_batch_size: int) -> None:
    import argparse

    from tensorrt_llm.tools import multimodal_builder

    parser = multimodal_builder.add_multimodal_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--model_type", "llava", "--model_path", str(hf_dir), "--output_dir", str(out),
                              "--max_batch_size", str(max_batch_size)])
    builder = getattr(multimodal_builder, "MultimodalEngineBuilder", None) or multimodal_builder.VisionEngineBuilder
    builder(args).build()
