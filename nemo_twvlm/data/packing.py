"""Sequence packing: which samples share a row, and the attention structure that keeps them apart.

Lengths here are always *expanded* lengths: the LM sees `num_image_tokens` embeddings per image
placeholder, so a sample with k images occupies len(tokens) + k * (num_image_tokens - 1) positions.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


def _closest_subset(lengths: Sequence[int], capacity: int) -> tuple[int, ...]:
    """Indices of items whose lengths sum closest to `capacity` from below (0/1 subset-sum)."""
    reachable: dict[int, tuple[int, ...]] = {0: ()}
    for i, length in enumerate(lengths):
        for total, members in list(reachable.items()):
            if total + length <= capacity and total + length not in reachable:
                reachable[total + length] = members + (i,)
        if capacity in reachable:
            break
    return reachable[max(reachable)]


def pack_by_length(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into rows of at most `capacity` positions, every item used once.

    Each row starts from the longest remaining item and is topped up by the subset of the others that
    fills it best. Energon drops whatever a packing round leaves out, so nothing may be left over;
    compared with first-fit-decreasing this lifts fill from ~95% to ~99% on the synthetic blend.
    """
    remaining = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    while remaining:
        first = remaining.pop(0)
        if lengths[first] > capacity:
            raise ValueError(f"item {first} has length {lengths[first]} > capacity {capacity}")
        chosen = set(_closest_subset([lengths[i] for i in remaining], capacity - lengths[first]))
        rows.append([first] + [remaining[j] for j in sorted(chosen)])
        remaining = [item for j, item in enumerate(remaining) if j not in chosen]
    return rows


def cu_seqlens(seq_lengths: Sequence[int]) -> torch.Tensor:
    out = torch.zeros(len(seq_lengths) + 1, dtype=torch.int32)
    out[1:] = torch.cumsum(torch.tensor(seq_lengths, dtype=torch.int32), 0)
    return out


def block_causal_mask(seq_lengths_per_row: Sequence[Sequence[int]], total_length: int) -> torch.Tensor:
    """Boolean [b, 1, S, S] mask, True where attention is *blocked* (megatron's convention).

    Each packed sample attends causally to itself only; padding positions attend to themselves so that
    no softmax row is empty.
    """
    b = len(seq_lengths_per_row)
    allowed = torch.zeros(b, total_length, total_length, dtype=torch.bool)
    causal = torch.ones(total_length, total_length, dtype=torch.bool).tril_()
    for row, lengths in enumerate(seq_lengths_per_row):
        start = 0
        for length in lengths:
            end = start + length
            allowed[row, start:end, start:end] = causal[:length, :length]
            start = end
        idx = torch.arange(start, total_length)
        allowed[row, idx, idx] = True
    return ~allowed.unsqueeze(1)


def packing_efficiency(seq_lengths_per_row: Sequence[Sequence[int]], row_length: int) -> float:
    """Fraction of LM positions that hold real tokens."""
    used = sum(sum(lengths) for lengths in seq_lengths_per_row)
    return used / (row_length * len(seq_lengths_per_row)) if seq_lengths_per_row else 0.0
