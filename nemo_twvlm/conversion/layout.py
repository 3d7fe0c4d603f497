"""Our checkpoint directory as conversion writes and reads it.

    DIR/iter_0000000/                  megatron dist_checkpointing (torch_dist), {"model": sharded_state_dict}
    DIR/latest_checkpointed_iteration.txt
    DIR/twvlm_config.json              PretrainConfig: preset name, tokenizer, TP/PP of the import
    DIR/twvlm_preset.json              the full preset (so sizes that are not registered presets build)
    DIR/tokenizer/                     the source tokenizer, copied
    DIR/hf_source/source.json          import record: source kind, config(s), tensor naming and dtypes
    DIR/hf_source/sidecar.safetensors  HF tensors our model does not use, verbatim (canonical names)
    DIR/hf_source/files/               preprocessor/processor/generation configs, verbatim

A checkpoint written by training has only the first three entries; export works from those too.
"""
from __future__ import annotations

import json
from pathlib import Path

from nemo_twvlm.conversion.hf_config import PRESET_FILE, load_preset
from nemo_twvlm.conversion.mapping import ConversionError
from nemo_twvlm.presets import ModelPreset, get_preset

TOKENIZER_DIR = "tokenizer"
HF_DIR = "hf_source"
SOURCE_FILE = "source.json"
SIDECAR_FILE = "sidecar.safetensors"
FILES_DIR = "files"
TRACKER_FILE = "latest_checkpointed_iteration.txt"


def iteration_dir(directory: Path, iteration: int = 0) -> Path:
    return Path(directory) / f"iter_{iteration:07d}"


def latest_iteration(directory: Path) -> int:
    tracker = Path(directory) / TRACKER_FILE
    if not tracker.exists():
        raise ConversionError(f"{tracker} not found: {directory} is not a complete nemo_twvlm checkpoint")
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise ConversionError(f"{tracker} holds {text!r}; expected an iteration number")
    return int(text)


def checkpoint_preset(directory: Path) -> ModelPreset:
    directory = Path(directory)
    if (directory / PRESET_FILE).exists():
        return load_preset(directory)
    from nemo_twvlm.training.checkpoint import load_run_config

    return get_preset(load_run_config(str(directory)).model.preset)


def checkpoint_tokenizer(directory: Path) -> Path:
    directory = Path(directory)
    if (directory / TOKENIZER_DIR).is_dir():
        return directory / TOKENIZER_DIR
    from nemo_twvlm.training.checkpoint import load_run_config

    return Path(load_run_config(str(directory)).data.tokenizer)


def read_source_record(directory: Path) -> dict | None:
    path = Path(directory) / HF_DIR / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def prepare_destination(dst: Path) -> Path:
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise ConversionError(f"destination {dst} exists and is not empty; conversion never overwrites")
    dst.mkdir(parents=True, exist_ok=True)
    return dst
