"""Decode every image once and verify it: format, pixel count (from the header, before decoding),
full decode (corrupt / truncated), minimum side and aspect ratio; then normalise it to upright 8-bit RGB
(nemo_twvlm.data.image.normalise_image), noting an animation cut to its first frame or an EXIF
rotation, on the sample (counted) and on the image (so `resize` re-encodes what its bytes show otherwise).

It first reads the part's images that the reader left in the input tar (read_webdataset), so that a
worker holds one part's encoded images at a time."""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError

from nemo_twvlm.curation.sample import ImageItem, InputFile, Reject, Sample, SampleBatch, note
from nemo_twvlm.curation.stages.base import LoadOnFirstUse, PerSampleStage
from nemo_twvlm.curation.storage import read_input_spans
from nemo_twvlm.data.image import normalise_image

_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def decode(data: bytes, *, formats: list[str], max_pixels: int,
           keep_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode and fully verify; returns the image and its size as stored. With `keep_side`, a JPEG much larger
    than needed is decoded at a libjpeg scale (1/2, 1/4, 1/8) whose longer side stays >= keep_side:
    every byte is still read (truncation is still caught) for a fraction of the work."""
    if not data:
        raise Reject("empty_image", "0 bytes")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as e:  # PIL's own guard, at twice its MAX_IMAGE_PIXELS
        raise Reject("decompression_bomb", str(e)[:200]) from None
    except UnidentifiedImageError:
        # Not PIL's message: it names the buffer's memory address, and a rerun must write the same bytes.
        raise Reject("corrupt_image", "cannot identify image file: no known image format") from None
    except Exception as e:  # noqa: BLE001 - PIL raises SyntaxError/ValueError/OSError for bad headers
        raise Reject("corrupt_image", f"{type(e).__name__}: {e}"[:200]) from None
    fmt = _FORMATS.get(img.format or "")
    if fmt is None or (fmt not in formats and not (fmt == "jpg" and "jpeg" in formats)):
        raise Reject("unsupported_image_format", f"{img.format}; allowed {formats}")
    width, height = img.size
    if width * height > max_pixels:
        raise Reject("decompression_bomb", f"{width}x{height} = {width * height} pixels > {max_pixels}")
    if keep_side and fmt == "jpg" and max(width, height) >= 2 * keep_side:
        scale = keep_side / max(width, height)
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        img.load()
    except Exception as e:  # noqa: BLE001
        message = f"{type(e).__name__}: {e}"[:200]
        raise Reject("truncated_image" if "truncat" in message.lower() else "corrupt_image", message) from None
    return img, (width, height)


@dataclass
class DecodeVerifyStage(LoadOnFirstUse, PerSampleStage):
    formats: list[str]
    max_pixels: int
    min_side: int
    max_aspect: float
    # Decoded images live until `signatures`, a batch at a time. Without Pillow's block cache every
    # image is fresh mmap'd memory, page-faulted in: +50% decode time, measured on 256 px JPEGs.
    # Cached blocks never exceed what one batch already held at its peak.
    cache_blocks: int
    keep_side: int | None  # the resize target: larger JPEGs decode at a reduced scale
    name: str = "decode_verify"

    def load(self) -> None:
        if Image.core.get_blocks_max() < self.cache_blocks:
            Image.core.set_blocks_max(self.cache_blocks)

    def process(self, batch: SampleBatch) -> SampleBatch:
        read_deferred_images(batch)
        return super().process(batch)

    def check(self, sample: Sample) -> None:
        for item in sample.images:
            img, (width, height) = decode(item.data, formats=self.formats, max_pixels=self.max_pixels,
                                          keep_side=self.keep_side)
            if min(width, height) < self.min_side:
                raise Reject("image_too_small", f"{width}x{height}, min side {self.min_side}")
            if max(width, height) / min(width, height) > self.max_aspect:
                raise Reject("bad_aspect_ratio", f"{width}x{height}, max aspect {self.max_aspect}")
            item.meta.update(width=width, height=height, format=_FORMATS[img.format], mode=img.mode,
                             bytes=len(item.data))
            item.ext = _FORMATS[img.format]
            item.pil, notes = normalise_image(img)
            if notes:
                item.meta["notes"] = notes
            for name in notes:
                note(sample, name)


def read_deferred_images(batch: SampleBatch) -> None:
    """Read the images the reader left at their spans in the input, one open per input file. An input
    changed since it was read stops the run with an error naming it, rather than failing its samples."""
    by_file: dict[InputFile, list[tuple[Sample, ImageItem]]] = {}
    for sample, item in batch.images():
        if item.data is None and item.span is not None:
            by_file.setdefault(item.span.file, []).append((sample, item))
    for file, items in by_file.items():
        data = read_input_spans(asdict(file), [(item.span.offset, item.span.size) for _, item in items],
                                f"part {batch.part} of {batch.source!r}")
        for (sample, item), image in zip(items, data):
            item.data = item.span.data = sample.raw[item.ref] = image
