"""Tensor files of a Hugging Face checkpoint, read lazily and written in shards.

Reading never materialises a file: safetensors are opened with `safe_open` and each tensor (or the
tensor-parallel slice of it a rank needs) is read on request; `.bin` files are opened with
`torch.load(weights_only=True, mmap=True)`. No pickle code from a checkpoint is ever executed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nemo_twvlm.conversion.mapping import ConversionError

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    file: str
    name: str  # the name inside the file
    shape: tuple[int, ...]
    dtype: torch.dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConversionError(f"unknown dtype {name!r}")
    return dtype


def tensor_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint directory: safetensors if any, else PyTorch .bin files."""
    for index_name, pattern in (("model.safetensors.index.json", "*.safetensors"),
                                ("pytorch_model.bin.index.json", "*.bin")):
        index = directory / index_name
        if index.exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return [directory / name for name in sorted(set(weight_map.values()))]
        files = sorted(directory.glob(pattern))
        if pattern == "*.bin":
            files = [f for f in files if f.name.startswith("pytorch_model")]
        if files:
            return files
    raise ConversionError(f"{directory} holds no model weights (no *.safetensors or pytorch_model*.bin)")


class TensorReader:
    """Lazy access to every tensor of a set of checkpoint files."""

    def __init__(self, files: list[Path]):
        self.tensors: dict[str, TensorInfo] = {}
        self._bin: dict[str, dict[str, torch.Tensor]] = {}
        for path in files:
            for info in self._scan(path):
                if info.name in self.tensors:
                    raise ConversionError(f"tensor {info.name!r} appears in both {self.tensors[info.name].file} "
                                          f"and {info.file}")
                self.tensors[info.name] = info

    def _scan(self, path: Path):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    piece = f.get_slice(name)
                    yield TensorInfo(str(path), name, tuple(piece.get_shape()), _ST_DTYPES[piece.get_dtype()])
        else:
            state = self._open_bin(str(path))
            for name, tensor in state.items():
                if not isinstance(tensor, torch.Tensor):
                    raise ConversionError(f"{path}: entry {name!r} is not a tensor")
                yield TensorInfo(str(path), name, tuple(tensor.shape), tensor.dtype)

    def _open_bin(self, path: str) -> dict[str, torch.Tensor]:
        if path not in self._bin:
            try:
                self._bin[path] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as error:  # UnpicklingError for anything but tensors and plain containers
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ConversionError(f"{path} cannot be read with torch.load(weights_only=True): {first_line}") from None
        return self._bin[path]

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The tensor `name`, or its [start, stop) slice along `dim`, as a fresh tensor."""
        info = self.tensors[name]
        if info.file.endswith(".safetensors"):
            # Opened per read: the mapping is released at once, so pages already copied out of the file
            # do not stay resident next to the model being built.
            with safe_open(info.file, framework="pt") as f:
                if dim is None:
                    return f.get_tensor(name)
                index = (slice(None),) * dim + (slice(start, stop),)
                return f.get_slice(name)[index].contiguous()
        tensor = self._open_bin(info.file)[name]
        if dim is not None:
            tensor = tensor.narrow(dim, start, stop - start)
        return tensor.clone()


def parse_size(size: str | int) -> int:
    if isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    text = size.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


class ShardedSafetensorsWriter:
    """Writes tensors into safetensors shards of at most `max_shard_bytes` (one tensor may exceed it),
    holding only the current shard in memory; names the files like `save_pretrained` does."""

    def __init__(self, directory: Path, max_shard_bytes: int):
        self.directory = Path(directory)
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._pending or any(name in shard for shard in self._shards):
            raise ConversionError(f"tensor {name!r} written twice")
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        self._pending[name] = tensor.contiguous()
        self._pending_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        path = self.directory / f"shard-{len(self._shards):05d}.tmp"
        save_file(self._pending, str(path), metadata={"format": "pt"})
        self._shards.append(list(self._pending))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> list[str]:
        if self._pending or not self._shards:
            self._flush()
        count = len(self._shards)
        names = ["model.safetensors"] if count == 1 else [
            f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        for i, name in enumerate(names):
            os.replace(self.directory / f"shard-{i:05d}.tmp", self.directory / name)
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes},
                     "weight_map": {t: names[i] for i, shard in enumerate(self._shards) for t in sorted(shard)}}
            (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n",
                                                                         encoding="utf-8")
        return names
