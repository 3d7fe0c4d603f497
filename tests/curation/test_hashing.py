"""Dedup signatures: pHash survives re-encoding and resizing, banded LSH finds every hash within
the distance, MinHash LSH finds near-identical captions and not different ones."""
from __future__ import annotations

import io

import numpy as np
from curation_inputs import ZH_LINES, draw, encode
from PIL import Image

from nemo_twvlm.curation.hashing import HammingLSH, MinHashIndex, TextMinHasher, phash, pixel_hash
from nemo_twvlm.curation.zh import shingles


def _jpeg_roundtrip(img: Image.Image, size: int, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(img.resize((size, size)), "JPEG", quality=quality))).convert("RGB")


def test_phash_robust_and_discriminative():
    rng = np.random.default_rng(0)
    images = [draw(rng, (128, 128)) for _ in range(40)]
    for img in images[:10]:
        assert (phash(img) ^ phash(_jpeg_roundtrip(img, 96, 60))).bit_count() <= 6
    distances = [(phash(a) ^ phash(b)).bit_count() for i, a in enumerate(images) for b in images[i + 1:]]
    assert min(distances) > 6


def test_pixel_hash_is_exact():
    img = draw(np.random.default_rng(1))
    same = Image.open(io.BytesIO(encode(img, "PNG", compress_level=9))).convert("RGB")
    assert pixel_hash(img) == pixel_hash(same)
    assert pixel_hash(img) != pixel_hash(_jpeg_roundtrip(img, 64, 95))


def test_banded_lsh_recall_is_exact():
    rng = np.random.default_rng(2)
    index = HammingLSH(max_distance=6, bands=8)
    base = [int(v) for v in rng.integers(0, 2**63, 200, dtype=np.int64)]
    for i, h in enumerate(base):
        index.add(i, h)
    for i, h in enumerate(base[:50]):
        bits = rng.choice(64, size=6, replace=False)
        flipped = h ^ sum(1 << int(b) for b in bits)
        assert index.query(flipped) == (i, 6)
    assert index.query(base[3] ^ ((1 << 7) - 1)) is None  # 7 bits away from its nearest


def test_minhash_index():
    hasher = TextMinHasher(num_perm=64)
    index = MinHashIndex(threshold=0.85, num_perm=64)
    text = "".join(ZH_LINES[:3])
    index.add("a", hasher(shingles(text, 3)))
    near = hasher(shingles(text[:-1] + "吧", 3))
    assert index.query(near)[0] == "a"
    other = hasher(shingles("".join(ZH_LINES[3:6]), 3))
    assert index.query(other) is None
