"""The reader leaves a plain tar's images in the file (a worker holds one part's images, not the input's),
decode_verify reads them back by span, and what goes to the quarantine still carries every part's bytes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from curation_inputs import draw, encode, good_pairs, stage_args, write_tar

from nemo_twvlm.curation.stages.io.decode_verify import DecodeVerifyStage
from nemo_twvlm.curation.stages.io.read_webdataset import WebDatasetReaderStage


def _reader(tmp_path) -> WebDatasetReaderStage:
    return WebDatasetReaderStage(input_dir=str(tmp_path), work_dir=str(tmp_path / "work"), kind="pairs",
                                 formats=["jpg", "png"], batch_samples=4)


def test_images_are_read_by_decode_not_by_the_reader(tmp_path):
    rng = np.random.default_rng(0)
    samples = good_pairs(rng, 6)
    samples.append(("no_caption", {"png": encode(draw(rng))}))
    samples.append(("two_formats", {"jpg": encode(draw(rng), "JPEG"), "png": encode(draw(rng)), "txt": "雙圖".encode()}))
    path = write_tar(tmp_path / "in.tar", samples)
    batches = _reader(tmp_path).read(str(path), "in", "t")
    kept = [s for b in batches for s in b.data]
    assert [s.key for s in kept] == [key for key, _ in samples if key != "no_caption"]
    assert all(s.images[0].data is None and s.raw[s.images[0].ref] is None for s in kept)  # nothing held yet
    assert kept[-1].images[0].ref == "jpg" and kept[-1].raw["png"] == samples[-1][1]["png"]  # unused format: read
    (rejection,) = [r for b in batches for r in b.rejected]
    assert rejection.reason == "missing_caption" and rejection.raw == samples[6][1]  # the quarantine keeps the image

    decode = DecodeVerifyStage(**stage_args("image"), cache_blocks=8, keep_side=None)
    decoded = [s for b in batches for s in decode.process(b).data]
    expected = {key: parts for key, parts in samples}
    for sample in decoded:
        item = sample.images[0]
        assert item.data == expected[sample.key][item.ref] == sample.raw[item.ref]
        assert item.passthrough() is item.span and item.pil is not None  # shipped from the tar as read


def test_an_input_changed_before_decode_stops_the_run_naming_it(tmp_path):
    path = write_tar(tmp_path / "in.tar", good_pairs(np.random.default_rng(1), 3))
    (batch,) = _reader(tmp_path).read(str(path), "in", "t")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 2048)
    decode = DecodeVerifyStage(**stage_args("image"), cache_blocks=8, keep_side=None)
    with pytest.raises(RuntimeError, match=f"input file {path} changed during the run.*part 0 of 'in' refers"):
        decode.process(batch)
