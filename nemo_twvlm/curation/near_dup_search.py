"""Exact near-duplicate search over 64-bit pHashes whose cost per query stays flat as the index grows:
FAISS's binary multi-index hashing (`faiss.IndexBinaryMultiHash`) in place of `hashing.HammingLSH`.

Same contract as `HammingLSH` (`query`, `query_all`, `add`), same decisions: the index holds only
kept codes, in the order they were kept, and `query` returns the earliest-kept code within
`max_distance` bits. A dense cluster of k near-duplicates therefore costs k queries that each find
its one kept representative, never k^2 candidate pairs.

Why multi-index hashing, and which layout. The code is cut into `nhash` substrings of `bits` bits; a
code within r bits differs in at most r // nhash bits of one substring (pigeonhole), so probing every
substring with up to `nflip = r // nhash` bits flipped finds every match: recall is exact, and FAISS
then checks each candidate's full distance. A query costs its probes plus the codes sharing a probed
bucket, about n * probes / 2^bits. `HammingLSH`'s 8 bands of 8 bits make that n/32 candidates (the
quadratic growth). Two substrings of 32 bits (nflip 3 at r = 6: 10,978 probes) keep buckets nearly
empty up to ~10^9 codes (FLAT): measured, a decision costs 1.3 ms at 10^6 codes and 1.2 ms at
5*10^6 (one loaded core), though 0.5 ms at 10^5, while its hash tables still fit in cache. Four of
16 bits (68 probes, SMALL) is 5x cheaper at 10^5 but grows linearly (1.7 ms at 5*10^6); `layout_for`
picks by the expected number of codes. BENCHMARKS.md (dedup at scale) has the measurements.

Kept codes are buffered (`pending`, checked by numpy XOR-popcount) and added to FAISS a block at a
time; `lookahead` searches a block of upcoming codes in one FAISS call (FAISS spreads it over the
cores). Both are only speed: any call order gives the same answers.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nemo_twvlm.curation.hashing import PHASH_BITS


@dataclass(frozen=True)
class Layout:
    nhash: int
    bits: int

    def nflip(self, radius: int) -> int:
        return radius // self.nhash

    def probes(self, radius: int) -> int:
        from math import comb

        return self.nhash * sum(comb(self.bits, k) for k in range(self.nflip(radius) + 1))


FLAT = Layout(nhash=2, bits=32)
SMALL = Layout(nhash=4, bits=16)
# Where FLAT's constant probe cost beats SMALL's growing candidate lists, measured at radius 6
# (BENCHMARKS.md, dedup at scale): SMALL is 5x cheaper at 10^5 codes, 3x at 10^6, 1.5x dearer at 5*10^6.
FLAT_ABOVE = 3_000_000


def layout_for(expected: int | None) -> Layout:
    return FLAT if expected is None or expected > FLAT_ABOVE else SMALL


def codes_array(hashes: Sequence[int]) -> np.ndarray:
    """64-bit hashes (Python ints, as signatures carry them) -> uint64 array."""
    return np.fromiter(hashes, np.uint64, len(hashes))


class MultiHashIndex:
    """Kept 64-bit codes; `query(h)` -> (id, distance) of the earliest-kept code within `max_distance`."""

    def __init__(self, max_distance: int, expected: int | None = None, layout: Layout | None = None,
                 block: int = 4096):
        import faiss

        if not 0 <= max_distance < PHASH_BITS:
            raise ValueError(f"max_distance={max_distance}; expected 0 <= max_distance < {PHASH_BITS}")
        self.max_distance = max_distance
        self.layout = layout or layout_for(expected)
        self._faiss = faiss.IndexBinaryMultiHash(PHASH_BITS, self.layout.nhash, self.layout.bits)
        self._faiss.nflip = self.layout.nflip(max_distance)
        self._block = block
        self._ids: list = []
        self._pending = np.empty(block, np.uint64)
        self._npending = 0
        self._ahead: dict[int, list[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id, h: int) -> None:
        if self._npending == self._block:
            self._flush()
        self._pending[self._npending] = h
        self._npending += 1
        self._ids.append(item_id)

    def query(self, h: int):
        """(id, distance) of the earliest-kept code within max_distance, or None."""
        hits = self._hits(h, first=True)
        return (self._ids[hits[0][0]], hits[0][1]) if hits else None

    def query_all(self, h: int) -> list:
        """(id, distance) of every kept code within max_distance, earliest-kept first."""
        return [(self._ids[slot], dist) for slot, dist in self._hits(h, first=False)]

    def lookahead(self, hashes: Sequence[int]) -> None:
        """Search these upcoming codes against everything kept so far in one FAISS call; codes kept
        from now on are still checked (in `pending`) when these are queried."""
        self._flush()
        codes = np.unique(codes_array(hashes))
        self._ahead = dict(zip(codes.tolist(), self._search(codes)))

    def _hits(self, h: int, first: bool) -> list[tuple[int, int]]:
        indexed = self._ahead.get(h)
        if indexed is None:
            indexed = self._search(np.array([h], np.uint64))[0]
        if first and indexed:
            return indexed[:1]  # every pending code was kept later than every indexed one
        n = self._npending
        dist = np.bitwise_count(self._pending[:n] ^ np.uint64(h))
        near = np.flatnonzero(dist <= self.max_distance)
        if first:
            near = near[:1]
        offset = self._faiss.ntotal
        return indexed + [(offset + int(j), int(dist[j])) for j in near]

    def _search(self, codes: np.ndarray) -> list[list[tuple[int, int]]]:
        if self._faiss.ntotal == 0:
            return [[] for _ in codes]
        lims, dist, slots = self._faiss.range_search(codes.view(np.uint8).reshape(-1, 8),
                                                     self.max_distance + 1)  # FAISS keeps d < radius
        lims = lims.astype(np.int64)  # FAISS gives uint64, which mixed with int64 indexes as float
        out = []
        for q in range(len(codes)):
            s, d = slots[lims[q]:lims[q + 1]], dist[lims[q]:lims[q + 1]]
            order = np.argsort(s, kind="stable")
            out.append(list(zip(s[order].tolist(), d[order].astype(np.int64).tolist())))
        return out

    def _flush(self) -> None:
        # FAISS numbers codes in the order added, so a FAISS id is the slot in self._ids.
        if self._npending:
            self._faiss.add(self._pending[:self._npending].view(np.uint8).reshape(-1, 8))
            self._npending = 0
        self._ahead = {}


def first_kept_within(hashes: Sequence[int], max_distance: int, layout: Layout | None = None,
                      block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Image-only dedup of codes visited in order: (dup_of, distance) per code, dup_of = -1 for a kept
    code, else the position of the earliest-kept code within max_distance (what DedupStage keeps when
    only the image relation is on)."""
    codes = codes_array(hashes)
    index = MultiHashIndex(max_distance, expected=len(codes), layout=layout, block=block)
    dup_of = np.full(len(codes), -1, np.int64)
    dist = np.zeros(len(codes), np.int64)
    values = codes.tolist()
    for start in range(0, len(codes), block):
        index.lookahead(values[start:start + block])
        for i in range(start, min(start + block, len(codes))):
            hit = index.query(values[i])
            if hit is None:
                index.add(i, values[i])
            else:
                dup_of[i], dist[i] = hit
    return dup_of, dist


def first_kept_within_exhaustive(hashes: Sequence[int], max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """The same decisions by comparing each code with every kept code: the reference for tests."""
    codes = codes_array(hashes)
    kept = np.empty(len(codes), np.uint64)
    kept_at = np.empty(len(codes), np.int64)
    nkept = 0
    dup_of = np.full(len(codes), -1, np.int64)
    dist = np.zeros(len(codes), np.int64)
    for i, h in enumerate(codes):
        d = np.bitwise_count(kept[:nkept] ^ h)
        near = np.flatnonzero(d <= max_distance)
        if len(near):
            dup_of[i], dist[i] = kept_at[near[0]], d[near[0]]
        else:
            kept[nkept], kept_at[nkept] = h, i
            nkept += 1
    return dup_of, dist


def synthetic_codes(n: int, max_distance: int, seed: int = 0, clustered: float = 0.2,
                    cluster_sizes: tuple[int, int] = (2, 5000)) -> np.ndarray:
    """Web-like pHashes for benchmarks and tests: uniform random codes, plus a `clustered` share in
    clusters of 2-5,000 (log-uniform sizes) whose members lie within max_distance bits of the
    cluster's centre (so members are up to twice that apart), in shuffled order."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    lo, hi = np.log(cluster_sizes[0]), np.log(cluster_sizes[1] + 1)
    while sum(sizes) < clustered * n:
        sizes.append(int(np.exp(rng.uniform(lo, hi))))
    sizes[-1] -= max(0, sum(sizes) - int(clustered * n))
    codes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    at = 0
    for size in sizes:
        # Up to max_distance random bits flipped per member (a position drawn twice cancels: fewer).
        positions = rng.integers(0, PHASH_BITS, size=(size, max_distance), dtype=np.uint64)
        used = np.arange(max_distance) < rng.integers(0, max_distance + 1, size=(size, 1))
        flips = np.where(used, np.left_shift(np.uint64(1), positions), np.uint64(0))
        codes[at:at + size] = codes[at] ^ np.bitwise_xor.reduce(flips, axis=1)
        at += size
    return rng.permutation(codes)
