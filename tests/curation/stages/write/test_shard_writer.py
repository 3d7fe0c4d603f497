"""write_shards streams a source into its shards and its dedup quarantine as it reads the source's parts
back: the bytes are those of the whole source built in memory (`tar_bytes`), the recorded sizes and
sha256 are the files', and a worker holds about one part's images however large the source is."""
from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from nemo_twvlm.curation.parts import final_marker, part_table
from nemo_twvlm.curation.sample import Rejection, SourceDecision
from nemo_twvlm.curation.stages.write.checkpoint import quarantine_members
from nemo_twvlm.curation.stages.write.shard_writer import ShardWriterStage, output_parts
from nemo_twvlm.curation.storage import tar_bytes, write_part_table


def _row(index: int, image: bytes) -> dict:
    meta = {"lang": "zh", "script": "zh-Hant", "chars": 12, "images": [{"width": 64, "height": 48, "ref": "jpg"}]}
    return {"index": index, "key": f"k{index}", "doc": json.dumps([{"image": 0}, f"台灣第{index}張"], ensure_ascii=False),
            "images": [image], "image_exts": ["jpg"], "image_spans": [None], "content_sha": f"c{index}",
            "phash": index, "minhash": b"\0" * 8, "text_tokens": 5, "image_tokens": 7,
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)}


def _source(work: Path, parts: int, per_part: int, image_bytes: int) -> list[dict]:
    rows = []
    for part in range(parts):
        chunk = [_row(part * per_part + i, os.urandom(image_bytes)) for i in range(per_part)]
        write_part_table(part_table(work, "src", part), chunk)
        rows += chunk
    return rows


def _stage(tmp_path: Path, per_shard: int) -> ShardWriterStage:
    return ShardWriterStage(work_dir=str(tmp_path / "work"), shards_dir=str(tmp_path / "shards"),
                            quarantine_dir=str(tmp_path / "quarantine"), kind="pairs",
                            samples_per_shard=per_shard, keep_dropped=True)


def _decision(drops: dict[int, tuple[str, str]], num_parts: int) -> SourceDecision:
    return SourceDecision("pairs", data=drops, source="src", num_parts=num_parts)


def test_streamed_shards_and_quarantine_are_the_in_memory_bytes(tmp_path):
    rows = _source(tmp_path / "work", parts=5, per_part=30, image_bytes=3000)
    drops = {3: ("exact_duplicate", "of k1"), 31: ("near_duplicate_image", "k2 at 4 bits"), 149: ("budget", "")}
    stage = _stage(tmp_path, per_shard=64)
    stage.process(_decision(drops, num_parts=5))

    def parts(row):
        return output_parts(row, json.loads(row["meta"]), "pairs")

    kept = [(f"src-{r['index']:07d}", parts(r)) for r in rows if r["index"] not in drops]
    marker = json.loads(final_marker(tmp_path / "work", "src").read_text())
    assert [s["samples"] for s in marker["shards"]] == [64, 64, 19]
    for k, shard in enumerate(marker["shards"]):
        data = (tmp_path / "shards" / shard["name"]).read_bytes()
        assert shard["name"] == f"src-{k:05d}.tar"
        assert data == tar_bytes(kept[64 * k:64 * (k + 1)])
        assert (shard["bytes"], shard["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    dropped = [Rejection(r["key"], r["index"], "dedup", *drops[r["index"]], parts(r)) for r in rows
               if r["index"] in drops]
    assert (tmp_path / "quarantine" / "src" / "dedup.tar").read_bytes() == tar_bytes(quarantine_members(dropped, True))
    assert marker["rejections"] == [[r.key, r.index, "dedup", r.reason, r.detail] for r in dropped]
    assert (marker["kept"], marker["dropped"]) == (147, {"exact_duplicate": 1, "near_duplicate_image": 1,
                                                         "budget": 1})
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_source_is_written_holding_about_one_part_of_it(tmp_path):
    """8 parts of 32 images of 64 KiB: the source is 16 MiB, a part 2 MiB."""
    _source(tmp_path / "work", parts=8, per_part=32, image_bytes=64 << 10)
    stage = _stage(tmp_path, per_shard=1000)
    tracemalloc.start()
    try:
        stage.process(_decision({5: ("exact_duplicate", "")}, num_parts=8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * (2 << 20) + (2 << 20), f"{peak / 2**20:.1f} MiB of Python allocations at the peak"
    assert json.loads(final_marker(tmp_path / "work", "src").read_text())["shards"][0]["samples"] == 255


def test_a_source_that_fails_midway_leaves_no_temp_files_and_no_marker(tmp_path):
    _source(tmp_path / "work", parts=4, per_part=20, image_bytes=1000)
    part_table(tmp_path / "work", "src", 2).unlink()
    with pytest.raises(FileNotFoundError, match="part-00002.parquet"):
        _stage(tmp_path, per_shard=16).process(_decision({1: ("exact_duplicate", "")}, num_parts=4))
    assert not final_marker(tmp_path / "work", "src").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "quarantine" / "src" / "dedup.tar").exists()
