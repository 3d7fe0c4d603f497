"""Workarounds for megatron-core / megatron.training: on machines without a GPU or Transformer Engine
(`cpu`), and for megatron.training paths this project uses that it does not handle (`megatron`).

Everything that bends a library lives here, so the rest of the package reads as if it ran on a GPU cluster.
Entry points switch the process-wide ones on (`apply_cpu_workarounds`); importing or building a model does not.
"""
from nemo_twvlm.compat.cpu import apply_cpu_workarounds, construction_workarounds, cuda_available, te_available
from nemo_twvlm.compat.megatron import apply_megatron_fixes

__all__ = [
    "apply_cpu_workarounds", "apply_megatron_fixes", "construction_workarounds", "cuda_available", "te_available",
]
