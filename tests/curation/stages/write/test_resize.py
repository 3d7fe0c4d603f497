"""The resize stage's downscale is Pillow's antialiased bicubic thumbnail, computed faster: same
sizes, pixels within one level; the pHash of the shipped image still separates near from distinct."""
from __future__ import annotations

import io

import numpy as np
import pytest
from curation_inputs import draw, encode
from PIL import Image

from nemo_twvlm.curation.hashing import phash
from nemo_twvlm.curation.stages.write.resize import downscale, fit_within


def _thumbnail(img: Image.Image, max_side: int) -> Image.Image:
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return img


def test_fit_within_is_thumbnails_size():
    for width in range(300, 1400, 37):
        for height in (224, 671, 672, 673, 999, 1024, 2016):
            img = Image.new("RGB", (width, height))
            expected = _thumbnail(img, 672).size
            assert (fit_within(img.size, 672) or img.size) == expected, (width, height)


@pytest.mark.parametrize("size", [(1024, 1024), (1024, 700), (700, 1333)])
def test_downscale_matches_pillow_bicubic(size):
    img = draw(np.random.default_rng(0), size)
    target = fit_within(size, 672)
    ours = np.asarray(downscale(img, target), np.int16)
    pillow = np.asarray(img.resize(target, Image.Resampling.BICUBIC), np.int16)
    assert ours.shape == pillow.shape
    assert np.abs(ours - pillow).max() <= 1


def test_downscale_reduces_first_like_thumbnail():
    """Over twice the target: an integer box reduction, then bicubic, as `thumbnail` does."""
    img = draw(np.random.default_rng(1), (2100, 1500))
    target = fit_within(img.size, 672)
    ours = np.asarray(downscale(img, target), np.int16)
    pillow = np.asarray(_thumbnail(img, 672), np.int16)
    assert ours.shape == pillow.shape
    assert np.abs(ours - pillow).mean() < 0.5


def test_phash_of_shipped_image_keeps_near_dup_decisions():
    """pHash now sees the shipped (resized) image: re-encoded small copies of an image are still
    within 6 bits of it, and distinct images still further apart, as test_hashing asserts for originals."""
    rng = np.random.default_rng(2)
    images = [draw(rng, (1024, 768)) for _ in range(20)]
    shipped = [phash(downscale(img, fit_within(img.size, 672))) for img in images]
    for img, h in zip(images, shipped):
        copy = Image.open(io.BytesIO(encode(img.resize((128, 96)), "JPEG", quality=60))).convert("RGB")
        assert (h ^ phash(copy)).bit_count() <= 6
    assert min((a ^ b).bit_count() for i, a in enumerate(shipped) for b in shipped[i + 1:]) > 6
