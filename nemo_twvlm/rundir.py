"""A checkpoint directory, as training and conversion write it and everything else reads it.

    DIR/iter_0000000/                   megatron dist_checkpointing (torch_dist)
    DIR/latest_checkpointed_iteration.txt
    DIR/twvlm_config.json               the run record: the PretrainConfig that wrote it, as JSON
    DIR/twvlm_preset.json               the full model preset
    DIR/tokenizer/                      the tokenizer (with its <image> record and generation_config.json)

This module reads the record as plain JSON and imports only the presets, so validation, conversion and
inference can read a checkpoint without the training stack. Checkpoints written before the preset file
and tokenizer directory existed name them in the run record instead.
"""
from __future__ import annotations

import json
from pathlib import Path

from nemo_twvlm.presets import PRESET_FILE, ModelPreset, get_preset, load_preset

TRACKER_FILE = "latest_checkpointed_iteration.txt"
RUN_CONFIG_FILE = "twvlm_config.json"
TOKENIZER_DIR = "tokenizer"
# The retention scores of the checkpoint a stage started from (training.in_training_eval), kept across resumes.
RETENTION_BASELINE_FILE = "retention_baseline.json"
REPO = Path(__file__).resolve().parents[1]


class RunDirError(ValueError):
    """A directory that is not (or not yet) a usable checkpoint: the message names the file."""


def iteration_dir(directory: str | Path, iteration: int) -> Path:
    return Path(directory) / f"iter_{iteration:07d}"


def is_checkpoint(directory: str | Path) -> bool:
    return Path(directory, TRACKER_FILE).is_file()


def latest_iteration(directory: str | Path) -> int:
    tracker = Path(directory, TRACKER_FILE)
    if not tracker.is_file():
        raise RunDirError(f"{tracker} not found: {directory} is not a complete nemo_twvlm checkpoint")
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise RunDirError(f"{tracker} holds {text!r}; expected an iteration number")
    return int(text)


def read_run_record(directory: str | Path) -> dict:
    path = Path(directory, RUN_CONFIG_FILE)
    if not path.is_file():
        raise RunDirError(f"{path} not found: {directory} is not a nemo_twvlm checkpoint directory")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def checkpoint_preset(directory: str | Path) -> ModelPreset:
    directory = Path(directory)
    if (directory / PRESET_FILE).is_file():
        return load_preset(directory)
    return get_preset(read_run_record(directory)["model"]["preset"])


def resolve_local(path: str) -> str:
    """A tokenizer path as a recipe names it (relative to the repository, like data/tokenizer), from any
    working directory; a path that exists nowhere is returned as given (a hub id in production)."""
    if not path or Path(path).exists():
        return path
    in_repo = REPO / path
    return str(in_repo) if in_repo.exists() else path


def checkpoint_tokenizer(directory: str | Path) -> str:
    directory = Path(directory)
    if (directory / TOKENIZER_DIR).is_dir():
        return str(directory / TOKENIZER_DIR)
    return resolve_local(read_run_record(directory)["data"]["tokenizer"])
