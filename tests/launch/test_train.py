"""A run people can watch and trust: the debug recipe through `python -m nemo_twvlm.launch.train` with
TensorBoard and offline W&B on, in-training evaluation (validation loss, text retention, the
instruction-following probe) and the retention gate.

One run serves the default asserts (the suite's time budget allows one): its learning rate wrecks the
LM from the second step on (linear warmup makes the first step's LR 0), so it shows the telemetry,
the scores before the first step and at each evaluation, and the gate stopping it with a kept
checkpoint. That the gate lets normal CPT through is the demo's test (its CPT is gated), and a slow
test here."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_twvlm.data.synthetic import RETENTION_SET
from nemo_twvlm.model.flops import training_flops
from nemo_twvlm.presets import get_preset
from nemo_twvlm.training.config import config_to_json
from nemo_twvlm_recipes.pretrain import twvlm_debug

STEPS = 6


def _config(data, root, name, *, lr, eval_interval):
    cfg = twvlm_debug()
    cfg.name = name
    cfg.data.path, cfg.data.val_path = str(data / "blend.yaml"), str(data / "pairs_val")
    cfg.data.retention_path, cfg.data.probe_path, cfg.data.probe_images = str(data / RETENTION_SET), "", 1
    cfg.data.packing_buffer_size = 64
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.log_interval = STEPS, 1, 1
    cfg.trainer.lr = cfg.trainer.min_lr = lr
    cfg.trainer.eval_interval, cfg.trainer.eval_iters = eval_interval, 1
    cfg.trainer.retention_gate, cfg.trainer.retention_gate_action = 0.5, "stop"
    cfg.checkpoint.save = str(root / name)
    return cfg


def _train(cfg, root, **env):
    path = root / f"{cfg.name}.json"
    path.write_text(config_to_json(cfg))
    return subprocess.run([sys.executable, "-m", "nemo_twvlm.launch.train", str(path)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, **env})


@pytest.fixture(scope="module")
def wrecked(synthetic_blend, tmp_path_factory):
    root = tmp_path_factory.mktemp("wrecked")
    cfg = _config(synthetic_blend, root, "wrecked", lr=5.0, eval_interval=1)
    cfg.data.probe_path = str(synthetic_blend / "pairs_val")
    cfg.trainer.tensorboard_dir, cfg.trainer.wandb_project = str(root / "tb"), "twvlm-test"
    result = _train(cfg, root, WANDB_MODE="offline", WANDB_SILENT="true")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    return cfg, result


def _scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_file,) = Path(tb_dir).glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(event_file))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def _stopped_at(result) -> int:
    return int(result.stderr.strip().splitlines()[-1].split("checkpoint iteration ")[1].split()[0])


def test_event_file_holds_losses_throughput_and_eval_scores(wrecked):
    cfg, result = wrecked
    scalars = _scalars(cfg.trainer.tensorboard_dir)
    steps = list(range(1, _stopped_at(result) + 1))
    # megatron's own: loss, LR, grad norm every step, validation loss at each evaluation
    for tag in ("lm loss", "learning-rate", "grad-norm", "lm loss validation"):
        assert [s for s, _ in scalars[tag]] == steps, tag
    # ours, per step
    for tag in ("tokens-per-second", "tokens-per-second-per-gpu", "model-tflops-per-gpu", "image-tokens",
                "text-tokens", "packing-fill", "loader-wait-seconds"):
        assert [s for s, _ in scalars[tag]] == steps, tag
    # evaluation: before the first step (the gate's baseline) and at each interval
    for tag in ("retention/mcq_accuracy", "retention/perplexity", "if_probe/overall"):
        assert [s for s, _ in scalars[tag]] == [0, *steps], tag
    for tag, values in scalars.items():
        assert all(math.isfinite(v) for _, v in values), tag
    assert all(0 <= v <= 1 for tag in ("retention/mcq_accuracy", "if_probe/overall", "packing-fill")
               for _, v in scalars[tag])
    assert all(v > 1 for _, v in scalars["retention/perplexity"])
    assert all(v > 0 for tag in ("tokens-per-second", "model-tflops-per-gpu", "image-tokens", "text-tokens")
               for _, v in scalars[tag])

    # Model TFLOP/s is the planner's VLM count over the same time as tokens/s: their ratio is the
    # planner's FLOPs per position of that step's images and text (world size 1).
    preset = get_preset("debug")
    for step in steps:
        at = {tag: dict(scalars[tag])[step] for tag in ("model-tflops-per-gpu", "tokens-per-second", "image-tokens",
                                                        "text-tokens")}
        flops = training_flops(preset, images=at["image-tokens"] / preset.num_image_tokens,
                               text_tokens=at["text-tokens"], seq_length=cfg.data.seq_length, train_vision=True)
        per_position = flops / (at["image-tokens"] + at["text-tokens"])
        assert at["model-tflops-per-gpu"] * 1e12 / at["tokens-per-second"] == pytest.approx(per_position, rel=1e-3)


def test_wandb_writes_an_offline_run(wrecked):
    cfg, _ = wrecked
    runs = list(Path(cfg.trainer.tensorboard_dir, "wandb").rglob("offline-run-*/*.wandb"))
    assert runs and runs[0].stat().st_size > 0


def test_gate_stops_a_run_that_wrecks_the_lm_and_keeps_its_checkpoint(wrecked):
    cfg, result = wrecked
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("retention gate: retention/perplexity went from ")
    assert "beyond trainer.retention_gate=0.5; training stopped, checkpoint iteration" in message
    assert "Traceback" not in result.stderr
    stopped = _stopped_at(result)
    assert 1 <= stopped < STEPS
    save = Path(cfg.checkpoint.save)
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)
    assert (save / f"iter_{stopped:07d}" / ".metadata").is_file()
    baseline = json.loads((save / "retention_baseline.json").read_text())
    assert baseline["iteration"] == 0 and set(baseline["scores"]) >= {"retention/perplexity", "retention/mcq_accuracy"}
    ppl = dict(_scalars(cfg.trainer.tensorboard_dir)["retention/perplexity"])
    assert ppl[stopped] > 2 * ppl[0]  # what the gate saw


@pytest.mark.slow
def test_gate_lets_a_normal_run_finish(synthetic_blend, tmp_path):
    cfg = _config(synthetic_blend, tmp_path, "normal", lr=1e-3, eval_interval=3)
    result = _train(cfg, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "retention gate" not in result.stdout + result.stderr
    assert (tmp_path / "normal" / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
