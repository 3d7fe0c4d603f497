from __future__ import annotations

import numpy as np
from curation_inputs import draw, stage_args

from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch
from nemo_twvlm.curation.stages.dedup.signatures import SignatureStage


def _sample(i: int, img, caption: str) -> Sample:
    return Sample(key=f"s{i}", index=i, segments=[ImageItem(ref="png", pil=img), caption])


def test_same_pixels_and_caption_share_the_content_key_and_pixels_are_let_go():
    d = stage_args("dedup")
    rng = np.random.default_rng(0)
    a, b = draw(rng), draw(rng)
    batch = SignatureStage(shingle=d["shingle"], num_perm=d["num_perm"]).process(SampleBatch(dataset_name="t", data=[
        _sample(0, a, "台灣的夜市"), _sample(1, a.copy(), "台灣的 夜市！"), _sample(2, b, "台灣的夜市"),
        _sample(3, a, "完全不同的句子")]))
    sha = [s.meta["content_sha"] for s in batch.data]
    assert sha[0] == sha[1] and len(set(sha)) == 3  # normalised text: spaces and punctuation do not count
    assert batch.data[0].meta["phash"] == batch.data[3].meta["phash"] != batch.data[2].meta["phash"]
    assert len(batch.data[0].meta["minhash"]) == 4 * d["num_perm"]  # uint32 values
    assert all(item.pil is None for s in batch.data for item in s.images)
