"""Run a PretrainConfig through megatron.training.pretrain (Megatron-LM's loop) on CPU or GPU.

`run_pretrain(cfg)` is what recipes and the CLI call. One process trains in-process; more processes
(data/tensor/pipeline parallel) are launched with torchrun, each running this module's `main`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from nemo_twvlm.compat.distributed import free_port
from nemo_twvlm.training.config import PretrainConfig, config_from_json, config_to_json
from nemo_twvlm.training.in_training_eval import InTrainingEval, RetentionGateStop, Scorer

ScorerFactory = Callable[[PretrainConfig], Scorer]

# Set it to 1 on a machine whose cores other jobs share: a second OpenMP thread then spin-waits for a
# core and every step stalls (BENCHMARKS.md, "Threads": 5-10x slower).
TORCH_THREADS_ENV = "NEMO_TWVLM_TORCH_THREADS"


def torch_threads() -> int:
    """Intra-op threads per rank: $NEMO_TWVLM_TORCH_THREADS, else the cores divided among the ranks."""
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get(TORCH_THREADS_ENV, 0)) or max(1, (os.cpu_count() or 1) // ranks)


def run_pretrain(cfg: PretrainConfig, *, nproc: int = 1, scorer_factory: ScorerFactory | None = None,
                 entry: str = "nemo_twvlm.training.pretrain") -> None:
    """Train `cfg`. With nproc > 1 (or under an existing torchrun/srun) every rank runs `entry`'s `main`.

    The checkpoint the run starts from gives it its tokenizer and vocabulary first (training.lineage).
    `scorer_factory(cfg)` builds what in-training evaluation scores (data.retention_path, data.probe_path);
    it comes from above (nemo_twvlm.launch.train), whose module is then the `entry` every rank runs."""
    from nemo_twvlm.training.lineage import check_run

    if (cfg.data.retention_path or cfg.data.probe_path) and scorer_factory is None:
        raise SystemExit("data.retention_path / data.probe_path are scored by the evaluation layer: train with "
                         "`nemo twvlm pretrain` or `python -m nemo_twvlm.launch.train CONFIG.json`")

    cfg = check_run(cfg, world_size=int(os.environ.get("WORLD_SIZE", nproc)))
    if nproc > 1 and "RANK" not in os.environ:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(config_to_json(cfg))
        torchrun = Path(sys.executable).with_name("torchrun")
        subprocess.run([str(torchrun), f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
                        "-m", entry, f.name], check=True)
        return
    _train(cfg, scorer_factory)


def _train(cfg: PretrainConfig, scorer_factory: ScorerFactory | None = None) -> None:
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
    evaluation = None
    if cfg.data.retention_path or cfg.data.probe_path:
        # Built before megatron starts, so a bad retention or probe set fails in seconds.
        evaluation = InTrainingEval(cfg, scorer_factory(cfg), on_time_spent=provider.exclude_from_step_time)
    provider.set_evaluation(evaluation)
    if cfg.checkpoint.save and int(os.environ.get("RANK", "0")) == 0:
        set_aside_incomplete(cfg)
        save_run_files(cfg, cfg.checkpoint.save)
    # megatron parses sys.argv; swap ours in only for the parse so the caller's command line survives.
    caller_argv, sys.argv = sys.argv, [sys.argv[0], *megatron_args(cfg)]
    try:
        args = parse_and_validate_args(extra_args_provider=add_twvlm_arguments)
    finally:
        sys.argv = caller_argv
    try:
        pretrain(pretrain_cfg_container_from_args(args), provider.datasets_provider, ModelType.encoder_or_decoder,
                 provider.forward_step, model_provider=provider.model_provider, non_loss_data_func=evaluation)
    except SystemExit:  # megatron's loop exits the process after an exit condition, the gate's included
        if evaluation is None or not evaluation.tripped:
            raise
    finally:
        provider.flush_telemetry()
    if evaluation is not None and evaluation.tripped:
        raise RetentionGateStop(evaluation.tripped)


def main(argv: list[str] | None = None, *, scorer_factory: ScorerFactory | None = None,
         entry: str = "nemo_twvlm.training.pretrain") -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(f"usage: python -m {entry} CONFIG.json")
    run_pretrain(config_from_json(Path(argv[0]).read_text(encoding="utf-8")), scorer_factory=scorer_factory,
                 entry=entry)


if __name__ == "__main__":
    main()
