"""Downscale to `max_side` and re-encode; an image already small enough and in the target format
(and RGB, and shown as its bytes are: not EXIF-rotated nor cut from an animation by decode_verify)
keeps its original bytes, so no generation is lost to a needless re-encode.

The pixels stay on the item: `signatures` hashes the image as shipped, which at 1 MP is under half
the pixels of the original.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nemo_twvlm.curation.sample import Sample
from nemo_twvlm.curation.stages.base import PerSampleStage

_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG"}


def fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """The size `Image.thumbnail((max_side, max_side))` gives (its aspect rounding), or None if it fits."""
    width, height = size
    if max(width, height) <= max_side:
        return None
    aspect = width / height

    def rounded(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if aspect <= 1:
        return rounded(max_side * aspect, key=lambda n: abs(aspect - n / max_side)), max_side
    return max_side, rounded(max_side / aspect, key=lambda n: 0 if n == 0 else abs(aspect - max_side / n))


def downscale(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Antialiased bicubic resize of an RGB image, as Pillow's `thumbnail` does it (an integer box
    reduction first while the image is over twice the target), but through torch's vectorised uint8
    kernel: within one level of Pillow's result per channel, 2.5-3x faster at 1 MP on one core."""
    import torch

    factor = min(img.width // (2 * size[0]), img.height // (2 * size[1]))
    if factor > 1:
        img = img.reduce(factor)
    with warnings.catch_warnings():  # read-only pixels: the kernel only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pixels = torch.from_numpy(np.asarray(img)).permute(2, 0, 1).unsqueeze(0)  # NCHW view of HWC
    out = torch.nn.functional.interpolate(pixels, size=(size[1], size[0]), mode="bicubic", antialias=True)
    # The kernel returns planes (NCHW): Pillow interleaves them 15x faster than a strided copy does.
    return Image.merge("RGB", [Image.fromarray(plane) for plane in out[0].numpy()])


@dataclass
class ResizeStage(PerSampleStage):
    """resize.*: the image as it is shipped (and then hashed)."""

    max_side: int
    format: str
    quality: int
    name: str = "resize"

    def check(self, sample: Sample) -> None:
        for item in sample.images:
            too_large = max(item.meta["width"], item.meta["height"]) > self.max_side  # as stored
            as_stored = item.meta["mode"] == "RGB" and not item.meta.get("notes")
            if not too_large and item.meta["format"] == self.format and as_stored:
                continue
            size = fit_within(item.pil.size, self.max_side)  # may already be smaller: DecodeVerifyStage.keep_side
            if size is not None:
                item.pil = downscale(item.pil, size)
            options = {"quality": self.quality} if self.format == "jpg" else {"compress_level": 6}
            buf = io.BytesIO()
            item.pil.save(buf, _PIL_FORMAT[self.format], **options)
            item.data, item.ext = buf.getvalue(), self.format
            item.meta["resized"] = list(item.pil.size)
