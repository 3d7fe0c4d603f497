"""Per-step telemetry numbers (fake clock, fake batches) and the megatron flags that switch writers on."""
from types import SimpleNamespace

import pytest
import torch

from nemo_twvlm.model.flops import training_flops
from nemo_twvlm.presets import get_preset
from nemo_twvlm.training import arguments, telemetry
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.telemetry import StepTelemetry


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _batch(images: int, seq_lengths):
    return SimpleNamespace(images=torch.zeros(images, 3, 2, 2), seq_lengths=seq_lengths)


def test_an_iteration_is_written_when_the_next_starts_with_planner_flops(monkeypatch):
    clock, written = Clock(), []
    monkeypatch.setattr(telemetry.time, "perf_counter", clock)
    preset = get_preset("debug")
    n = preset.num_image_tokens
    t = StepTelemetry(preset, seq_length=256, train_vision=False, data_parallel=2, world_size=4,
                      write=lambda scalars, step: written.append((step, scalars)))
    t.record(0, _batch(2, [[n + 10, n + 30], [200]]), loader_wait=0.5)  # window starts 0.5 s back
    clock.now += 1.0
    t.record(0, _batch(1, [[n + 40]]), loader_wait=0.25)
    clock.now += 2.0
    t.exclude(0.5)  # an evaluation inside the window
    assert written == []
    t.record(1, _batch(0, [[64]]), loader_wait=0.0)
    (step, s), = written
    assert step == 1  # megatron logs iteration 0's loss at 1
    positions, images = (2 * n + 240) + (n + 40), 3
    elapsed = 0.5 + 1.0 + 2.0 - 0.5
    assert s["image-tokens"] == 2 * images * n and s["text-tokens"] == 2 * (positions - images * n)
    assert s["tokens-per-second"] == pytest.approx(2 * positions / elapsed)
    assert s["tokens-per-second-per-gpu"] == pytest.approx(2 * positions / elapsed / 4)
    flops = 2 * training_flops(preset, images=images, text_tokens=positions - images * n, seq_length=256,
                               train_vision=False)
    assert s["model-tflops-per-gpu"] == pytest.approx(flops / elapsed / 4 / 1e12)
    assert s["packing-fill"] == pytest.approx(positions / (3 * 256))
    assert s["loader-wait-seconds"] == pytest.approx(0.75)
    assert t.flush()["image-tokens"] == 0 and t.flush() is None


def test_the_trained_vision_tower_costs_three_times_its_forward():
    preset = get_preset("debug")
    frozen = training_flops(preset, images=1, text_tokens=0, seq_length=256, train_vision=False)
    trained = training_flops(preset, images=1, text_tokens=0, seq_length=256, train_vision=True)
    from nemo_twvlm.model.flops import vit_flops_per_image

    assert trained - frozen == pytest.approx(2 * vit_flops_per_image(preset, backward=False))


def test_writers_are_megatrons_own_flags():
    cfg = PretrainConfig(name="watched")
    assert arguments.telemetry_args(cfg) == []
    cfg.trainer.tensorboard_dir, cfg.trainer.wandb_project, cfg.checkpoint.save = "runs/tb", "twvlm", "ckpt"
    args = arguments.megatron_args(cfg)
    assert args[args.index("--tensorboard-dir") + 1] == "runs/tb"
    assert args[args.index("--wandb-project") + 1] == "twvlm"
    assert args[args.index("--wandb-exp-name") + 1] == "watched"  # the run's name unless given
    assert args[args.index("--wandb-save-dir") + 1] == "runs/tb/wandb"


@pytest.mark.parametrize("setting,cuda,expected", [(None, False, False), (None, True, True), (True, False, True),
                                                   (False, True, False)])
def test_async_save_defaults_to_the_platform(monkeypatch, setting, cuda, expected):
    monkeypatch.setattr(arguments, "cuda_available", lambda: cuda)
    cfg = PretrainConfig()
    cfg.checkpoint.save, cfg.checkpoint.async_save = "ckpt", setting
    args = arguments.megatron_args(cfg)
    assert ("--async-save" in args) is expected
    assert ("--use-persistent-ckpt-worker" in args) is expected  # megatron drops --async-save without it
