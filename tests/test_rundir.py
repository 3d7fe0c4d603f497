"""The run directory's own files: the run record as plain JSON (and a partial one read back as a full
training config), and where megatron's per-rank loader state lies."""
from __future__ import annotations

import dataclasses

import pytest

from nemo_twvlm import rundir
from nemo_twvlm.training.config import PretrainConfig, TrainerConfig, config_from_record


def test_the_run_record_round_trips_and_a_partial_one_takes_the_defaults(tmp_path):
    cfg = PretrainConfig(name="stage", trainer=TrainerConfig(max_steps=7, precision="bf16"))
    rundir.write_run_record(tmp_path / "full", dataclasses.asdict(cfg))
    assert config_from_record(rundir.read_run_record(tmp_path / "full")) == cfg
    # What an import records: only what it decided.
    rundir.write_run_record(tmp_path / "imported", {"name": "import_debug", "model": {"preset": "debug"},
                                                     "parallel": {"tensor_parallel": 2}})
    read = config_from_record(rundir.read_run_record(tmp_path / "imported"))
    assert read.parallel.tensor_parallel == 2 and read.parallel.pipeline_parallel == 1
    assert read.trainer == TrainerConfig() and read.model.freeze_plan == "align"


def test_a_missing_or_broken_record_is_named(tmp_path):
    with pytest.raises(rundir.RunDirError, match="twvlm_config.json not found"):
        rundir.read_run_record(tmp_path)
    (tmp_path / rundir.RUN_CONFIG_FILE).write_text("{not json")
    with pytest.raises(rundir.RunDirError, match="twvlm_config.json: not valid JSON"):
        rundir.read_run_record(tmp_path)


def test_loader_state_files_are_found_with_and_without_pipeline_parallelism(tmp_path):
    for layout, ranks in (("mp_rank_00", (0, 1)), ("mp_rank_00_000", (0,))):
        run = tmp_path / layout
        for rank in ranks:
            path = rundir.iteration_dir(rundir.loader_state_dir(run), 20) / layout / rundir.loader_state_name(rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        found = rundir.loader_state_files(run, 20)
        assert [p.name for p in found] == [f"train_dataloader_dprank{r:03d}.pt" for r in ranks]
        assert rundir.loader_state_files(run, 10) == []
