"""Energon loaders for training and evaluation, shared by the CPU debug runs and the GPU clusters.

Bad samples are skipped and counted (task_encoder.count_and_log_skip). When none can be used, the loader
says so, "no usable samples in DIR (N skipped: reasons)", instead of Energon's FatalSampleError (100
failures in a row) or, for a validation split, an empty pass.
"""
from __future__ import annotations

from collections import Counter

from megatron.energon import WorkerConfig, get_savable_loader, get_train_dataset, get_val_dataset
from megatron.energon.errors import FatalSampleError

from nemo_twvlm.data.task_encoder import SKIPPED, LlavaTaskEncoder, count_and_log_skip


class NoUsableSamples(ValueError):
    """A dataset (or a long run of it) from which no sample could be used; the message counts the reasons."""


class CheckedLoader:
    """An Energon savable loader (its state methods pass through) that names the dataset and the skip
    reasons when no batch can be made from it."""

    def __init__(self, loader, path: str):
        self.loader, self.path = loader, path

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        before, batches = Counter(SKIPPED), 0
        try:
            for batch in self.loader:
                batches += 1
                yield batch
        except FatalSampleError:
            raise NoUsableSamples(self._message(before, batches)) from None
        if batches == 0:
            raise NoUsableSamples(self._message(before, batches))

    def _message(self, before: Counter, batches: int) -> str:
        skipped = Counter(SKIPPED)
        skipped.subtract(before)
        reasons = ", ".join(f"{reason} {n}" for reason, n in skipped.most_common() if n > 0)
        counts = f"{skipped.total()} skipped: {reasons}" if reasons else "skips counted in the loader workers' logs"
        if batches == 0:
            return f"no usable samples in {self.path} ({counts})"
        return f"{self.path}: 100 samples in a row unusable after {batches} good batches ({counts})"


def worker_config(rank: int, world_size: int, num_workers: int, seed: int) -> WorkerConfig:
    return WorkerConfig(rank=rank, world_size=world_size, num_workers=num_workers, seed_offset=seed,
                        global_error_handler=count_and_log_skip)


def train_loader(path: str, encoder: LlavaTaskEncoder, *, micro_batch_size: int, packing: bool,
                 packing_buffer_size: int, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 seed: int = 1234):
    """A savable (checkpointable) infinite loader over `path` (dataset dir or blend metadataset)."""
    dataset = get_train_dataset(
        path,
        worker_config=worker_config(rank, world_size, num_workers, seed),
        batch_size=micro_batch_size,
        shuffle_buffer_size=256,
        max_samples_per_sequence=64,
        packing_buffer_size=packing_buffer_size if packing else None,
        task_encoder=encoder,
    )
    return CheckedLoader(get_savable_loader(dataset), path)


def val_loader(path: str, encoder: LlavaTaskEncoder, *, micro_batch_size: int, rank: int = 0,
               world_size: int = 1, num_workers: int = 0):
    dataset = get_val_dataset(
        path,
        worker_config=worker_config(rank, world_size, num_workers, 0),
        batch_size=micro_batch_size,
        task_encoder=encoder,
    )
    return CheckedLoader(get_savable_loader(dataset), path)
