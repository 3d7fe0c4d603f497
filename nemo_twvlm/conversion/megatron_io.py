"""The megatron side of conversion: building the model a rank holds, naming its tensors globally,
and saving it the way megatron.training does.

Conversion builds with the local (pure torch) layer specs on CPU, whatever machine it runs on: a 70B
model is converted in host memory, never on one GPU. Both towers save their layer norms under Transformer
Engine's names (`sharded_state_dict_keys_map`: the language model's local spec has it, and `build_llava`
adds it to megatron-core 0.19.2's local ViT spec, which lacks it), so a converted checkpoint loads into a
TE run and back, as every CPU training run of this repository does.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import re
from pathlib import Path

import torch

from nemo_twvlm.conversion.mapping import ConversionError
from nemo_twvlm.presets import ModelPreset

_LAYER = re.compile(r"^(.*?decoder\.layers)\.(\d+)\.(.*)$")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What megatron.training writes into a checkpoint's common state; without checkpoint_version >= 2 its
# loader would re-order QKV as if the checkpoint came from a 2020 Megatron.
COMMON_STATE = {"checkpoint_version": 3.0, "iteration": 0}


def check_parallel(preset: ModelPreset, tp: int, pp: int) -> None:
    if not (isinstance(tp, int) and isinstance(pp, int) and tp >= 1 and pp >= 1):
        raise ConversionError(f"tp={tp!r}, pp={pp!r}: both must be positive integers")
    lm, vit = preset.language, preset.vision
    for field, value in (("language.num_attention_heads", lm.num_attention_heads),
                         ("language.num_query_groups", lm.num_query_groups),
                         ("language.ffn_hidden_size", lm.ffn_hidden_size),
                         ("language.vocab_size", lm.vocab_size),
                         ("language.hidden_size", lm.hidden_size),
                         ("vision.num_attention_heads", vit.num_attention_heads),
                         ("vision.ffn_hidden_size", vit.ffn_hidden_size)):
        if value % tp:
            raise ConversionError(f"tp={tp} does not divide {field}={value}; megatron shards it evenly")
    if lm.num_layers % pp:
        raise ConversionError(f"pp={pp} does not divide language.num_layers={lm.num_layers}")


def base_config(preset: ModelPreset, dtype: torch.dtype, tp: int = 1, pp: int = 1):
    from nemo_twvlm.model.llava import cpu_base_config

    lm = preset.language
    return dataclasses.replace(
        cpu_base_config("fp32"), params_dtype=dtype, pipeline_dtype=dtype,
        # build_llava replaces the architecture per tower; these only have to pass the TP/PP checks.
        num_layers=lm.num_layers, hidden_size=lm.hidden_size, num_attention_heads=lm.num_attention_heads,
        num_query_groups=lm.num_query_groups,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        # Every parameter is overwritten from the checkpoint: skip megatron's random init (minutes at 70B).
        perform_initialization=False,
    )


def build_model(preset: ModelPreset, *, dtype: torch.dtype, image_token_index: int, tp: int = 1, pp: int = 1):
    """This rank's part of the model (the model-parallel state must be initialised)."""
    from megatron.core import parallel_state

    from nemo_twvlm.model.llava import build_llava

    first = parallel_state.is_pipeline_first_stage()
    last = parallel_state.is_pipeline_last_stage()
    return build_llava(preset, base_config=base_config(preset, dtype, tp, pp), image_token_index=image_token_index,
                       use_te=False, pre_process=first, post_process=last, add_encoder=first)


def global_name(model, name: str) -> str:
    """`decoder.layers.{i}` with the global layer index (a pipeline stage numbers its layers from 0)."""
    found = _LAYER.match(name)
    if not found:
        return name
    layers = model.get_submodule(found.group(1))
    layer_number = layers[int(found.group(2))].layer_number  # 1-based, global
    return f"{found.group(1)}.{layer_number - 1}.{found.group(3)}"


def parameters(model):
    """(global name, tensor) for every tensor the checkpoint holds; TE's `_extra_state` carries no weights."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor is None or name.endswith("_extra_state"):
            continue
        yield global_name(model, name), tensor


def init_ranks(rank: int, world_size: int, port: int, tp: int, pp: int, seed: int) -> None:
    from megatron.core import parallel_state, tensor_parallel

    from nemo_twvlm.compat import apply_cpu_workarounds

    apply_cpu_workarounds()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    parallel_state.initialize_model_parallel(tp, pp)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def init_single() -> None:
    """One process that is the whole world (TP=PP=1), reusing an existing process group if there is one."""
    from megatron.core import parallel_state

    from nemo_twvlm.compat.distributed import init_single_process

    init_single_process()
    world = torch.distributed.get_world_size()
    sizes = (parallel_state.get_tensor_model_parallel_world_size(), parallel_state.get_pipeline_model_parallel_world_size())
    if world != 1 or sizes != (1, 1):
        raise ConversionError(f"this process already belongs to a world of {world} ranks with (TP, PP)={sizes}; "
                              f"conversion in-process needs a single rank")


def save_checkpoint(model, checkpoint_dir: Path) -> None:
    """`{"model": sharded_state_dict}` in megatron's torch_dist format, as megatron.training saves it.
    The model is consumed: see `_sharded_state_dict_without_views`."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    # A synchronous save writes in this process, so an in-process queue carries the write results;
    # megatron's default is a multiprocessing Manager queue, whose server process is spawned and
    # re-imports the caller's __main__ (seconds, and a crash for scripts without a __main__ guard).
    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    sharded = _sharded_state_dict_without_views(model)
    dist_checkpointing.save({"model": sharded, **COMMON_STATE}, str(checkpoint_dir))
    torch.distributed.barrier()


def _is_view(tensor: torch.Tensor) -> bool:
    return tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()


def _sharded_state_dict_without_views(model) -> dict:
    """The model's sharded state dict with its factories applied and every view replaced by a copy.

    dist_checkpointing copies each tensor that is a view before writing (else the file would hold the
    whole storage), and holds the copies until the write ends; a gated fc1 is saved as two views
    ([gate; up]), so that alone would be half a Llama model again. Here the views of one parameter are
    copied and the parameter released right away: memory trades the model for the checkpoint's tensors
    one parameter at a time. The model is empty afterwards.
    """
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, apply_factories

    sharded = model.sharded_state_dict()
    apply_factories(sharded)
    params = {p.untyped_storage().data_ptr(): p for p in model.parameters()}
    by_storage: dict[int, list] = {}
    for item in nested_values(sharded):
        if isinstance(item, ShardedTensor) and item.data is not None:
            by_storage.setdefault(item.data.untyped_storage().data_ptr(), []).append(item)
    for pointer, items in by_storage.items():
        if any(_is_view(item.data) for item in items):
            for item in items:
                item.data = item.data.clone()
            if pointer in params:
                params[pointer].data = torch.empty(0, dtype=params[pointer].dtype)
    return sharded


def stream_checkpoint(model, checkpoint_dir: Path):
    """(global name, tensor) for every tensor of `model`, read from a torch_dist checkpoint a layer at a time.

    Whatever TP/PP split the checkpoint was saved with, each of `model`'s tensors is a region of a global
    checkpoint tensor (its ShardedTensor says which); torch.distributed.checkpoint's resharding reads just
    the saved chunks that overlap it, with torch.load(weights_only=True), straight into the parameter.
    (megatron's own `load` cannot ask for one layer of a layer-stacked tensor in a one-rank world.) Built
    with `perform_initialization=False`, the parameters are allocated but untouched until read, so memory
    holds the layer in hand; its tensors are released when the caller moves on.
    """
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, apply_factories

    from nemo_twvlm.conversion.dcp_regions import MetadataOnceReader, read_regions

    reader = MetadataOnceReader(str(checkpoint_dir))
    sharded = model.sharded_state_dict()
    apply_factories(sharded)
    regions: dict[int, list] = {}  # parameter storage -> the ShardedTensors (views) that cover it
    for item in nested_values(sharded):
        if isinstance(item, ShardedTensor) and item.data is not None:
            regions.setdefault(item.data.untyped_storage().data_ptr(), []).append(item)
    groups: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor is None or name.endswith("_extra_state"):
            continue
        found = _LAYER.match(name)
        groups.setdefault(f"{found.group(1)}.{found.group(2)}" if found else name, []).append((name, tensor))
    for members in groups.values():
        items = [item for _, t in members for item in regions.pop(t.untyped_storage().data_ptr())]
        read_regions(reader, items)
        for name, tensor in members:
            yield global_name(model, name), tensor.detach()
        for item in items:
            item.data = None  # the ShardedTensors' views would keep the parameters' memory alive
        for _, tensor in members:
            tensor.data = torch.empty(0, dtype=tensor.dtype)


def spawn(fn, world_size: int, *args) -> None:
    """Run `fn(rank, world_size, *args)` in `world_size` fresh processes; a rank's error is re-raised here
    as a ConversionError with that rank's message (the full traceback stays in the rank's stderr)."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(fn, args=(world_size, *args), nprocs=world_size, join=True, start_method="spawn")
    except mp.ProcessRaisedException as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        message = lines[-1] if lines else str(error)
        raise ConversionError(f"conversion rank failed: {message.split(': ', 1)[-1]}") from None
    except mp.ProcessExitedException as error:
        raise ConversionError(f"conversion rank exited abnormally: {error}") from None
