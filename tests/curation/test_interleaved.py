"""Interleaved documents: JSONL (text segments + image references) and the synthetic set's
WebDataset layout, curated into Energon InterleavedSample shards."""
from __future__ import annotations

import json

import numpy as np
import pytest
from curation_inputs import ZH_LINES, assert_contract, curate, draw, encode, rejections


def _load(shards):
    from megatron.energon import InterleavedSample, WorkerConfig, get_loader, get_train_dataset

    ds = get_train_dataset(str(shards), batch_size=None, shuffle_buffer_size=None, max_samples_per_sequence=None,
                           worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0), repeat=False)
    samples = list(get_loader(ds))
    assert all(isinstance(s, InterleavedSample) for s in samples)
    return samples


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(2)
    src = tmp_path_factory.mktemp("docs_in")
    (src / "img").mkdir()
    for i in range(9):
        (src / "img" / f"{i}.png").write_bytes(encode(draw(rng)))
    (src / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(100))

    def text(n):
        return "".join(ZH_LINES[j] for j in rng.choice(len(ZH_LINES), n, replace=False))

    docs = [{"id": f"doc{i}", "segments": [text(2), {"image": f"img/{2 * i}.png"}, text(1),
                                           {"image": f"img/{2 * i + 1}.png"}, "<p>&nbsp;</p>"]} for i in range(4)]
    docs += [
        {"id": "doc_broken_image", "segments": [text(2), {"image": "img/broken.png"}]},
        {"id": "doc_no_image", "segments": [text(2)]},
        {"id": "doc_copy", "segments": docs[0]["segments"]},
        {"id": "doc_simplified", "segments": ["今天我们去台北看电影，然后吃了很多小吃。", {"image": "img/8.png"}]},
    ]
    (src / "docs.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path_factory.mktemp("docs_out")
    return curate(src, out, config="interleaved_zh_tw"), out


def test_documents_curated(jsonl_run):
    stats, out = jsonl_run
    assert assert_contract(out) == stats
    assert stats["kept"] == 5
    reasons = {k: e["reason"] for k, e in rejections(out).items()}
    assert reasons == {"doc_broken_image": "corrupt_image", "doc_no_image": "missing_image",
                       "doc_copy": "exact_duplicate"}


def test_energon_reads_documents_in_order(jsonl_run):
    stats, out = jsonl_run
    samples = _load(out / "shards")
    assert len(samples) == stats["kept"]
    kinds = sorted(tuple("img" if not isinstance(x, str) else "txt" for x in s.sequence) for s in samples)
    assert kinds.count(("txt", "img", "txt", "img")) == 4  # the empty markup segment was cleaned away
    texts = [x for s in samples for x in s.sequence if isinstance(x, str)]
    assert "今天我們去臺北看電影，然後吃了很多小吃。" in texts  # s2twp
    assert stats["image_tokens"] == 9 * 16


def test_synthetic_interleaved_tars(tmp_path, langid_model):
    """The layout nemo_twvlm.data.synthetic writes: a json part naming png parts of the sample."""
    from nemo_twvlm.data.synthetic import write_dataset

    write_dataset(tmp_path / "syn", train_pairs=1, val_pairs=1, interleaved_docs=12, samples_per_shard=6)
    stats = curate(tmp_path / "syn" / "interleaved", tmp_path / "out", "input.format=webdataset",
                   config="interleaved_zh_tw")
    assert_contract(tmp_path / "out")
    assert stats["input"] == 12 and stats["kept"] >= 1
    assert len(_load(tmp_path / "out" / "shards")) == stats["kept"]
