"""Stop-and-resume through megatron.training with Energon loader state: N steps, stop, resume N steps
must reproduce an uninterrupted 2N-step run exactly (losses and the samples each step saw)."""
import dataclasses
import json
import subprocess
import sys

import pytest

from nemo_twvlm.data.synthetic import write_dataset
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.pretrain import config_to_json

N = 4


@pytest.fixture(scope="module")
def blend(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume_data")
    write_dataset(out, train_pairs=600, val_pairs=10, interleaved_docs=400)
    return out / "blend.yaml"


def _config(blend, save, log, *, exit_interval=None, load=None) -> PretrainConfig:
    cfg = PretrainConfig(name="resume_test")
    cfg.data.path, cfg.data.sample_log = str(blend), str(log)
    cfg.data.micro_batch_size = cfg.data.global_batch_size = 4
    cfg.data.packing_buffer_size = 64
    cfg.model.freeze_plan = "cpt"
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.log_interval = 2 * N, 2, 1
    cfg.trainer.exit_interval = exit_interval
    cfg.checkpoint.save, cfg.checkpoint.save_interval, cfg.checkpoint.load = str(save), N, load
    return cfg


def _train(cfg: PretrainConfig, tmp_path) -> None:
    path = tmp_path / f"{abs(hash(cfg.checkpoint.save))}-{cfg.trainer.exit_interval}.json"
    path.write_text(config_to_json(cfg))
    result = subprocess.run([sys.executable, "-m", "nemo_twvlm.training.pretrain", str(path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_run(blend, tmp_path):
    full_log, part_log = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    _train(_config(blend, tmp_path / "full", full_log), tmp_path)
    _train(_config(blend, tmp_path / "part", part_log, exit_interval=N), tmp_path)
    assert len(_log(part_log)) == N  # stopped after N steps
    output = _train(_config(blend, tmp_path / "part", part_log, load=str(tmp_path / "part")), tmp_path)
    assert "restored data loader state" in output

    full, part = _log(full_log), _log(part_log)
    assert [r["iteration"] for r in part] == [r["iteration"] for r in full] == list(range(2 * N))
    assert [r["loss"] for r in part] == [r["loss"] for r in full]  # bitwise on CPU
    assert [r["keys"] for r in part] == [r["keys"] for r in full]
    keys = [k for r in full for row in r["keys"] for k in row]
    assert len(keys) == len(set(keys)), "a sample was repeated within the run"
    # Losses go down: the run trains, not just replays.
    assert full[-1]["loss"] < full[0]["loss"]


def test_a_half_written_checkpoint_is_never_resumed(blend, tmp_path):
    """Checkpoints at 2 and 4, the one at 4 cut short (a job killed while saving): the resume names it,
    loads iteration 2 and replays iterations 2 and 3 exactly as the first run trained them."""
    from nemo_twvlm.training.lineage import resolve_start
    from nemo_twvlm.training.validate import ConfigError

    save, first_log, second_log = tmp_path / "run", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    cfg = _config(blend, save, first_log, exit_interval=N)
    cfg.trainer.max_steps, cfg.checkpoint.save_interval = N + 2, 2
    _train(cfg, tmp_path)
    shard = save / "iter_0000004" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    resumed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, sample_log=str(second_log)),
                                  trainer=dataclasses.replace(cfg.trainer, exit_interval=None),
                                  checkpoint=dataclasses.replace(cfg.checkpoint, load=str(save)))
    output = _train(resumed, tmp_path)
    assert f"checkpoint {save / 'iter_0000004'} is incomplete (__0_0.distcp is " in output
    assert (save / "iter_0000004.incomplete").is_dir()  # kept for a look, out of the way
    first, second = _log(first_log), _log(second_log)
    assert [r["iteration"] for r in second] == [2, 3, 4, 5]
    assert [(r["loss"], r["keys"]) for r in second[:2]] == [(r["loss"], r["keys"]) for r in first[2:4]]
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == "6"

    (save / "latest_checkpointed_iteration.txt").write_text("9")  # names an iteration that is not there
    assert resolve_start(resumed).checkpoint.step == 6
    (save / "latest_checkpointed_iteration.txt").write_text("garbage")
    with pytest.raises(ConfigError, match=r"latest_checkpointed_iteration.txt holds 'garbage'"):
        resolve_start(resumed)
