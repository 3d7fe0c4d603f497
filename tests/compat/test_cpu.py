"""The process-wide CPU workarounds, in a fresh process each (they last for the life of the process)."""
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU workarounds apply only without a GPU")

NO_COMPILE = """
import torch
from megatron.core.activations import quick_gelu
from nemo_twvlm.compat import apply_cpu_workarounds

compiled = []
def backend(graph, example_inputs):
    compiled.append(graph)
    return graph.forward

apply_cpu_workarounds()
double = torch.compile(lambda x: 2 * x, backend=backend)
x = torch.linspace(-3, 3, 7)
assert torch.equal(double(x), 2 * x)
assert torch.equal(quick_gelu(x), x * torch.sigmoid(1.702 * x))  # megatron's jit_fuser (torch.compile), eager
print(len(compiled))
"""


def test_torch_compile_runs_eager_once_the_workarounds_are_applied():
    """megatron's jit_fuser would otherwise build C++ kernels with inductor: a debug training process took
    2.0x as long with a cold cache (BENCHMARKS 3b)."""
    result = subprocess.run([sys.executable, "-c", NO_COMPILE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "0"  # the compile backend was never called
