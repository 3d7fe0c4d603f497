"""Dedup signatures: pHash survives re-encoding and resizing, banded LSH finds every hash within
the distance, MinHash LSH finds near-identical captions and not different ones; the batched pHash
and MinHash equal the per-sample computations they replaced, bit for bit."""
from __future__ import annotations

import io

import numpy as np
from curation_inputs import ZH_LINES, draw, encode
from datasketch import MinHash
from PIL import Image

from nemo_twvlm.curation import hashing
from nemo_twvlm.curation.hashing import (
    HammingLSH,
    MinHashIndex,
    TextMinHasher,
    content_key,
    phash,
    phash_thumbnail,
    phashes,
    pixel_hash,
)
from nemo_twvlm.curation.zh import dedup_normalise, shingles


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
    one_pixel = img.copy()
    one_pixel.putpixel((3, 5), tuple((v + 1) % 256 for v in img.getpixel((3, 5))))
    assert pixel_hash(img) != pixel_hash(one_pixel)
    # The same bytes as another shape or mode are another picture.
    width, height = img.size
    assert pixel_hash(img) != pixel_hash(Image.frombytes("RGB", (width * 2, height // 2), img.tobytes()))
    assert pixel_hash(img.convert("L")) != pixel_hash(Image.frombytes("P", img.size, img.convert("L").tobytes()))
    assert len(pixel_hash(img)) == 32 and int(pixel_hash(img), 16) >= 0  # 128 bits, hex


def test_content_key_needs_every_part_equal():
    assert content_key(["a", "b"], "貓") == content_key(["a", "b"], "貓")
    # Another caption, one image fewer, the images in another order: each is another sample.
    assert len({content_key(["a", "b"], "貓"), content_key(["b", "a"], "貓"), content_key(["a", "b"], "狗"),
                content_key(["a"], "貓"), content_key([], "貓")}) == 5


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


def _phash_per_image(img: Image.Image) -> int:
    """The per-image pHash that `phashes` replaced."""
    factor = min(img.size) // 64
    small = img.reduce(factor) if factor > 1 else img
    grey = np.asarray(small.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)
    low = (hashing._DCT @ grey @ hashing._DCT.T)[:8, :8].ravel()
    return int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")


def test_batched_phash_equals_per_image():
    rng = np.random.default_rng(3)
    sizes = [(64, 64), (31, 200), (129, 300), (640, 480), (1000, 333), (257, 257)]
    images = [draw(rng, sizes[i % len(sizes)]) for i in range(60)]
    images += [_jpeg_roundtrip(img, 150, 70) for img in images[:10]] + [Image.new("RGB", (80, 80), (7, 7, 7))]
    expected = [_phash_per_image(img) for img in images]
    assert len(set(expected)) > 50
    assert phashes([phash_thumbnail(img) for img in images]) == expected
    assert [phash(img) for img in images[:5]] == expected[:5]
    assert phashes([]) == []


def _datasketch_signature(grams: set[str], num_perm: int) -> np.ndarray:
    """The per-caption MinHash that `TextMinHasher.many` replaced."""
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch([s.encode("utf-8") for s in sorted(grams)])
    return m.hashvalues.astype(np.uint32)


def test_batched_minhash_equals_datasketch(monkeypatch):
    rng = np.random.default_rng(4)
    texts = ["".join(ZH_LINES[j] for j in rng.choice(len(ZH_LINES), int(rng.integers(1, 4)), replace=False))
             for _ in range(200)]
    sets = [shingles(dedup_normalise(t), 3) for t in texts] + [set(), {"x"}, {"Taipei 101", "台北"}, set()]
    for num_perm in (64, 128):
        expected = [_datasketch_signature(g, num_perm) for g in sets]
        hasher = TextMinHasher(num_perm)
        assert all(np.array_equal(got, want) for got, want in zip(hasher.many(sets), expected, strict=True))
        assert np.array_equal(hasher(sets[0]), expected[0])
        assert np.all(hasher(set()) == 2**32 - 1)
        monkeypatch.setattr(hashing, "_CHUNK_SHINGLES", 50)  # many chunks of a few sets each
        assert all(np.array_equal(got, want) for got, want in zip(hasher.many(sets), expected, strict=True))
        monkeypatch.undo()
    assert TextMinHasher(64).many([]) == []


def _minhash_reference(signatures, threshold, bands, rows):
    """Banded LSH as first written: candidates share all values of a band; earliest kept at the threshold."""
    kept, out = [], []
    for i, sig in enumerate(signatures):
        hit = None
        for j in kept:
            shares_band = any((signatures[j][b * rows:(b + 1) * rows] == sig[b * rows:(b + 1) * rows]).all()
                              for b in range(bands))
            jaccard = float(np.mean(signatures[j] == sig))
            if shares_band and jaccard >= threshold:
                hit = (j, jaccard)
                break
        if hit is None:
            kept.append(i)
        out.append(hit)
    return out


def test_minhash_index_decides_as_banded_lsh():
    # Clusters sharing ~90% of values, some sharing a band yet below the threshold, some above it
    # yet sharing no band (LSH misses those, and so must the index).
    rng = np.random.default_rng(5)
    sigs = rng.integers(0, 2**32, size=(1_500, 64), dtype=np.uint32)
    for at in range(0, 1_500, 30):
        redraw = rng.random((20, 64)) < rng.choice([0.05, 0.1, 0.3])
        sigs[at + 1:at + 21] = np.where(redraw, sigs[at + 1:at + 21], sigs[at])
    sigs = list(sigs[rng.permutation(1_500)])
    index = MinHashIndex(threshold=0.85, num_perm=64)
    want = _minhash_reference(sigs, 0.85, index.bands, index.rows)
    got = []
    for i, sig in enumerate(sigs):
        got.append(index.query(sig))
        if got[-1] is None:
            index.add(i, sig)
    assert got == want
    assert 100 < sum(h is not None for h in want) < 1_400
