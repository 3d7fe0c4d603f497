"""Exact near-duplicate search over 64-bit pHashes whose cost per decision stays flat as the kept set
grows: what `DedupStage` and the sharded dedup's large buckets search images with.

Same contract as `hashing.HammingLSH` (`query`, `query_all`, `add`), same decisions: the index holds
only kept codes, in the order they were kept, and `query` returns the earliest-kept code within
`max_distance` bits. A dense cluster of k near-duplicates therefore costs k queries that each find its
one kept representative, never k^2 candidate pairs.

Multi-index hashing, the layout FAISS's `IndexBinaryMultiHash` calls 2 x 32 bits: a code within r bits
of another differs in at most r // 2 bits of one of its two 32-bit halves (pigeonhole), so probing each
half with every mask of up to r // 2 bits (5,489 per half at r = 6) finds every match; each candidate's
full distance is then checked. With 32-bit keys the probed buckets stay nearly empty up to ~10^9 codes,
so a decision is its probes. Where the probes land is what keeps that flat: a bitmap over all 2^32 half
values (`flat_index.KeyBitmap`, one random read per probe at any fill), and only the few probes it
lets through go on to the sorted (half, slot) runs. FAISS keeps the same layout in hash tables, whose
probes cost 2.6x more at 10^6 codes than at 10^5 as they fell out of cache (BENCHMARKS.md, dedup at
scale, has both measured). Below SCAN_BELOW kept codes a query compares with all of them instead,
which is cheaper than its probes there. Memory: up to 1 GiB for the two bitmaps (touched a page at a
time, so a small index costs little), plus 32 bytes per kept code.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import combinations

import numpy as np

from nemo_twvlm.curation.flat_index import Growable, KeyBitmap, SortedRuns
from nemo_twvlm.curation.hashing import PHASH_BITS

_HALF = 32
_HALF_MASK = np.uint64((1 << _HALF) - 1)
_CHUNK = 64  # queries probed at once: bounds the (queries x masks) temporaries to a few MB
# Below this many kept codes a query compares with every one (XOR-popcount) instead of probing: the
# probes cost ~200 us at any size, a scan ~8 ns per kept code (BENCHMARKS.md 5b).
SCAN_BELOW = 20_000
_SCAN_CELLS = 1 << 22  # (queries x kept codes) compared at once: 32 MB of XOR temporaries


def flip_masks(bits: int, flips: int) -> np.ndarray:
    """Every `bits`-bit mask with at most `flips` bits set (0 first)."""
    masks = [sum(1 << b for b in chosen) for k in range(flips + 1) for chosen in combinations(range(bits), k)]
    return np.array(masks, np.uint32)


def codes_array(hashes: Sequence[int]) -> np.ndarray:
    """64-bit hashes (Python ints, as signatures carry them) -> uint64 array."""
    return np.fromiter(hashes, np.uint64, len(hashes))


class MultiHashIndex:
    """Kept 64-bit codes; `query(h)` -> (id, distance) of the earliest-kept code within `max_distance`.

    Kept codes wait in a small `pending` block (checked by numpy XOR-popcount) and move into the
    bitmaps and runs a block at a time; `lookahead` searches a block of upcoming codes in one
    vectorised pass, since per-code numpy calls would cost more than the search. Both are only speed:
    any order of calls gives the same answers."""

    def __init__(self, max_distance: int, block: int = 4096, threads: int | None = None):
        if not 0 <= max_distance < PHASH_BITS:
            raise ValueError(f"max_distance={max_distance}; expected 0 <= max_distance < {PHASH_BITS}")
        self.max_distance = max_distance
        # A lookahead block's chunks are probed in parallel (numpy releases the GIL in these calls), as
        # FAISS's OpenMP search was: the fan-in dedup runs alone once every part is analysed.
        self._threads = threads or len(os.sched_getaffinity(0))
        self._masks = flip_masks(_HALF, max_distance // 2)
        self._halves = [(KeyBitmap(), SortedRuns()) for _ in range(PHASH_BITS // _HALF)]
        self._codes = Growable((), np.uint64)
        self._ids: list = []
        self._block = block
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
        """Search these upcoming codes against everything kept so far in one pass; codes kept from
        now on are still checked (in pending) when these are queried."""
        self._flush()
        codes = list(dict.fromkeys(hashes))
        self._ahead = dict(zip(codes, self._search(codes) if self._codes.size and codes else [[] for _ in codes]))

    def _hits(self, h: int, first: bool) -> list[tuple[int, int]]:
        indexed = self._ahead.get(h)
        if indexed is None:
            indexed = self._search([h])[0] if self._codes.size else []
        if first and indexed:
            return indexed[:1]  # every pending code was kept later than every indexed one
        dist = np.bitwise_count(self._pending[:self._npending] ^ np.uint64(h))
        near = np.flatnonzero(dist <= self.max_distance)
        if first:
            near = near[:1]
        return indexed + [(self._codes.size + int(j), int(dist[j])) for j in near]

    def _flush(self) -> None:
        if self._npending:
            codes = self._pending[:self._npending]
            slots = np.arange(self._codes.size, self._codes.size + self._npending)
            for shift, (bitmap, runs) in zip(range(0, PHASH_BITS, _HALF), self._halves):
                half = (codes >> np.uint64(shift)) & _HALF_MASK
                bitmap.set(half)
                runs.extend(half, slots)
            self._codes.extend(codes)
            self._npending = 0
        self._ahead = {}

    def _search(self, hashes: list[int]) -> list[list[tuple[int, int]]]:
        codes = codes_array(hashes)
        if self._codes.size < SCAN_BELOW:
            chunk = max(1, min(_CHUNK, _SCAN_CELLS // self._codes.size))
            probe = partial(self._scan, codes, chunk)
        else:
            chunk, probe = _CHUNK, partial(self._probe, codes)
        starts = range(0, len(codes), chunk)
        if self._threads > 1 and len(starts) > 1:
            # A pool per block, not per index: no idle threads outlive it into a later fork (Ray, multiprocessing).
            with ThreadPoolExecutor(min(self._threads, len(starts)), thread_name_prefix="phash-probe") as pool:
                found = list(pool.map(probe, starts))
        else:
            found = list(map(probe, starts))
        which, slots = np.concatenate([w for w, _ in found]), np.concatenate([s for _, s in found])
        # A code may match through both halves: one entry per (query, slot), in that order.
        pairs = np.unique(which << 40 | slots)
        which, slots = pairs >> 40, pairs & ((1 << 40) - 1)
        dist = np.bitwise_count(self._codes[slots] ^ codes[which]).astype(np.int64)
        return _split_by_query(which, slots, dist, len(codes))

    def _scan(self, codes: np.ndarray, chunk: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """What `_probe` finds, by comparing codes[start:start + chunk] with every kept code."""
        dist = np.bitwise_count(codes[start:start + chunk, None] ^ self._codes[:self._codes.size][None, :])
        which, slots = np.nonzero(dist <= self.max_distance)
        return which + start, slots

    def _probe(self, codes: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(query, slot) of the kept codes within max_distance of codes[start:start + _CHUNK]."""
        chunk = codes[start:start + _CHUNK]
        which, slots = [], []
        for shift, (bitmap, runs) in zip(range(0, PHASH_BITS, _HALF), self._halves):
            half = ((chunk >> np.uint64(shift)) & _HALF_MASK).astype(np.uint32)
            probes = half[:, None] ^ self._masks[None, :]
            query, mask = np.nonzero(bitmap.test(probes))
            hit, slot = runs.find(probes[query, mask].astype(np.uint64))
            which.append(query[hit] + start)
            slots.append(slot)
        which, slots = np.concatenate(which), np.concatenate(slots)
        near = np.bitwise_count(self._codes[slots] ^ codes[which]) <= self.max_distance
        return which[near], slots[near]


def _split_by_query(which: np.ndarray, slots: np.ndarray, dist: np.ndarray, queries: int) -> list[list]:
    """[(slot, distance), ...] per query from matches sorted by (which, slot)."""
    bounds = np.searchsorted(which, np.arange(queries + 1))
    pairs = list(zip(slots.tolist(), dist.tolist()))
    return [pairs[bounds[q]:bounds[q + 1]] for q in range(queries)]


def first_kept_within(hashes: Sequence[int], max_distance: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Image-only dedup of codes visited in order: (dup_of, distance) per code, dup_of = -1 for a kept
    code, else the position of the earliest-kept code within max_distance (what DedupStage keeps when
    only the image relation is on)."""
    codes = codes_array(hashes)
    index = MultiHashIndex(max_distance, block=block)
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
