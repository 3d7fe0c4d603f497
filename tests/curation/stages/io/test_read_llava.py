"""LLaVA-Pretrain's layout as published (blip_laion_cc_sbu_558k.json, a JSON list, beside the image
folder), curated into Energon pairs; bad entries and a cut-off list are counted, never raised."""
from __future__ import annotations

import json

import numpy as np
import pytest
from curation_inputs import assert_contract, curate, draw, encode, energon_samples, rejections, zh_caption

from nemo_twvlm.curation.readers import SchemaMismatchError
from nemo_twvlm.curation.stages.io.read_table import read_rows

N = 6
PROMPT = "<image>\nRender a clear and concise summary of the photo."
EXPECTED = {  # id -> reason
    "bad_missing_file": "missing_file",
    "bad_no_gpt_turn": "missing_caption",
    "bad_conversations_type": "bad_field_type",
    "bad_image_type": "bad_field_type",
    "bad_value_type": "bad_field_type",
    "bad_no_image": "missing_image",
}


def _entry(key: str, image, caption) -> dict:
    return {"id": key, "image": image, "conversations": [{"from": "human", "value": PROMPT},
                                                         {"from": "gpt", "value": caption}]}


def _images(src, rng, ids: list[str]) -> list[str]:
    """LLaVA's images/<5-digit folder>/<9-digit id>.jpg; returns the paths the JSON names."""
    paths = []
    for i, key in enumerate(ids):
        rel = f"{i // 4:05d}/{key}.jpg"
        (src / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / "images" / rel).write_bytes(encode(draw(rng), "JPEG", quality=90))
        paths.append(rel)
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(11)
    src = tmp_path_factory.mktemp("llava_in")
    ids = [f"{i:09d}" for i in range(N + 3)]
    paths = _images(src, rng, ids)
    captions = {key: zh_caption(rng) for key in ids}
    good = [_entry(key, path, captions[key]) for key, path in zip(ids[:N], paths)]
    bad = [
        _entry("bad_missing_file", "00009/000999999.jpg", zh_caption(rng)),
        {"id": "bad_no_gpt_turn", "image": paths[0], "conversations": [{"from": "human", "value": PROMPT}]},
        {"id": "bad_conversations_type", "image": paths[0], "conversations": zh_caption(rng)},
        _entry("bad_image_type", 12, zh_caption(rng)),
        _entry("bad_value_type", paths[0], [zh_caption(rng)]),
        {"id": "bad_no_image", "conversations": _entry("x", "", zh_caption(rng))["conversations"]},
        "not an object",
    ]
    (src / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(good + bad, ensure_ascii=False), encoding="utf-8")
    # A second list, cut off inside its last entry (as a partial download leaves it).
    text = json.dumps([_entry(key, path, captions[key]) for key, path in zip(ids[N:], paths[N:])], indent=1)
    (src / "part2.json").write_text(text[: text.rindex('"conversations"')], encoding="utf-8")
    out = tmp_path_factory.mktemp("llava_out")
    stats = curate(src, out, config="pairs_llava_pretrain")
    return stats, out, captions, src


def test_pairs_curated_and_counted(run):
    stats, out, *_ = run
    assert assert_contract(out) == stats
    assert stats["input"] == N + 7 + 2 + 1  # good, bad, the complete entries before the cut, the cut
    assert stats["kept"] == N + 2


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_bad_entry_counted_under_its_reason(run, key):
    _, out, *_ = run
    assert rejections(out)[key]["reason"] == EXPECTED[key]


def test_wrong_types_name_the_field(run):
    _, out, *_ = run
    details = {k: e["detail"] for k, e in rejections(out).items()}
    assert details["bad_image_type"] == "'image' is int, expected a string"
    assert details["bad_conversations_type"] == "'conversations' is str, expected a list"
    assert details["bad_value_type"] == "'conversations[1].value' is list, expected a string"
    assert [e["reason"] for e in rejections(out).values() if e["index"] == N + 6] == ["bad_row"]


def test_cut_off_list_keeps_complete_entries(run):
    stats, out, *_ = run
    (cut,) = [e for e in rejections(out).values() if e["reason"] == "truncated_json"]
    assert cut["source"] == "part2" and cut["disposition"] == "quarantined"
    assert "part2.json" in cut["detail"] and "after 2 complete entries" in cut["detail"]
    assert stats["quarantined"]["truncated_json"] == 1


def test_energon_reads_the_captions(run):
    stats, out, captions, _ = run
    seen = sorted(s.caption for s in energon_samples(out / "shards"))
    assert seen == sorted(captions[f"{i:09d}"] for i in range(N + 2))


def test_meta_file_is_named_as_another_layout(tmp_path, langid_model):
    """blip_laion_cc_sbu_558k_meta.json sits beside the data file and is not in its layout."""
    src = tmp_path / "in"
    src.mkdir()
    meta = [{"id": f"{i:09d}", "image": f"00000/{i:09d}.jpg", "blip_caption": "a photo", "url": "http://x/y.jpg"}
            for i in range(3)]
    (src / "blip_laion_cc_sbu_558k_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(SchemaMismatchError, match=r"no column 'conversations' \(the LLaVA-Pretrain layout\); "
                                                  r"found columns \['blip_caption', 'id', 'image', 'url'\]"):
        curate(src, tmp_path / "out", config="pairs_llava_pretrain")
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["quarantined"] == {"missing_column": 3}


@pytest.mark.parametrize("text, reason, detail", [
    ('{"id": 1}', "unreadable_file", "top level is a JSON dict, expected a list"),
    ("", "unreadable_file", "not a JSON list"),
    ('[{"id": 1}, {"id": 2}', "truncated_json", "after 2 complete entries"),
    ('[{"id": 1}] trailing', "truncated_json", "after 1 complete entries"),
    (b"\xff\xfe[]", "unreadable_file", "UnicodeDecodeError"),
])
def test_unreadable_json_lists(tmp_path, text, reason, detail):
    path = tmp_path / "list.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    rows = read_rows(str(path))
    assert rows.error.reason == reason and detail in rows.error.detail and "list.json" in rows.error.detail


def _outputs(out) -> dict[str, bytes]:
    files = ["manifest.json", "stats.json", "quarantine/index.jsonl", *sorted(
        str(p.relative_to(out)) for p in [*(out / "shards").glob("*.tar"), *(out / "quarantine").glob("*/*.tar")])]
    return {name: (out / name).read_bytes() for name in files}


def test_rerun_redoes_only_the_lost_part(run, tmp_path):
    """The resume protocol of every row reader: a part whose marker is gone is redone, the others
    are loaded; the outputs are the bytes of the uninterrupted run."""
    *_, src = run
    out = tmp_path / "out"
    curate(src, out, "input.batch_samples=4", config="pairs_llava_pretrain")
    reference = _outputs(out)
    part = out / "work" / "analysed" / "blip_laion_cc_sbu_558k"
    assert len(list(part.glob("part-*.json"))) == 4  # 13 entries in parts of 4
    kept_parts = {p: p.stat().st_mtime_ns for p in part.glob("part-*.json") if p.name != "part-00002.json"}
    (part / "part-00002.json").unlink()
    (out / "stats.json").unlink()
    curate(src, out, "input.batch_samples=4", config="pairs_llava_pretrain")
    assert _outputs(out) == reference
    assert {p: p.stat().st_mtime_ns for p in kept_parts} == kept_parts and (part / "part-00002.json").is_file()


def test_reading_by_ranges_gives_the_same_bytes(run, tmp_path, monkeypatch):
    """Both lists in ranges of one entry (read from their byte offsets), or each whole: the cut-off list's
    break falls in its last range, after the entry before it."""
    import nemo_twvlm.curation.stages.io.read_table as read_table

    *_, src = run
    reads = []
    monkeypatch.setattr(read_table, "read_rows", lambda path, rows=None: reads.append(rows) or read_rows(path, rows))
    curate(src, tmp_path / "whole", "input.batch_samples=1", config="pairs_llava_pretrain")
    assert reads == [None, None]
    reads.clear()
    curate(src, tmp_path / "ranged", "input.batch_samples=1", "input.rows_per_read=1", config="pairs_llava_pretrain")
    assert sorted((r.start, r.stop, r.total) for r in reads) == sorted([(0, 1, 3), (1, 3, 3)] +
                                                                       [(i, i + 1, 13) for i in range(13)])
    assert _outputs(tmp_path / "ranged") == _outputs(tmp_path / "whole")
    assert "after 2 complete entries" in json.dumps(rejections(tmp_path / "ranged"), ensure_ascii=False)


def test_a_list_changed_after_it_was_listed_is_named(run, tmp_path):
    """A range is a byte offset into the file as listed: read from a changed file it would be other rows."""
    *_, src = run
    data = (src / "blip_laion_cc_sbu_558k.json").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "list.json").write_bytes(data)
    (rows,) = [r for r in read_table_ranges(tmp_path / "in" / "list.json", 7) if r.start == 7]
    assert read_rows(str(tmp_path / "in" / "list.json"), rows).rows == json.loads(data)[7:12] + [None]
    (tmp_path / "in" / "list.json").write_bytes(data.replace(b'"id": "', b'"id":"'))
    with pytest.raises(RuntimeError, match=r"input file .*list.json changed during the run.*rows 7-13 of list.json"):
        read_rows(str(tmp_path / "in" / "list.json"), rows)


def read_table_ranges(path, rows_per_read: int):
    from nemo_twvlm.curation.stages.io.read_table import row_ranges

    return row_ranges(str(path), rows_per_read, 1)
