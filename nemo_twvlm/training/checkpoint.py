"""What a training run writes beside its checkpoints, and reads back, through nemo_twvlm.rundir: the run
record (its PretrainConfig), the model preset and the tokenizer."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from nemo_twvlm import rundir
from nemo_twvlm.data.tokenizer import copy_tokenizer, load_tokenizer
from nemo_twvlm.presets import get_preset, save_preset
from nemo_twvlm.training.config import PretrainConfig, config_from_record


def save_run_files(cfg: PretrainConfig, save_dir: str) -> None:
    """The run record, the model preset and the tokenizer beside the checkpoints, so that the next stage,
    chat and export need nothing but this directory."""
    rundir.write_run_record(save_dir, dataclasses.asdict(cfg))
    save_preset(get_preset(cfg.model.preset), save_dir)
    source, target = rundir.resolve_local(cfg.data.tokenizer), Path(save_dir, rundir.TOKENIZER_DIR)
    if Path(source).resolve() == target.resolve():
        return  # a resumed run: the tokenizer is already here
    if Path(source).is_dir():
        copy_tokenizer(source, target)
    else:  # a hub id
        load_tokenizer(source).save_pretrained(str(target))


def load_run_config(save_dir: str) -> PretrainConfig:
    """The run record of `save_dir` as a PretrainConfig (rundir.RunDirError if it has none)."""
    return config_from_record(rundir.read_run_record(save_dir))
