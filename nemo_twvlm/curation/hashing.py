"""CPU dedup signatures and indexes: pixel hashes, pHash (searched by near_dup_search.MultiHashIndex;
the banded `HammingLSH` here is its reference), MinHash LSH over shingles (datasketch's MinHash
scheme, computed a batch at a time).

Curator's exact/fuzzy/semantic dedup import cuDF (GPU only), so near-duplicate search on a CPU
is ours. Both indexes are queried in input order and hold only kept items: the first occurrence
of a cluster survives, and the result does not depend on how the work was split.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np
import xxhash
from PIL import Image

PHASH_BITS = 64
# How each dedup signature is computed: part of the rerun fingerprint, so parts signed otherwise are redone.
SIGNATURES = {"pixel_hash": "xxh3_128(mode, size, RGB bytes)", "content_sha": "blake2b-128",
              "phash": "dct32-8x8-median", "minhash": "datasketch-sha1"}
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
    XXH3-128, not a cryptographic hash: the key only has to tell pictures apart (an accidental
    collision among 5e7 keys has odds ~1e-23), and it runs at 40x SHA-256's speed here, where
    SHA-256 took 0.09 ms of a 256 px pair's ~0.7 ms."""
    h = xxhash.xxh3_128(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def content_key(image_keys: Sequence[str], text: str) -> str:
    """Exact-duplicate key of a sample: its images' pixel hashes and its normalised text together."""
    return hashlib.blake2b("\x1f".join([*image_keys, text]).encode("utf-8"), digest_size=16).hexdigest()


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail
    (above or below their median)."""
    return phashes([phash_thumbnail(img)])[0]


def phash_thumbnail(img: Image.Image) -> Image.Image:
    """The 32x32 grey thumbnail `phash` transforms: Pillow's work, best done while the image's
    pixels are still in cache from the pixel hash (taken a batch later, it took 1.7x as long here)."""
    factor = min(img.size) // (2 * _PHASH_SIDE)
    small = img.reduce(factor) if factor > 1 else img  # integer box-downscale first: half the cost
    return small.convert("L").resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.BOX)


def phashes(thumbnails: Sequence[Image.Image]) -> list[int]:
    """`phash` of each image, from its `phash_thumbnail`: the DCT, median and bit packing run once for
    the whole batch; per image, those small numpy calls cost as much as the thumbnail."""
    if not thumbnails:
        return []
    grey = np.frombuffer(b"".join(t.tobytes() for t in thumbnails), np.uint8)
    grey = grey.reshape(len(thumbnails), _PHASH_SIDE, _PHASH_SIDE).astype(np.float32)
    low = (_DCT @ grey @ _DCT.T)[:, :8, :8].reshape(len(thumbnails), PHASH_BITS)
    bits = np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)
    return [int.from_bytes(row.tobytes(), "big") for row in bits]


class HammingLSH:
    """Banded LSH for 64-bit hashes: items within `max_distance` bits share at least one band when
    `bands > max_distance` (pigeonhole), so recall is exact; candidates are then checked exactly.
    No stage uses it any more (its candidates grow as n/32 per query): it stays as the reference that
    tests/curation/test_near_dup_search.py and scripts/bench_dedup_scale.py compare MultiHashIndex with."""

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

    def query_all(self, h: int) -> list:
        """(id, distance) of every item within max_distance, earliest-added first."""
        slots = {slot for table, key in zip(self._tables, self._keys(h)) for slot in table.get(key, ())
                 if (self._hashes[slot] ^ h).bit_count() <= self.max_distance}
        return [(self._ids[slot], (self._hashes[slot] ^ h).bit_count()) for slot in sorted(slots)]

    def add(self, item_id, h: int) -> None:
        slot = len(self._hashes)
        self._hashes.append(h)
        self._ids.append(item_id)
        for table, key in zip(self._tables, self._keys(h)):
            table.setdefault(key, []).append(slot)


# MurmurHash3's 32-bit finalizer, which datasketch's affine32 scheme applies to every input hash.
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Shingles per vectorised step: bounds its (shingles x num_perm) uint32 temporaries to ~16 MB.
_CHUNK_SHINGLES = 1 << 16


class TextMinHasher:
    """MinHash signatures (uint32) of character shingles, equal to datasketch's `MinHash` (scheme
    affine32: SHA-1's first 4 bytes, the Murmur finalizer, then a*h+b mod 2^32 per permutation, whose
    a and b datasketch draws from the seed). Computed a batch at a time: per caption, datasketch's
    object and a dozen tiny numpy calls cost more than the hashing, and a shingle that several
    captions share is hashed once."""

    def __init__(self, num_perm: int, seed: int = 1):
        from datasketch import MinHash

        self.num_perm = num_perm
        self.seed = seed
        self._a, self._b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations

    def __call__(self, shingles: Iterable[str]) -> np.ndarray:
        return self.many([shingles])[0]

    def many(self, shingle_sets: Sequence[Iterable[str]]) -> list[np.ndarray]:
        """One signature per set; an empty set's is all 2^32-1, as datasketch's is."""
        sets = [list(s) for s in shingle_sets]
        signatures: list[np.ndarray] = []
        start = total = 0
        for end, grams in enumerate(sets, 1):
            total += len(grams)
            if total >= _CHUNK_SHINGLES or end == len(sets):
                signatures += self._chunk(sets[start:end])
                start, total = end, 0
        return signatures

    def _chunk(self, sets: list[list[str]]) -> list[np.ndarray]:
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(s, len(vocab)) for s in grams] for grams in sets]
        digests = b"".join(hashlib.sha1(s.encode("utf-8")).digest()[:4] for s in vocab)
        h = np.frombuffer(digests, "<u4").astype(np.uint32)
        s1, m1, s2, m2, s3 = _FMIX32
        h ^= h >> s1
        h *= m1
        h ^= h >> s2
        h *= m2
        h ^= h >> s3
        permuted = h[:, None] * self._a + self._b  # uint32 arithmetic wraps: that is the mod 2^32
        sizes = np.array([len(i) for i in ids])
        starts = np.cumsum(sizes) - sizes
        filled = sizes > 0
        out = np.full((len(sets), self.num_perm), np.iinfo(np.uint32).max, np.uint32)
        if filled.any():  # reduceat over the non-empty sets' runs (an empty set's run has no rows)
            flat = np.fromiter(chain.from_iterable(ids), np.intp, int(sizes.sum()))
            out[filled] = np.minimum.reduceat(permuted[flat], starts[filled], axis=0)
        return list(out)


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
