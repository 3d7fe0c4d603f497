"""Per-step numbers megatron.training does not log for a VLM, written through its own writers.

Megatron logs losses, learning rate and grad norm to `get_tensorboard_writer()` / `get_wandb_writer()`
itself (`--tensorboard-dir`, `--wandb-project`); its TFLOP/s formula is text-only. `StepTelemetry`
adds, per iteration: tokens/s, per-GPU model TFLOP/s from the VLM FLOPs of model.flops (the planner's too) (ViT + projector +
LM on the batch's real images and text), image vs text tokens, packing fill and data-loader wait.

The forward step records each micro-batch; an iteration is written when the next one starts, so its
time covers forward, backward and the optimizer step (in-training evaluation is subtracted, checkpoint
saves are not). Counts are this rank's times the data-parallel size: replicas see equally sized batches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from nemo_twvlm.model.flops import training_flops
from nemo_twvlm.presets import ModelPreset


def log_scalars(scalars: dict[str, float], iteration: int) -> None:
    """Write to megatron's TensorBoard and W&B writers (they exist on the last rank only)."""
    from megatron.training.global_vars import get_tensorboard_writer, get_wandb_writer

    writer, wandb_writer = get_tensorboard_writer(), get_wandb_writer()
    if writer is not None:
        for name, value in scalars.items():
            writer.add_scalar(name, value, iteration)
        writer.flush()
    # Megatron finishes the W&B run as training ends; a last write after that would raise.
    if wandb_writer is not None and wandb_writer.run is not None:
        wandb_writer.log(dict(scalars), step=iteration)


@dataclass
class _Window:
    iteration: int
    start: float
    images: int = 0
    image_tokens: int = 0
    text_tokens: int = 0
    positions: int = 0
    capacity: int = 0
    loader_wait: float = 0.0
    excluded: float = 0.0


@dataclass
class StepTelemetry:
    preset: ModelPreset
    seq_length: int
    train_vision: bool
    data_parallel: int
    world_size: int
    write: Callable[[dict[str, float], int], None] = log_scalars
    _window: _Window | None = field(default=None, init=False)

    def record(self, iteration: int, batch, loader_wait: float) -> None:
        """One micro-batch (a LlavaBatch) of `iteration`, fetched in `loader_wait` seconds."""
        now = time.perf_counter()
        if self._window is None or self._window.iteration != iteration:
            self.flush(now)
            self._window = _Window(iteration, now - loader_wait)
        w = self._window
        images = int(batch.images.shape[0]) if batch.images is not None else 0
        positions = sum(sum(row) for row in batch.seq_lengths)
        w.images += images
        w.image_tokens += images * self.preset.num_image_tokens
        w.text_tokens += positions - images * self.preset.num_image_tokens
        w.positions += positions
        w.capacity += len(batch.seq_lengths) * self.seq_length
        w.loader_wait += loader_wait

    def exclude(self, seconds: float) -> None:
        """Time spent inside the window on something that is not training (an evaluation)."""
        if self._window is not None:
            self._window.excluded += seconds

    def flush(self, now: float | None = None) -> dict[str, float] | None:
        """Write the open iteration's numbers and close it; returns them (None if nothing was open)."""
        w, self._window = self._window, None
        if w is None:
            return None
        elapsed = max((now or time.perf_counter()) - w.start - w.excluded, 1e-9)
        dp = self.data_parallel
        flops = dp * training_flops(self.preset, images=w.images, text_tokens=w.text_tokens,
                                    seq_length=self.seq_length, train_vision=self.train_vision)
        scalars = {
            "tokens-per-second": dp * w.positions / elapsed,
            "tokens-per-second-per-gpu": dp * w.positions / elapsed / self.world_size,
            "model-tflops-per-gpu": flops / elapsed / self.world_size / 1e12,
            "image-tokens": float(dp * w.image_tokens),
            "text-tokens": float(dp * w.text_tokens),
            "packing-fill": w.positions / w.capacity if w.capacity else 0.0,
            "loader-wait-seconds": w.loader_wait,
        }
        self.write(scalars, w.iteration + 1)  # megatron logs step i's loss at iteration i + 1
        return scalars
