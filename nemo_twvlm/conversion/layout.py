"""Our checkpoint directory as conversion writes and reads it: the run directory (`nemo_twvlm.rundir`)
plus what an import from Hugging Face adds.

    DIR/hf_source/source.json          import record: source kind, config(s), tensor naming and dtypes
    DIR/hf_source/sidecar.safetensors  HF tensors our model does not use, verbatim (canonical names)
    DIR/hf_source/files/               preprocessor/processor/generation configs, verbatim

A checkpoint written by training has only the run directory's entries; export works from those too.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from nemo_twvlm.conversion.mapping import ConversionError

HF_DIR = "hf_source"
SOURCE_FILE = "source.json"
SIDECAR_FILE = "sidecar.safetensors"
FILES_DIR = "files"


@contextmanager
def run_dir_errors():
    """A run directory that cannot be read (rundir.RunDirError, or a preset file that does not parse) as
    the ConversionError the conversion entry points report."""
    try:
        yield
    except ValueError as error:  # RunDirError is a ValueError
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
