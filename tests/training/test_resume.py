"""Stop-and-resume through megatron.training with Energon loader state: N steps, stop, resume N steps
must reproduce an uninterrupted 2N-step run exactly (losses and the samples each step saw)."""
import dataclasses
import json
import subprocess
import sys

import pytest

from nemo_twvlm.data.synthetic import write_dataset
from nemo_twvlm.training.config import PretrainConfig, config_to_json

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


@pytest.fixture(scope="module")
def uninterrupted(blend, tmp_path_factory):
    """The sample log of a 2N-step run that nothing stopped."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    _train(_config(blend, tmp_path / "full", tmp_path / "full.jsonl"), tmp_path)
    return tmp_path / "full.jsonl"


def test_resume_reproduces_the_uninterrupted_run(blend, uninterrupted, tmp_path):
    full_log, part_log = uninterrupted, tmp_path / "part.jsonl"
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


def test_sigterm_saves_at_the_step_boundary_and_a_half_written_checkpoint_is_never_resumed(
        blend, uninterrupted, tmp_path):
    """SIGTERM mid-run (a preemption): the run saves where it stands and exits cleanly. Its newest
    checkpoint is then cut short, as a kill during the save would leave it: the resume names it, loads
    the complete one before it, and the run ends exactly as the uninterrupted one did."""
    import os
    import signal
    import time

    from nemo_twvlm.training.lineage import resolve_start
    from nemo_twvlm.training.validate import ConfigError

    save, first_log, second_log = tmp_path / "run", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    cfg = _config(blend, save, first_log)
    cfg.checkpoint.save_interval = 2
    path = tmp_path / "first.json"
    path.write_text(config_to_json(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    proc = subprocess.Popen([sys.executable, "-m", "nemo_twvlm.training.pretrain", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (first_log.exists() and len(_log(first_log)) >= 5) and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not reach iteration 4"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    stopped = len(_log(first_log))
    assert stopped < 2 * N, "the signal did not stop the run"
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)  # the step boundary

    shard = save / f"iter_{stopped:07d}" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    before = max(step for step in (2, 4) if step < stopped)
    resumed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, sample_log=str(second_log)),
                                  checkpoint=dataclasses.replace(cfg.checkpoint, load=str(save)))
    output = _train(resumed, tmp_path)
    assert f"checkpoint {save / f'iter_{stopped:07d}'} is incomplete (__0_0.distcp is " in output
    assert (save / f"iter_{stopped:07d}.incomplete").is_dir()  # kept for a look, out of the way
    combined, full = _log(first_log)[:before] + _log(second_log), _log(uninterrupted)
    assert [r["iteration"] for r in combined] == list(range(2 * N))
    assert [(r["loss"], r["keys"]) for r in combined] == [(r["loss"], r["keys"]) for r in full]  # bitwise

    (save / "latest_checkpointed_iteration.txt").write_text("9")  # names an iteration that is not there
    assert resolve_start(resumed).checkpoint.step == 2 * N
    (save / "latest_checkpointed_iteration.txt").write_text("garbage")
    with pytest.raises(ConfigError, match=r"latest_checkpointed_iteration.txt holds 'garbage'"):
        resolve_start(resumed)
