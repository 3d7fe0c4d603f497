"""CPU dedup signatures and indexes: pixel hashes, pHash with banded LSH, MinHash LSH over shingles
(datasketch's MinHash for the signatures).

Curator's exact/fuzzy/semantic dedup import cuDF (GPU only), so near-duplicate search on a CPU
is ours. Both indexes are queried in input order and hold only kept items: the first occurrence
of a cluster survives, and the result does not depend on how the work was split.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

PHASH_BITS = 64
_PHASH_SIDE = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT = _dct_matrix(_PHASH_SIDE)


def pixel_hash(img: Image.Image) -> str:
    """Exact-duplicate key of the decoded pixels: the same picture re-saved losslessly matches.
    SHA-256 because CPUs hash it in hardware (SHA-NI): twice blake2b's speed here."""
    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:32]


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail."""
    factor = min(img.size) // (2 * _PHASH_SIDE)
    small = img.reduce(factor) if factor > 1 else img  # integer box-downscale first: half the cost
    grey = np.asarray(small.convert("L").resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.BOX), np.float32)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


class HammingLSH:
    """Banded LSH for 64-bit hashes: items within `max_distance` bits share at least one band when
    `bands > max_distance` (pigeonhole), so recall is exact; candidates are then checked exactly."""

    def __init__(self, max_distance: int, bands: int = 8):
        self.max_distance = max_distance
        self.width = PHASH_BITS // bands
        self.bands = bands
        self._tables: list[dict[int, list[int]]] = [{} for _ in range(bands)]
        self._hashes: list[int] = []
        self._ids: list = []

    def _keys(self, h: int):
        mask = (1 << self.width) - 1
        return [(h >> (i * self.width)) & mask for i in range(self.bands)]

    def query(self, h: int):
        """(id, distance) of the earliest-added item within max_distance, or None."""
        best = None
        for table, key in zip(self._tables, self._keys(h)):
            for slot in table.get(key, ()):
                if best is not None and slot >= best:
                    continue
                if (self._hashes[slot] ^ h).bit_count() <= self.max_distance:
                    best = slot
        return None if best is None else (self._ids[best], (self._hashes[best] ^ h).bit_count())

    def add(self, item_id, h: int) -> None:
        slot = len(self._hashes)
        self._hashes.append(h)
        self._ids.append(item_id)
        for table, key in zip(self._tables, self._keys(h)):
            table.setdefault(key, []).append(slot)


class TextMinHasher:
    """MinHash signatures (uint32) of character shingles, with permutations drawn once."""

    def __init__(self, num_perm: int, seed: int = 1):
        from datasketch import MinHash

        self.num_perm = num_perm
        self.seed = seed
        reference = MinHash(num_perm=num_perm, seed=seed)
        self._permutations, self.scheme = reference.permutations, reference.scheme

    def __call__(self, shingles: set[str]) -> np.ndarray:
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations, scheme=self.scheme)
        m.update_batch([s.encode("utf-8") for s in sorted(shingles)])
        return m.hashvalues.astype(np.uint32)


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising false positives plus false negatives
    of the S-curve 1 - (1 - s^rows)^bands around `threshold` (datasketch's choice, by grid)."""
    s = np.linspace(0, 1, 1001)[1:]
    best, best_cost = (1, num_perm), np.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1 - (1 - s ** rows) ** bands
            cost = p[s < threshold].sum() + (1 - p[s >= threshold]).sum()
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


class MinHashIndex:
    """Banded LSH over MinHash signatures for candidates, then the share of agreeing signature
    values as the Jaccard estimate. Plain dicts of band bytes: datasketch's MinHashLSH wraps every
    insert in object and storage layers that cost more than the signatures themselves."""

    def __init__(self, threshold: float, num_perm: int):
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self._tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self._signatures: list[np.ndarray] = []
        self._ids: list = []

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        r = self.rows
        return [signature[i * r:(i + 1) * r].tobytes() for i in range(self.bands)]

    def query(self, signature: np.ndarray):
        """(id, jaccard) of the earliest-added item at or above the threshold, or None."""
        candidates = sorted({slot for table, key in zip(self._tables, self._keys(signature))
                             for slot in table.get(key, ())})
        for slot in candidates:
            jaccard = float(np.mean(self._signatures[slot] == signature))
            if jaccard >= self.threshold:
                return self._ids[slot], jaccard
        return None

    def add(self, item_id, signature: np.ndarray) -> None:
        slot = len(self._signatures)
        self._signatures.append(signature)
        self._ids.append(item_id)
        for table, key in zip(self._tables, self._keys(signature)):
            table.setdefault(key, []).append(slot)
