"""Helpers for the per-stage tests: batches of text-only or image samples."""
from __future__ import annotations

import pytest

from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch


def text_batch(*texts: str, lang: str | None = "zh") -> SampleBatch:
    meta = {"lang": lang} if lang else {}
    return SampleBatch(dataset_name="t", data=[Sample(key=f"s{i}", index=i, segments=[t], meta=dict(meta))
                                               for i, t in enumerate(texts)])


def pair(index: int, png: bytes, caption: str) -> Sample:
    return Sample(key=f"s{index}", index=index, segments=[ImageItem(ref="png", data=png, ext="png"), caption])


@pytest.fixture
def reasons():
    """{key: reason} of a processed batch's rejections."""
    return lambda batch: {r.key: r.reason for r in batch.rejected}
