"""The optional CLIP-score stage with a tiny random CLIP saved locally (no hub): it scores every
sample, filters by the threshold, and is left out (with a warning) when no model is given."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from curation_inputs import assert_contract, curate, good_pairs, tiny_clip, write_tar


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("clip_in")
    write_tar(src / "0.tar", good_pairs(np.random.default_rng(8), 6))
    return src


def test_scores_every_sample(clip_dir, source, tmp_path, langid_model):
    stats = curate(source, tmp_path, f"models.clip_model={clip_dir}", "models.min_clip_score=-1.0")
    assert stats["kept"] == 6
    assert_contract(tmp_path)
    assert [s["stage"] for s in stats["stages"]].index("clip_score") == 6
    with tarfile.open(next((tmp_path / "shards").glob("*.tar"))) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert all(-1.0 <= m["clip_score"] <= 1.0 for m in metas)


def test_threshold_drops(clip_dir, source, tmp_path, langid_model):
    stats = curate(source, tmp_path, f"models.clip_model={clip_dir}", "models.min_clip_score=1.01")
    assert stats["kept"] == 0 and stats["dropped"] == {"low_clip_score": 6}
    assert_contract(tmp_path)


def test_left_out_without_a_model(source, tmp_path, langid_model):
    stats = curate(source, tmp_path)
    assert "clip_score" not in [s["stage"] for s in stats["stages"]]
