"""Downscale to `max_side` and re-encode; an image already small enough and in the target format
(and RGB) keeps its original bytes, so no generation is lost to a needless re-encode."""
from __future__ import annotations

import io
from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage
from PIL import Image

from nemo_twvlm.curation.sample import Sample, SampleBatch

_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG"}


@dataclass
class ResizeStage(ProcessingStage[SampleBatch, SampleBatch]):
    max_side: int = 672
    format: str = "jpg"
    quality: int = 90
    name: str = "resize"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, batch: SampleBatch) -> SampleBatch:
        return batch.apply(self.name, self._resize)

    def _resize(self, sample: Sample) -> None:
        for item in sample.images:
            too_large = max(item.meta["width"], item.meta["height"]) > self.max_side  # as stored
            if not too_large and item.meta["format"] == self.format and item.meta["mode"] == "RGB":
                item.pil = None
                continue
            img = item.pil  # may already be smaller than stored: see DecodeVerifyStage.keep_side
            if max(img.size) > self.max_side:
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
            options = {"quality": self.quality} if self.format == "jpg" else {"compress_level": 6}
            buf = io.BytesIO()
            img.save(buf, _PIL_FORMAT[self.format], **options)
            item.data, item.ext, item.pil = buf.getvalue(), self.format, None
            item.meta["resized"] = list(img.size)
