"""Energon loaders for training and evaluation, shared by the CPU debug runs and the GPU clusters."""
from __future__ import annotations

from megatron.energon import WorkerConfig, get_savable_loader, get_train_dataset, get_val_dataset

from nemo_twvlm.data.task_encoder import LlavaTaskEncoder, count_and_log_skip


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
    return get_savable_loader(dataset)


def val_loader(path: str, encoder: LlavaTaskEncoder, *, micro_batch_size: int, rank: int = 0,
               world_size: int = 1, num_workers: int = 0):
    dataset = get_val_dataset(
        path,
        worker_config=worker_config(rank, world_size, num_workers, 0),
        batch_size=micro_batch_size,
        task_encoder=encoder,
    )
    return get_savable_loader(dataset)
