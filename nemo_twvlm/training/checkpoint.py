"""Reading megatron.training checkpoints outside the training loop (evaluation, chat, conversion)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nemo_twvlm import rundir
from nemo_twvlm.rundir import RUN_CONFIG_FILE
from nemo_twvlm.training.config import PretrainConfig


def save_run_config(cfg: PretrainConfig, save_dir: str) -> None:
    from nemo_twvlm.training.pretrain import config_to_json

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    Path(save_dir, RUN_CONFIG_FILE).write_text(config_to_json(cfg), encoding="utf-8")


def save_run_files(cfg: PretrainConfig, save_dir: str) -> None:
    """The run record, the model preset and the tokenizer beside the checkpoints (nemo_twvlm.rundir), so
    that the next stage, chat and export need nothing but this directory."""
    from nemo_twvlm.data.tokenizer import copy_tokenizer, load_tokenizer
    from nemo_twvlm.presets import get_preset, save_preset

    save_run_config(cfg, save_dir)
    save_preset(get_preset(cfg.model.preset), save_dir)
    source, target = rundir.resolve_local(cfg.data.tokenizer), Path(save_dir, rundir.TOKENIZER_DIR)
    if Path(source).resolve() == target.resolve():
        return  # a resumed run: the tokenizer is already here
    if Path(source).is_dir():
        copy_tokenizer(source, target)
    else:  # a hub id
        load_tokenizer(source).save_pretrained(str(target))


def load_run_config(save_dir: str) -> PretrainConfig:
    from nemo_twvlm.training.pretrain import config_from_json

    path = Path(save_dir, RUN_CONFIG_FILE)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {save_dir} is not a nemo_twvlm checkpoint directory")
    return config_from_json(path.read_text(encoding="utf-8"))


def latest_iteration(save_dir: str) -> int:
    return rundir.latest_iteration(save_dir)


def iteration_dir(save_dir: str, iteration: int | None = None) -> str:
    return str(rundir.iteration_dir(save_dir, latest_iteration(save_dir) if iteration is None else iteration))


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


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    preset: object
    image_token_index: int
    config: PretrainConfig


def load_for_inference(save_dir: str, iteration: int | None = None) -> LoadedModel:
    """The model of a training checkpoint with its tokenizer and preset, ready for generation/scoring."""
    from nemo_twvlm.data.tokenizer import image_token_id, load_tokenizer
    from nemo_twvlm.model import build_llava

    cfg = load_run_config(save_dir)
    init_single_process(cfg.trainer.seed)
    tokenizer = load_tokenizer(rundir.checkpoint_tokenizer(save_dir))
    preset = rundir.checkpoint_preset(save_dir)
    image_id = image_token_id(tokenizer)
    model = build_llava(preset, image_token_index=image_id)
    load_model_weights(model, save_dir, iteration)
    model.eval()
    return LoadedModel(model, tokenizer, preset, image_id, cfg)
