"""Reading megatron.training checkpoints outside the training loop (evaluation, chat, conversion)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nemo_twvlm.training.config import PretrainConfig

RUN_CONFIG_FILE = "twvlm_config.json"


def save_run_config(cfg: PretrainConfig, save_dir: str) -> None:
    from nemo_twvlm.training.pretrain import config_to_json

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    Path(save_dir, RUN_CONFIG_FILE).write_text(config_to_json(cfg), encoding="utf-8")


def load_run_config(save_dir: str) -> PretrainConfig:
    from nemo_twvlm.training.pretrain import config_from_json

    path = Path(save_dir, RUN_CONFIG_FILE)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {save_dir} is not a nemo_twvlm checkpoint directory")
    return config_from_json(path.read_text(encoding="utf-8"))


def latest_iteration(save_dir: str) -> int:
    tracker = Path(save_dir, "latest_checkpointed_iteration.txt")
    if not tracker.exists():
        raise FileNotFoundError(f"{tracker} not found: no checkpoint was saved in {save_dir}")
    return int(tracker.read_text().strip())


def iteration_dir(save_dir: str, iteration: int | None = None) -> str:
    iteration = latest_iteration(save_dir) if iteration is None else iteration
    return os.path.join(save_dir, f"iter_{iteration:07d}")


def init_single_process(seed: int = 1234) -> None:
    """torch.distributed (gloo, one rank) + megatron's model-parallel state, for using a model directly."""
    from megatron.core import parallel_state, tensor_parallel

    from nemo_twvlm.compat import apply_cpu_workarounds

    apply_cpu_workarounds()
    if not torch.distributed.is_initialized():
        from nemo_twvlm.training.pretrain import free_port

        # A tcp:// address, not MASTER_PORT in the environment: child processes (megatron.training runs)
        # would inherit the variable and collide on the port.
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                                             world_size=1)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def load_model_weights(model, save_dir: str, iteration: int | None = None) -> int:
    """Load the model weights of a torch_dist checkpoint into `model` (any TP/PP split it was saved with
    is resharded by dist_checkpointing). Returns the iteration loaded."""
    from megatron.core import dist_checkpointing

    iteration = latest_iteration(save_dir) if iteration is None else iteration
    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, iteration_dir(save_dir, iteration))
    result = model.load_state_dict(loaded["model"], strict=False)
    # TE layers carry `_extra_state` (FP8 metadata) that a checkpoint may legitimately lack.
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {save_dir} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return iteration


def _resolve_tokenizer(path: str) -> str:
    """Recipes name the debug tokenizer relative to the repository; accept that from any directory."""
    if Path(path).exists():
        return path
    in_repo = Path(__file__).resolve().parents[2] / path
    return str(in_repo) if in_repo.exists() else path  # else a hub id, or a clear error from the loader


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    preset: object
    image_token_index: int
    config: PretrainConfig


def load_for_inference(save_dir: str, iteration: int | None = None) -> LoadedModel:
    """The model of a training checkpoint with its tokenizer and preset, ready for generation/scoring."""
    from nemo_twvlm.data.tokenizer import load_tokenizer
    from nemo_twvlm.model import build_llava, image_token_id
    from nemo_twvlm.presets import get_preset

    cfg = load_run_config(save_dir)
    init_single_process(cfg.trainer.seed)
    tokenizer = load_tokenizer(_resolve_tokenizer(cfg.data.tokenizer))
    preset = get_preset(cfg.model.preset)
    image_id = image_token_id(tokenizer)
    model = build_llava(preset, image_token_index=image_id)
    load_model_weights(model, save_dir, iteration)
    model.eval()
    return LoadedModel(model, tokenizer, preset, image_id, cfg)
