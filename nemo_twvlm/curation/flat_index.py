"""The pieces near_dup_search.MultiHashIndex looks pHash substrings up with, built so that a lookup
costs the same whether 10^5 or 10^8 codes are kept: the property the seed's 50M-pair dedup needs and
hash tables lack.

- `KeyBitmap`: one bit per 32-bit key, 512 MiB of anonymous memory that the kernel hands out a page
  at a time as bits are set (reads of untouched pages cost no memory). A probe is one read at a
  random place in the same 512 MiB at any fill, so its cost does not rise as the index outgrows the
  caches; almost every probe of a web-scale dedup misses, and a miss ends there.
- `SortedRuns`: 64-bit key -> slot pairs kept in two sorted runs, a large one and a recent one that
  is merged into it once it passes an eighth of its size (so each pair is re-sorted O(1) times on
  average); looked up with binary search, only for the probes the bitmap let through.

- `Growable`: the kept codes by slot.

Why not a hash table (FAISS's `IndexBinaryMultiHash`, which the pHash search used before): each probe
chases pointers through tables that fit in cache at 10^5 codes and not at 10^6, so the cost per
decision rose 2.6x over that range (BENCHMARKS.md, dedup at scale).
"""
from __future__ import annotations

import mmap

import numpy as np

_WORD_BITS = 32


class KeyBitmap:
    """Which 32-bit keys were set: `test` is one memory read per key, at any fill."""

    def __init__(self) -> None:
        # A private anonymous map rather than np.zeros: numpy asks for transparent huge pages on large
        # arrays, and a 2 MiB page per set bit would make a small index cost the whole 512 MiB; private,
        # because reading an untouched page of a shared map allocates it.
        self._map = mmap.mmap(-1, (1 << 32) // 8, flags=mmap.MAP_PRIVATE)
        self._words = np.frombuffer(self._map, np.uint32)

    def set(self, keys: np.ndarray) -> None:
        keys = keys.astype(np.uint32, copy=False)
        np.bitwise_or.at(self._words, (keys >> 5).astype(np.intp), np.left_shift(np.uint32(1), keys & 31))

    def test(self, keys: np.ndarray) -> np.ndarray:
        """Boolean array: which keys (uint32, any shape) are set."""
        words = np.take(self._words, (keys >> 5).astype(np.intp))
        np.right_shift(words, keys & 31, out=words)
        return np.bitwise_and(words, 1, out=words).astype(bool)


class SortedRuns:
    """uint64 key -> int64 slot pairs (a key may have several slots), added in batches."""

    def __init__(self) -> None:
        empty = (np.empty(0, np.uint64), np.empty(0, np.int64))
        self._large, self._recent = empty, empty

    def __len__(self) -> int:
        return len(self._large[0]) + len(self._recent[0])

    def extend(self, keys: np.ndarray, slots: np.ndarray) -> None:
        self._recent = _merged(self._recent, (keys.astype(np.uint64, copy=False), slots.astype(np.int64)))
        if len(self._recent[0]) > max(1 << 16, len(self._large[0]) // 8):
            self._large = _merged(self._large, self._recent)
            self._recent = (np.empty(0, np.uint64), np.empty(0, np.int64))

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which, slot) for every stored pair whose key equals keys[which]."""
        found = [_find(run, keys) for run in (self._large, self._recent)]
        return np.concatenate([w for w, _ in found]), np.concatenate([s for _, s in found])


def _merged(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keys, slots = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    order = np.argsort(keys, kind="stable")
    return keys[order], slots[order]


def _find(run: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.searchsorted(run[0], keys, "left")
    counts = np.searchsorted(run[0], keys, "right") - lo
    which = np.repeat(np.arange(len(keys)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)  # each match's run position, vectorised
    return which, run[1][starts + np.arange(len(which))]


class Growable:
    """Rows appended in blocks, read by slot: a numpy array that doubles its capacity."""

    def __init__(self, row_shape: tuple[int, ...], dtype) -> None:
        self._rows = np.empty((1024, *row_shape), dtype)
        self.size = 0

    def extend(self, rows: np.ndarray) -> None:
        if self.size + len(rows) > len(self._rows):
            grown = np.empty((max(2 * len(self._rows), self.size + len(rows)), *self._rows.shape[1:]), self._rows.dtype)
            grown[:self.size] = self._rows[:self.size]
            self._rows = grown
        self._rows[self.size:self.size + len(rows)] = rows
        self.size += len(rows)

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        return self._rows[slots]
