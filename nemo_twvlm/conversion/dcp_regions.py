"""Reading regions of global tensors from a torch_dist checkpoint, in place, with DCP's resharding.

A megatron ShardedTensor names a region of a global checkpoint tensor (key, global offset, local shape,
plus leading axes that stack layers). `read_regions` asks torch.distributed.checkpoint for exactly those
regions: it reads only the saved chunks that overlap them, with torch.load(weights_only=True), and copies
each overlap straight into the ShardedTensor's own data. megatron's `load` cannot do this for part of a
layer-stacked tensor in a one-rank world (its placement metadata assumes every chunk is requested).
"""
from __future__ import annotations

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, TensorStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from nemo_twvlm.conversion.mapping import ConversionError


class MetadataOnceReader(FileSystemReader):
    """A FileSystemReader that parses the checkpoint's metadata once for many reads."""

    _metadata = None

    def read_metadata(self, *args, **kwargs):
        if self._metadata is None:
            self._metadata = super().read_metadata(*args, **kwargs)
        return self._metadata


class RegionPlanner(DefaultLoadPlanner):
    def __init__(self, items):
        super().__init__()
        self.items = items
        self.targets: dict[tuple, torch.Tensor] = {}

    def set_up_planner(self, state_dict, metadata=None, is_coordinator=False):
        self.metadata = metadata

    def create_local_plan(self) -> LoadPlan:
        reads = []
        for item in self.items:
            saved = self.metadata.state_dict_metadata.get(item.key)
            if not isinstance(saved, TensorStorageMetadata):
                raise ConversionError(f"checkpoint has no tensor {item.key!r}")
            if tuple(saved.size) != tuple(item.global_shape):
                raise ConversionError(f"checkpoint tensor {item.key!r} has shape {tuple(saved.size)}; the preset "
                                      f"expects {tuple(item.global_shape)}")
            target = item.data.view((1,) * item.prepend_axis_num + tuple(item.data.shape))
            offsets = torch.Size(item.global_offset)
            self.targets[(item.key, tuple(offsets))] = target
            reads += create_read_items_for_chunk_list(
                item.key, saved, [ChunkStorageMetadata(offsets=offsets, sizes=target.shape)])
        return LoadPlan(reads)

    def resolve_tensor(self, read_item) -> torch.Tensor:
        target = self.targets[(read_item.dest_index.fqn, tuple(read_item.dest_index.offset))]
        return narrow_tensor_by_index(target, read_item.dest_offsets, read_item.lengths)

    def commit_tensor(self, read_item, tensor) -> None:
        pass  # the data was copied into the target view


def read_regions(reader: MetadataOnceReader, items) -> None:
    """Fill each megatron ShardedTensor in `items` (its `.data`) from the checkpoint behind `reader`."""
    try:
        dcp.load({}, storage_reader=reader, planner=RegionPlanner(items), no_dist=True)
    except ConversionError:
        raise
    except Exception as error:  # DCP wraps planner errors; keep the first line of the cause
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ConversionError):
            raise cause from None
        raise ConversionError(f"{reader.path}: cannot read {[item.key for item in items][:3]}: "
                              f"{str(error).strip().splitlines()[0]}") from None
