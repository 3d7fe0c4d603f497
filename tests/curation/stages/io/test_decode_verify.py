from __future__ import annotations

import numpy as np
from conftest import pair
from curation_inputs import draw, encode, png_bomb, stage_args

from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.io.decode_verify import DecodeVerifyStage


def test_image_checks_from_the_yaml_drop_under_named_reasons(reasons):
    rng = np.random.default_rng(0)
    stage = DecodeVerifyStage(**stage_args("image"), cache_blocks=256, keep_side=None)  # min side 32, aspect <= 3
    batch = stage.process(SampleBatch(dataset_name="t", data=[
        pair(0, encode(draw(rng)), "好"), pair(1, b"not an image", "好"), pair(2, png_bomb(), "好"),
        pair(3, encode(draw(rng, (16, 16))), "好"), pair(4, encode(draw(rng, (200, 40))), "好"),
        pair(5, encode(draw(rng), "GIF"), "好")]))
    assert [s.key for s in batch.data] == ["s0"] and batch.data[0].images[0].pil.size == (64, 64)
    assert reasons(batch) == {"s1": "corrupt_image", "s2": "decompression_bomb", "s3": "image_too_small",
                              "s4": "bad_aspect_ratio", "s5": "unsupported_image_format"}
    assert batch.rejected[0].detail == "cannot identify image file: no known image format"  # no memory address
