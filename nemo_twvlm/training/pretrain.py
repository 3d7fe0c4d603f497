"""Run a PretrainConfig through megatron.training.pretrain (Megatron-LM's loop) on CPU or GPU.

`run_pretrain(cfg)` is what recipes and the CLI call. One process trains in-process; more processes
(data/tensor/pipeline parallel) are launched with torchrun, each running this module's `main`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from nemo_twvlm.training.config import (
    CheckpointConfig, DataConfig, ModelConfig, ParallelConfig, PretrainConfig, TrainerConfig,
)


def config_to_json(cfg: PretrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)


def config_from_json(text: str) -> PretrainConfig:
    raw = json.loads(text)
    return PretrainConfig(
        name=raw["name"], model=ModelConfig(**raw["model"]), data=DataConfig(**raw["data"]),
        parallel=ParallelConfig(**raw["parallel"]), trainer=TrainerConfig(**raw["trainer"]),
        checkpoint=CheckpointConfig(**raw["checkpoint"]),
    )


# Set it to 1 on a machine whose cores other jobs share: a second OpenMP thread then spin-waits for a
# core and every step stalls (BENCHMARKS.md, "Threads": 5-10x slower).
TORCH_THREADS_ENV = "NEMO_TWVLM_TORCH_THREADS"


def torch_threads() -> int:
    """Intra-op threads per rank: $NEMO_TWVLM_TORCH_THREADS, else the cores divided among the ranks."""
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get(TORCH_THREADS_ENV, 0)) or max(1, (os.cpu_count() or 1) // ranks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pretrain(cfg: PretrainConfig, *, nproc: int = 1) -> None:
    """Train `cfg`. With nproc > 1 (or under an existing torchrun/srun) every rank runs `main`.

    The checkpoint the run starts from gives it its tokenizer and vocabulary first (training.lineage)."""
    from nemo_twvlm.training.lineage import resolve_start
    from nemo_twvlm.training.validate import validate

    world_size = int(os.environ.get("WORLD_SIZE", nproc))
    cfg = resolve_start(cfg)
    validate(cfg, world_size=world_size)
    if nproc > 1 and "RANK" not in os.environ:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(config_to_json(cfg))
        torchrun = Path(sys.executable).with_name("torchrun")
        subprocess.run([str(torchrun), f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
                        "-m", "nemo_twvlm.training.pretrain", f.name], check=True)
        return
    _train(cfg)


def _train(cfg: PretrainConfig) -> None:
    # Outside torchrun/srun this process is the whole world.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    # Megatron requires it with tensor/context parallelism (communication overlaps compute in order).
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")
    import torch
    from megatron.core.enums import ModelType
    from megatron.training import pretrain
    from megatron.training.argument_utils import pretrain_cfg_container_from_args
    from megatron.training.arguments import parse_and_validate_args

    from nemo_twvlm.compat import apply_cpu_workarounds, apply_megatron_fixes
    from nemo_twvlm.training import provider
    from nemo_twvlm.training.arguments import add_twvlm_arguments, megatron_args
    from nemo_twvlm.training.checkpoint import save_run_files
    from nemo_twvlm.training.lineage import set_aside_incomplete

    if not torch.cuda.is_available():
        # Gloo on a small box: one intra-op thread per rank keeps ranks from fighting over cores.
        torch.set_num_threads(torch_threads())
    apply_cpu_workarounds()
    apply_megatron_fixes()
    provider.set_run_config(cfg)
    if cfg.checkpoint.save and int(os.environ.get("RANK", "0")) == 0:
        set_aside_incomplete(cfg)
        save_run_files(cfg, cfg.checkpoint.save)
    # megatron parses sys.argv; swap ours in only for the parse so the caller's command line survives.
    caller_argv, sys.argv = sys.argv, [sys.argv[0], *megatron_args(cfg)]
    try:
        args = parse_and_validate_args(extra_args_provider=add_twvlm_arguments)
    finally:
        sys.argv = caller_argv
    pretrain(pretrain_cfg_container_from_args(args), provider.datasets_provider, ModelType.encoder_or_decoder,
             provider.forward_step, model_provider=provider.model_provider)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m nemo_twvlm.training.pretrain CONFIG.json")
    run_pretrain(config_from_json(Path(argv[0]).read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
