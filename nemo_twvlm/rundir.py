"""A checkpoint directory, as training and conversion write it and everything else reads it.

    DIR/iter_0000000/                   megatron dist_checkpointing (torch_dist)
    DIR/latest_checkpointed_iteration.txt
    DIR/twvlm_config.json               the run record, plain JSON: the PretrainConfig that wrote it (training),
                                        or the sections an import decided (conversion)
    DIR/twvlm_preset.json               the full model preset
    DIR/tokenizer/                      the tokenizer (with its <image> record and generation_config.json)
    DIR/dataloader/iter_0000000/mp_rank_00*/train_dataloader_dprankNNN.pt
                                        Energon loader state per data-parallel rank (megatron's layout)

This module owns those names. It reads and writes the record as plain JSON and imports only the presets,
so training, validation, conversion and inference share one definition of a checkpoint without importing
each other. Checkpoints written before the preset file and tokenizer directory existed name them in the
run record instead.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from nemo_twvlm.presets import PRESET_FILE, ModelPreset, get_preset, load_preset

TRACKER_FILE = "latest_checkpointed_iteration.txt"
RUN_CONFIG_FILE = "twvlm_config.json"
TOKENIZER_DIR = "tokenizer"
LOADER_STATE_DIR = "dataloader"
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


def write_run_record(directory: str | Path, record: dict) -> Path:
    """The run record as JSON; sections a record leaves out take the training config's defaults when read
    back (training.config.config_from_record)."""
    path = Path(directory, RUN_CONFIG_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


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


def conf_dir() -> Path:
    """The conf/ directory entry points merge in (clusters, curation pipelines): `$TWVLM_CONF`, else the
    repository's, wherever the command runs from."""
    return Path(os.environ.get("TWVLM_CONF") or REPO / "conf")


def resolve_local(path: str) -> str:
    """A tokenizer path as a recipe names it (relative to the repository, like data/tokenizer), from any
    working directory; a path that exists nowhere is returned as given (a hub id in production)."""
    if not path or Path(path).exists():
        return path
    in_repo = REPO / path
    return str(in_repo) if in_repo.exists() else path


# `org/name`: what the Hugging Face hub calls a repository id.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def missing_local_path(path: str) -> str | None:
    """Why `path` names a local file or directory that is not there, or None if it exists (as given or
    under the repository) or reads as a hub id.

    A hub id is `org/name` whose `org` is no directory here: `data/tokenizr` (a typo of the repository's
    `data/tokenizer`) is a missing path, not a repository for the network to look up."""
    if not path:
        return None
    candidates = [Path(path), REPO / path]
    if any(candidate.exists() for candidate in candidates):
        return None
    if _HUB_ID.fullmatch(path) and not any(candidate.parent.is_dir() for candidate in candidates):
        return None
    return "no such file or directory (looked for " + ", ".join(str(c) for c in dict.fromkeys(candidates)) + ")"


def checkpoint_tokenizer(directory: str | Path) -> str:
    """The tokenizer a checkpoint trains and exports with: its own tokenizer/ directory, else the one its
    run record names, found as given, beside the checkpoint or in the repository. Never a hub lookup: a
    relative path that is not found from here is refused, naming it."""
    directory = Path(directory)
    if (directory / TOKENIZER_DIR).is_dir():
        return str(directory / TOKENIZER_DIR)
    named = read_run_record(directory)["data"]["tokenizer"]
    candidates = [Path(named), directory / named, REPO / named] if named else []
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise RunDirError(f"{directory / RUN_CONFIG_FILE} names data.tokenizer={named!r}, which is not here (looked for "
                      f"{', '.join(str(c) for c in dict.fromkeys(candidates)) or 'nothing'}); copy the "
                      f"tokenizer to {directory / TOKENIZER_DIR}")


def loader_state_dir(directory: str | Path) -> Path:
    """Where megatron saves the loader state of the run checkpointing into `directory` (--dataloader-save)."""
    return Path(directory) / LOADER_STATE_DIR


def loader_state_files(directory: str | Path, iteration: int) -> list[Path]:
    """The per-DP-rank loader-state files of one iteration, in megatron's TP0/PP0 directory (`mp_rank_00`,
    or `mp_rank_00_000` if saved under pipeline parallelism); [] if none were saved."""
    state_dir = iteration_dir(loader_state_dir(directory), iteration)
    return sorted(state_dir.glob("mp_rank_00*/train_dataloader_dprank*.pt"))


def loader_state_name(dp_rank: int) -> str:
    return f"train_dataloader_dprank{dp_rank:03d}.pt"
