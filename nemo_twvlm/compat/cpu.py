"""CPU workarounds for megatron-core 0.19 and megatron.training, applied only when no GPU is present.

Each patch names the megatron assumption it replaces (measured in ../shared/probes and FIELD_NOTES).
None of them edits megatron files. `apply_cpu_workarounds` is process-wide and idempotent, and only entry
points call it; `construction_workarounds` is what a model builder needs, undone when the build ends.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import time

import torch

_applied: list[str] = []


def cuda_available() -> bool:
    return torch.cuda.is_available()


@functools.cache
def te_available() -> bool:
    """Transformer Engine importable (it is only in GPU containers; a broken install counts as absent)."""
    if importlib.util.find_spec("transformer_engine") is None:
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:
        return False
    return True


def _is_cuda(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return isinstance(device, str) and device.startswith("cuda")


class _CudaToCpu(torch.overrides.TorchFunctionMode):
    """Maps device='cuda' to CPU and makes Tensor.cuda()/pin_memory() no-ops.

    megatron.training and megatron-core allocate dozens of tensors with device='cuda' (loss reductions,
    flags, checkpoint metadata, the default causal mask, CLIP's position ids); redirecting them at the
    torch-function level covers all of them without touching megatron code.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs = {**kwargs, "device": torch.device("cpu")}
        name = getattr(func, "__name__", "")
        if name in ("cuda", "pin_memory"):
            return args[0]
        if name == "to" and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], torch.device("cpu"), *args[2:])
        return func(*args, **kwargs)


class _Stream:
    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def wait_event(self, *args, **kwargs):
        pass

    def query(self):
        return True

    def record_event(self, *args, **kwargs):
        event = _Event()
        event.record()
        return event


class _Event:
    def __init__(self, *args, **kwargs):
        self._t = 0.0

    def record(self, *args, **kwargs):
        self._t = time.perf_counter()

    def synchronize(self):
        pass

    def wait(self, *args, **kwargs):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return (other._t - self._t) * 1000.0


class _DeviceProperties:
    name = "cpu"
    total_memory = 0
    major = 0
    minor = 0
    multi_processor_count = 1


def _stub_cuda_runtime() -> None:
    # The CUDA build of torch raises 'Found no NVIDIA driver' for these; megatron.training calls them for
    # device selection, timers, memory reports and streams. device_count=1 matters: with 0 the
    # model-parallel initialisation is skipped.
    stubs = dict(
        current_device=lambda: "cpu",  # used as a device by RoPE and memory buffers
        device_count=lambda: 1,
        set_device=lambda *a, **k: None,
        synchronize=lambda *a, **k: None,
        empty_cache=lambda *a, **k: None,
        memory_allocated=lambda *a, **k: 0,
        max_memory_allocated=lambda *a, **k: 0,
        memory_reserved=lambda *a, **k: 0,
        max_memory_reserved=lambda *a, **k: 0,
        reset_peak_memory_stats=lambda *a, **k: None,
        memory_stats=lambda *a, **k: {},
        mem_get_info=lambda *a, **k: (0, 0),
        Stream=_Stream,
        Event=_Event,
        current_stream=lambda *a, **k: _Stream(),
        default_stream=lambda *a, **k: _Stream(),
        stream=lambda *a, **k: contextlib.nullcontext(),
        get_device_properties=lambda *a, **k: _DeviceProperties(),
        get_device_capability=lambda *a, **k: (0, 0),
        get_device_name=lambda *a, **k: "cpu",
        # The tensor-parallel RNG tracker forks the CUDA generator; back it with the CPU generator.
        get_rng_state=lambda *a, **k: torch.get_rng_state(),
        set_rng_state=lambda state, *a, **k: torch.set_rng_state(state),
        manual_seed=lambda seed: torch.default_generator.manual_seed(int(seed)),
        manual_seed_all=lambda seed: torch.default_generator.manual_seed(int(seed)),
    )
    for name, value in stubs.items():
        setattr(torch.cuda, name, value)
    torch.cuda.random.get_rng_state = torch.cuda.get_rng_state
    torch.cuda.random.set_rng_state = torch.cuda.set_rng_state

    import megatron.core.tensor_parallel.random as tp_random

    tp_random._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    tp_random._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)


def _clip_grad_by_total_norm_fp32(parameters, max_norm, total_norm, use_decoupled_grad=False):
    # megatron's version asserts `grad.type() == 'torch.cuda.FloatTensor'`; the math is unchanged.
    from megatron.core.utils import to_local_if_dtensor

    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = []
    for param in parameters:
        grad = getattr(param, "decoupled_grad", None) if use_decoupled_grad else param.grad
        if grad is not None:
            grads.append(to_local_if_dtensor(grad).detach())
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if isinstance(clip_coeff, torch.Tensor):
        torch._foreach_mul_(grads, clip_coeff.clamp_max(1.0))
    elif clip_coeff < 1.0:
        torch._foreach_mul_(grads, clip_coeff)


def _patch_megatron_training() -> None:
    import megatron.core.datasets.utils as datasets_utils
    import megatron.core.optimizer.clip_grads as clip_grads
    import megatron.core.optimizer.optimizer as optimizer
    import megatron.training.training as training

    # initialize_megatron asserts torch.cuda.is_available() unless told otherwise.
    if not isinstance(training.initialize_megatron, functools.partial):
        training.initialize_megatron = functools.partial(training.initialize_megatron, allow_no_cuda=True)
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    # The wheel ships the prebuilt helpers_cpp extension but no Makefile; `make` would sys.exit(1).
    datasets_utils.compile_helpers = lambda: None


@contextlib.contextmanager
def _clip_with_torch_norm():
    """Without Transformer Engine, CLIPViTModel's default ln_pre is torch.nn.LayerNorm, which
    build_module(config=...) cannot construct; megatron's WrappedTorchNorm takes the same arguments."""
    import megatron.core.models.multimodal.llava_model as llava_model
    from megatron.core.models.vision.clip_vit_model import CLIPViTModel
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    class CLIPViTModelTorchNorm(CLIPViTModel):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("ln_pre_impl", WrappedTorchNorm)
            kwargs.setdefault("ln_post_impl", WrappedTorchNorm)
            super().__init__(*args, **kwargs)

    original, llava_model.CLIPViTModel = llava_model.CLIPViTModel, CLIPViTModelTorchNorm
    try:
        yield
    finally:
        llava_model.CLIPViTModel = original


@contextlib.contextmanager
def construction_workarounds():
    """What building a model needs on this machine, for the length of the build only: CLIP's layer norms
    without Transformer Engine, and (without a GPU) CLIP's unconditional `.cuda()` on its position ids.
    Scoped, so a model builder leaves the process as it found it; running the model on CPU needs
    `apply_cpu_workarounds()`, which entry points call."""
    with contextlib.ExitStack() as stack:
        if not te_available():
            stack.enter_context(_clip_with_torch_norm())
        if not cuda_available():
            stack.enter_context(_CudaToCpu())
        yield


def apply_cpu_workarounds() -> list[str]:
    """Apply every process-wide workaround this machine needs; returns the names applied (empty on a GPU
    machine). For entry points only (training main, single-process init for inference and tests,
    conversion ranks): it switches on a TorchFunctionMode for the rest of the process."""
    if cuda_available() or "cpu" in _applied:
        return list(_applied)
    mode = _CudaToCpu()
    mode.__enter__()  # process-wide: stays active for the life of the process
    _stub_cuda_runtime()
    # megatron's jit_fuser is torch.compile, and without a GPU inductor builds C++ kernels on first call,
    # most of them in megatron.training's warm-up of fusions these runs switch off: a debug training process
    # took 2.0x as long with inductor's cache cold, 1.17x warm (BENCHMARKS 3b). Eager runs the same math.
    import torch._dynamo  # a second of import, so only here

    torch._dynamo.config.disable = True
    _patch_megatron_training()
    _applied.append("cpu")
    return list(_applied)
