"""One process as the whole torch.distributed world, for using a model outside megatron.training
(chat, evaluation, conversion, benchmarks, tests), and the free port every launcher rendezvous on."""
from __future__ import annotations

import socket

import torch

from nemo_twvlm.compat.cpu import apply_cpu_workarounds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_single_process(seed: int = 1234) -> None:
    """torch.distributed (one rank; gloo without a GPU) + megatron's model-parallel state at TP=PP=1,
    reusing a process group or model-parallel state that already exists."""
    from megatron.core import parallel_state, tensor_parallel

    apply_cpu_workarounds()
    if not torch.distributed.is_initialized():
        # A tcp:// address, not MASTER_ADDR/MASTER_PORT in the environment: child processes (torchrun,
        # megatron.training runs) would inherit the variables and collide on the port.
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                                             world_size=1)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
