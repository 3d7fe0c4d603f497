"""img2dataset's webdataset output as it writes it: NNNNN.tar of <key>.jpg + <key>.txt + <key>.json
(key = 5-digit shard + 4-digit index), with NNNNN.parquet and NNNNN_stats.json beside each tar."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import (
    assert_contract,
    curate,
    draw,
    encode,
    energon_samples,
    kept_meta,
    rejections,
    write_tar,
    zh_caption,
)

PER_SHARD = 4


def _sample(shard: int, i: int, rng, caption: str | None) -> tuple[str, dict[str, bytes]]:
    key = f"{shard:05d}{i:04d}"
    jpg = encode(draw(rng), "JPEG", quality=90)
    meta = {"url": f"https://example.com/{key}.jpg", "caption": caption, "key": key, "status": "success",
            "error_message": None, "width": 64, "height": 64, "original_width": 64, "original_height": 64,
            "exif": "{}", "sha256": hashlib.sha256(jpg).hexdigest()}
    return key, {"jpg": jpg, "txt": (caption or "").encode(), "json": json.dumps(meta, indent=4).encode()}


def _beside(src, shard: int, samples: list) -> None:
    """What img2dataset writes next to each tar: every url tried, and the shard's counts."""
    rows = [json.loads(parts["json"]) for _, parts in samples]
    rows.append({"url": "https://example.com/gone.jpg", "caption": "x", "key": f"{shard:05d}9999",
                 "status": "failed_to_download", "error_message": "HTTP Error 404"})
    pq.write_table(pa.Table.from_pylist(rows), src / f"{shard:05d}.parquet")
    (src / f"{shard:05d}_stats.json").write_text(json.dumps(
        {"count": len(rows), "successes": len(samples), "failed_to_download": 1, "status_dict": {}}))


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(31)
    src = tmp_path_factory.mktemp("img2dataset_in")
    shards = [[_sample(s, i, rng, zh_caption(rng)) for i in range(PER_SHARD)] for s in range(2)]
    for shard, samples in enumerate(shards):
        _beside(src, shard, samples)
    url_int = _sample(1, PER_SHARD, rng, zh_caption(rng))
    url_int[1]["json"] = json.dumps(json.loads(url_int[1]["json"]) | {"url": 12345}).encode()
    no_caption = _sample(1, PER_SHARD + 1, rng, None)  # img2dataset writes "" for a row without caption
    not_json = _sample(1, PER_SHARD + 2, rng, zh_caption(rng))
    not_json[1]["json"] = b"{not json"
    shards[1] += [url_int, no_caption, not_json]
    for shard, samples in enumerate(shards):
        write_tar(src / f"{shard:05d}.tar", samples)
    out = tmp_path_factory.mktemp("img2dataset_out")
    return curate(src, out, "input.format=img2dataset"), out, shards


def test_pairs_curated(run):
    stats, out, _ = run
    assert assert_contract(out) == stats
    assert (stats["input"], stats["kept"]) == (2 * PER_SHARD + 3, 2 * PER_SHARD)  # the parquet/stats are not read
    assert len(energon_samples(out / "shards")) == stats["kept"]


def test_sidecar_url_kept_in_output_meta(run):
    _, out, shards = run
    meta = kept_meta(out)
    assert meta["000010002"]["images"][0]["url"] == "https://example.com/000010002.jpg"
    assert meta.keys() == {key for samples in shards for key, _ in samples[:PER_SHARD]}


@pytest.mark.parametrize("key, reason, detail", [
    ("000010004", "bad_field_type", "json sidecar 'url' is int, expected a string"),
    ("000010005", "empty_caption", ""),
    ("000010006", "bad_caption_json", "Expecting property name"),
])
def test_bad_sidecars_counted(run, key, reason, detail):
    _, out, _ = run
    entry = rejections(out)[key]
    assert entry["reason"] == reason and detail in entry["detail"]
