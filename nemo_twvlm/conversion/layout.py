"""Our checkpoint directory as conversion writes and reads it: the run directory (`nemo_twvlm.rundir`)
plus what an import from Hugging Face adds.

    DIR/hf_source/source.json          import record: source kind, config(s), tensor naming and dtypes
    DIR/hf_source/sidecar.safetensors  HF tensors our model does not use, verbatim (canonical names)
    DIR/hf_source/files/               preprocessor/processor/generation configs, verbatim

A checkpoint written by training has only the run directory's entries; export works from those too.
"""
from __future__ import annotations

import json
from pathlib import Path

from nemo_twvlm import rundir
from nemo_twvlm.conversion.mapping import ConversionError
from nemo_twvlm.presets import ModelPreset

HF_DIR = "hf_source"
SOURCE_FILE = "source.json"
SIDECAR_FILE = "sidecar.safetensors"
FILES_DIR = "files"


def latest_iteration(directory: Path) -> int:
    try:
        return rundir.latest_iteration(directory)
    except rundir.RunDirError as error:
        raise ConversionError(str(error)) from None


def checkpoint_preset(directory: Path) -> ModelPreset:
    try:
        return rundir.checkpoint_preset(directory)
    except (rundir.RunDirError, ValueError) as error:
        raise ConversionError(str(error)) from None


def checkpoint_tokenizer(directory: Path) -> Path:
    try:
        return Path(rundir.checkpoint_tokenizer(directory))
    except rundir.RunDirError as error:
        raise ConversionError(str(error)) from None


def read_source_record(directory: Path) -> dict | None:
    path = Path(directory) / HF_DIR / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def prepare_destination(dst: Path) -> Path:
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise ConversionError(f"destination {dst} exists and is not empty; conversion never overwrites")
    dst.mkdir(parents=True, exist_ok=True)
    return dst
