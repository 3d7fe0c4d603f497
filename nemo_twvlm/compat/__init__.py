"""Workarounds for megatron-core / megatron.training on machines without a GPU or Transformer Engine.

Everything that bends a library lives here, so the rest of the package reads as if it ran on a GPU cluster.
"""
from nemo_twvlm.compat.cpu import apply_cpu_workarounds, cuda_available, te_available

__all__ = ["apply_cpu_workarounds", "cuda_available", "te_available"]
