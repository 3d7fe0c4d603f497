"""MMC4 JSONL as published (text_list; image_info with image_name, raw_url, matched_text_index,
matched_sim, face_detections; similarity_matrix; url), images fetched from raw_url on a local HTTP
server or read from image_dir by image_name; each image lands before its matched sentence."""
from __future__ import annotations

import json

import numpy as np
import pytest
from curation_inputs import (
    ZH_LINES, assert_contract, curate, draw, encode, energon_samples, image_server, rejections, yaml_config,
)

from nemo_twvlm.curation.sample import ImageItem
from nemo_twvlm.curation.stages.io.read_mmc4 import Mmc4ReaderStage

EXPECTED = {  # key -> reason
    "docs-0000002": "bad_row",          # matched_text_index outside text_list
    "docs-0000003": "bad_field_type",   # matched_text_index is a string
    "docs-0000004": "missing_image",    # image_info entry without raw_url
    "docs-0000005": "bad_row",          # a line cut off
    "docs-0000006": "bad_field_type",   # text_list holds a number
}


def _info(name: str, url: str, index: int) -> dict:
    return {"image_name": name, "raw_url": f"{url}/{name}", "matched_text_index": index, "matched_sim": 0.27,
            "face_detections": None}


def _doc(sentences: list, infos: list) -> dict:
    sims = [[0.2] * len(sentences) for _ in infos]
    return {"text_list": sentences, "image_info": infos, "similarity_matrix": sims,
            "url": "https://example.com/page", "could_have_url_duplicate": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(51)
    lines = iter(ZH_LINES)
    images = {f"{i:032x}.jpg": encode(draw(rng), "JPEG", quality=90) for i in range(4)}
    names = sorted(images)
    src = tmp_path_factory.mktemp("mmc4_in")
    with image_server(images) as url:
        docs = [
            _doc([next(lines) for _ in range(3)], [_info(names[0], url, 2), _info(names[1], url, 0)]),
            _doc([next(lines) for _ in range(2)], [_info(names[2], url, 1), _info(names[3], url, 1)]),
            _doc([next(lines)], [_info(names[0], url, 3)]),
            _doc([next(lines)], [_info(names[0], url, 0) | {"matched_text_index": "0"}]),
            _doc([next(lines)], [{k: v for k, v in _info(names[0], url, 0).items() if k != "raw_url"}]),
        ]
        text = [json.dumps(d, ensure_ascii=False) for d in docs]
        text.append(text[0][: len(text[0]) // 2])
        text.append(json.dumps(_doc([next(lines), 3], [_info(names[0], url, 0)])))
        (src / "docs.jsonl").write_text("\n".join(text) + "\n", encoding="utf-8")
        out = tmp_path_factory.mktemp("mmc4_out")
        stats = curate(src, out, "download.allow_private_addresses=true", config="interleaved_mmc4")
    return stats, out, docs


def test_documents_curated(run):
    stats, out, _ = run
    assert assert_contract(out) == stats
    assert (stats["input"], stats["kept"]) == (7, 2)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_bad_documents_counted_under_their_reason(run, key):
    _, out, _ = run
    assert rejections(out)[key]["reason"] == EXPECTED[key]


def test_images_go_before_their_matched_sentence(run):
    _, out, docs = run
    got = {tuple(x for x in s.sequence if isinstance(x, str)): ["img" if not isinstance(x, str) else "txt"
                                                                  for x in s.sequence]
           for s in energon_samples(out / "shards")}
    assert got[tuple(docs[0]["text_list"])] == ["img", "txt", "txt", "img", "txt"]
    assert got[tuple(docs[1]["text_list"])] == ["txt", "img", "img", "txt"]


def test_detail_names_the_field(run):
    _, out, _ = run
    details = {k: e["detail"] for k, e in rejections(out).items()}
    assert details["docs-0000002"] == "'image_info[0].matched_text_index' = 3 is outside 'text_list' (1 sentences)"
    assert details["docs-0000003"] == "'image_info[0].matched_text_index' is '0', expected an integer"
    assert details["docs-0000006"] == "'text_list[1]' is int, expected a string"


def test_image_dir_reads_image_name(tmp_path):
    reader = Mmc4ReaderStage(str(tmp_path), str(tmp_path / "work"), yaml_config("interleaved_mmc4", input={"image_dir": "images"}).input)
    base = reader.base_dir(str(tmp_path / "docs.jsonl"))
    segments = reader._segments(_doc(["一句話。", "兩句話。"], [_info("a.jpg", "http://x", 1)]), base)
    assert segments[0] == "一句話。" and isinstance(segments[1], ImageItem)
    assert (segments[1].ref, segments[1].meta["base_dir"]) == ("a.jpg", str(tmp_path / "images"))
