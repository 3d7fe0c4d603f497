"""Energon loader state <-> plain Python values, so checkpoints load with torch.load(weights_only=True).

Energon's state objects (dataclasses and FlexState, a dict subclass) cannot pass torch's safe
unpickler; this codec tags them, and decoding rebuilds only classes from megatron.energon itself.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from megatron.energon.state import FlexState

_FLEX = "__energon_flex_state__"
_DATACLASS = "__energon_dataclass__"
_ALLOWED_PREFIX = "megatron.energon."


def encode_state(value: Any) -> Any:
    if isinstance(value, FlexState):
        return {_FLEX: [[encode_state(k), encode_state(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {_DATACLASS: f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode_state(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {k: encode_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_state(v) for v in value]
    if isinstance(value, tuple):
        return tuple(encode_state(v) for v in value)
    return value


def _energon_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(_ALLOWED_PREFIX):
        raise ValueError(f"loader state names class {name!r}, which is not part of megatron.energon")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def decode_state(value: Any) -> Any:
    if isinstance(value, dict):
        if _FLEX in value:
            return FlexState({decode_state(k): decode_state(v) for k, v in value[_FLEX]})
        if _DATACLASS in value:
            cls = _energon_class(value[_DATACLASS])
            return cls(**{k: decode_state(v) for k, v in value["fields"].items()})
        return {k: decode_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if isinstance(value, tuple):
        return tuple(decode_state(v) for v in value)
    return value
