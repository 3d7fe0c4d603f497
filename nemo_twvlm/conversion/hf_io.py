"""Tensor files of a Hugging Face checkpoint, read lazily and written in shards.

Reading never materialises a file: safetensors are opened with `safe_open` and each tensor (or the
tensor-parallel slice of it a rank needs) is read on request; `.bin` files are opened with
`torch.load(weights_only=True, mmap=True)`. No pickle code from a checkpoint is ever executed.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

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
            try:
                with safe_open(str(path), framework="pt") as f:
                    pieces = [(name, f.get_slice(name)) for name in f.keys()]
            except Exception as error:  # SafetensorError (cut-off header or data), OSError
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ConversionError(f"{path} is not a readable safetensors file ({first_line}); a truncated "
                                      f"download or copy? fetch it again") from None
            for name, piece in pieces:
                if piece.get_dtype() not in _ST_DTYPES:
                    raise ConversionError(f"{path}: tensor {name!r} has dtype {piece.get_dtype()}, which a model "
                                          f"weight cannot have; supported: {sorted(_ST_DTYPES)}")
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
            try:
                with safe_open(info.file, framework="pt") as f:
                    if dim is None:
                        return f.get_tensor(name)
                    index = (slice(None),) * dim + (slice(start, stop),)
                    return f.get_slice(name)[index].contiguous()
            except Exception as error:  # the file changed or was cut short after it was scanned
                raise ConversionError(f"{info.file}: tensor {name!r} cannot be read ({error})") from None
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


_ST_CODES = {dtype: code for code, dtype in _ST_DTYPES.items()}


class PlannedSafetensorsWriter:
    """Writes a checkpoint whose tensors (name, shape, dtype) are known in advance, in any arrival order.

    Shards are laid out and their safetensors headers written up front, then each tensor's bytes go
    straight to their place in the file: memory holds only the tensor being written, never a shard
    (`safetensors.torch.save_file` would hold a byte copy of the whole shard). Files are named like
    `save_pretrained` names them, with an index when there is more than one.
    """

    def __init__(self, directory: Path, plan: list[tuple[str, tuple[int, ...], torch.dtype]], max_shard_bytes: int):
        self.directory = Path(directory)
        self._where: dict[str, tuple[int, int, tuple[int, ...], torch.dtype]] = {}  # name -> file, offset, ...
        shards: list[list[tuple[str, tuple[int, ...], torch.dtype, int]]] = [[]]
        size = 0
        for name, shape, dtype in plan:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append((name, tuple(shape), dtype, nbytes))
            size += nbytes
        count = len(shards)
        self.files = ["model.safetensors"] if count == 1 else [
            f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        self._handles = []
        for index, (file_name, shard) in enumerate(zip(self.files, shards)):
            header, offset = {"__metadata__": {"format": "pt"}}, 0
            for name, shape, dtype, nbytes in shard:
                header[name] = {"dtype": _ST_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
            encoded = json.dumps(header, separators=(",", ":")).encode()
            encoded += b" " * (-len(encoded) % 8)
            handle = open(self.directory / file_name, "wb")
            handle.write(struct.pack("<Q", len(encoded)) + encoded)
            start = 8 + len(encoded)
            handle.truncate(start + offset)
            self._handles.append(handle)
            for name, shape, dtype, _ in shard:
                self._where[name] = (index, start + header[name]["data_offsets"][0], shape, dtype)
        self._pending = set(self._where)
        self.total_bytes = sum(math.prod(s) * torch.empty((), dtype=d).element_size() for _, s, d in plan)
        self.weight_map = {name: self.files[index] for name, (index, *_rest) in self._where.items()}

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if name not in self._where:
            raise ConversionError(f"tensor {name!r} is not in the export plan")
        if name not in self._pending:
            raise ConversionError(f"tensor {name!r} written twice")
        index, offset, shape, dtype = self._where[name]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ConversionError(f"tensor {name!r}: planned {shape} {dtype}, got {tuple(tensor.shape)} {tensor.dtype}")
        handle = self._handles[index]
        handle.seek(offset)
        handle.write(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        self._pending.discard(name)

    def close(self) -> list[str]:
        for handle in self._handles:
            handle.close()
        if self._pending:
            raise ConversionError(f"{len(self._pending)} planned tensors were never written, e.g. "
                                  f"{sorted(self._pending)[:3]}")
        if len(self.files) > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
            (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n",
                                                                         encoding="utf-8")
        return self.files
