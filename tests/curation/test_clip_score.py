"""The optional CLIP-score stage with a tiny random CLIP saved locally (no hub): it scores every
sample, filters by the threshold, and is left out (with a warning) when no model is given."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from curation_inputs import REPO, assert_contract, curate, good_pairs, write_tar


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    path = tmp_path_factory.mktemp("tiny_clip")
    text = dict(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    AutoTokenizer.from_pretrained(REPO / "data" / "tokenizer").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("clip_in")
    write_tar(src / "0.tar", good_pairs(np.random.default_rng(8), 6))
    return src


def test_scores_every_sample(tiny_clip, source, tmp_path, langid_model):
    stats = curate(source, tmp_path, f"models.clip_model={tiny_clip}", "models.min_clip_score=-1.0")
    assert stats["kept"] == 6
    assert_contract(tmp_path)
    assert [s["stage"] for s in stats["stages"]].index("clip_score") == 6
    with tarfile.open(next((tmp_path / "shards").glob("*.tar"))) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert all(-1.0 <= m["clip_score"] <= 1.0 for m in metas)


def test_threshold_drops(tiny_clip, source, tmp_path, langid_model):
    stats = curate(source, tmp_path, f"models.clip_model={tiny_clip}", "models.min_clip_score=1.01")
    assert stats["kept"] == 0 and stats["dropped"] == {"low_clip_score": 6}
    assert_contract(tmp_path)


def test_left_out_without_a_model(source, tmp_path, langid_model):
    stats = curate(source, tmp_path)
    assert "clip_score" not in [s["stage"] for s in stats["stages"]]
