"""Narrow fixes to megatron.training for this project's use of it (not CPU-specific)."""
from __future__ import annotations

import functools


def apply_megatron_fixes() -> None:
    """Idempotent; call before megatron.training.pretrain."""
    from megatron.training import checkpointing

    if getattr(checkpointing.maybe_save_dataloader_state, "_twvlm_fixed", False):
        return
    original = checkpointing.maybe_save_dataloader_state

    # With virtual pipeline stages megatron hands over one train iterator per model chunk and its
    # dataloader-state save expects a single one. Every chunk's loader is built from the same state
    # and advances once per micro-batch, so the first chunk's state is the rank's state.
    @functools.wraps(original)
    def save_first_chunk_state(train_iterator, *args, **kwargs):
        if isinstance(train_iterator, (list, tuple)):
            train_iterator = train_iterator[0]
        return original(train_iterator, *args, **kwargs)

    save_first_chunk_state._twvlm_fixed = True
    checkpointing.maybe_save_dataloader_state = save_first_chunk_state
