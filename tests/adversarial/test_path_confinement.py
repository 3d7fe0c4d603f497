"""A row or document naming a local image outside its input folder (an absolute path elsewhere,
`../`) is quarantined as `path_outside_input` and never opened; paths inside it (`sub/../x.png`
included) are read as before. Every local-path reader goes through download.confined_path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from curation_inputs import ZH_LINES, assert_contract, curate, draw, encode, rejections, zh_caption

from nemo_twvlm.curation.sample import Reject
from nemo_twvlm.curation.stages.io.download import confined_path


@pytest.mark.parametrize("ref", ["/etc/passwd", "../secret.png", "imgs/../../secret.png", "imgs/../../in2/a.png"])
def test_outside_is_refused(tmp_path, ref):
    with pytest.raises(Reject) as caught:
        confined_path(str(tmp_path / "in"), ref)
    assert caught.value.reason == "path_outside_input" and ref in caught.value.detail


@pytest.mark.parametrize("ref, read", [("a.png", "a.png"), ("imgs/a.png", "imgs/a.png"), ("imgs/../a.png", "a.png"),
                                       ("./a.png", "a.png")])
def test_inside_is_read(tmp_path, ref, read):
    assert confined_path(str(tmp_path / "in"), ref) == tmp_path / "in" / read


def test_absolute_path_inside_is_read(tmp_path):
    assert confined_path(str(tmp_path / "in"), str(tmp_path / "in" / "a.png")) == tmp_path / "in" / "a.png"


def _inputs(tmp_path: Path) -> tuple[Path, np.random.Generator]:
    """in/ with imgs/ok.png, and secret.png (a valid image) beside in/, where no row may reach."""
    rng = np.random.default_rng(11)
    (tmp_path / "in" / "imgs").mkdir(parents=True)
    (tmp_path / "in" / "imgs" / "ok.png").write_bytes(encode(draw(rng)))
    (tmp_path / "in" / "imgs" / "ok2.png").write_bytes(encode(draw(rng)))
    (tmp_path / "secret.png").write_bytes(encode(draw(rng)))
    return tmp_path / "in", rng


def _check(out: Path, stats: dict, refused: set[str], kept: int) -> None:
    assert_contract(out)
    assert stats["kept"] == kept and not stats["dropped"]
    assert stats["quarantined"] == {"path_outside_input": len(refused)}
    index = rejections(out)
    assert set(index) == refused and all("outside the input folder" in e["detail"] for e in index.values())


def test_table_rows(tmp_path, langid_model):
    src, rng = _inputs(tmp_path)
    rows = {"ok": "imgs/ok.png", "ok_dotdot": "imgs/../imgs/ok2.png", "passwd": "/etc/passwd",
            "up": "../secret.png", "abs": str(tmp_path / "secret.png")}
    lines = [json.dumps({"key": k, "url": v, "caption": zh_caption(rng)}, ensure_ascii=False) for k, v in rows.items()]
    (src / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = curate(src, tmp_path / "out", "input.format=table", "dedup.caption_jaccard=null")
    _check(tmp_path / "out", stats, {"passwd", "up", "abs"}, kept=2)


def test_documents(tmp_path, langid_model):
    src, rng = _inputs(tmp_path)
    docs = [{"id": "ok", "segments": [ZH_LINES[0] + ZH_LINES[1], {"image": "imgs/ok.png"}, ZH_LINES[2]]},
            {"id": "passwd", "segments": [ZH_LINES[3] + ZH_LINES[4], {"image": "/etc/passwd"}]},
            {"id": "up", "segments": [{"image": "imgs/ok2.png"}, ZH_LINES[5] + ZH_LINES[6],
                                      {"image": "../secret.png"}]}]
    (src / "docs.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n",
                                    encoding="utf-8")
    stats = curate(src, tmp_path / "out", config="interleaved_zh_tw")
    _check(tmp_path / "out", stats, {"passwd", "up"}, kept=1)


def test_llava_json_with_image_dir(tmp_path, langid_model):
    """The configured image folder is the confinement: its rows cannot step back up to the JSON's folder."""
    src, rng = _inputs(tmp_path)
    (src / "beside_json.png").write_bytes(encode(draw(rng)))
    entries = [{"id": k, "image": v, "conversations": [{"from": "human", "value": "<image>\n描述"},
                                                       {"from": "gpt", "value": zh_caption(rng)}]}
               for k, v in {"ok": "ok.png", "up": "../beside_json.png", "passwd": "/etc/passwd"}.items()]
    (src / "data.json").write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    stats = curate(src, tmp_path / "out", "input.image_dir=imgs", config="pairs_llava_pretrain")
    _check(tmp_path / "out", stats, {"up", "passwd"}, kept=1)
