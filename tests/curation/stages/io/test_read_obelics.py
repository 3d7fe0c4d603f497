"""OBELICS parquet as published (texts / images parallel lists, None where the other list fills the
slot, images as URLs, plus metadata / general_metadata JSON strings), served from a local HTTP
server, curated into Energon InterleavedSample shards; the local-path and embedded-bytes variants;
bad rows counted by reason."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import ZH_LINES, assert_contract, curate, draw, encode, energon_samples, image_server, rejections

OBELICS = pa.schema([("images", pa.list_(pa.string())), ("metadata", pa.string()),
                     ("general_metadata", pa.string()), ("texts", pa.list_(pa.string()))])
EXPECTED = {  # source-index key -> reason
    "obelics-00000-0000003": "bad_row",        # lists of different lengths
    "obelics-00000-0000004": "bad_row",        # a slot with both a text and an image
    "obelics-00000-0000005": "missing_image",  # text only
    "obelics-00000-0000006": "download_failed",  # a 404
    "types-0000000": "bad_field_type",         # texts is a string, not a list
    "no_images-0000000": "missing_column",
}


def _row(texts: list, images: list) -> dict:
    meta = [None if i is None else json.dumps({"src": i, "alt_text": ""}) for i in images]
    return {"images": images, "metadata": json.dumps(meta), "texts": texts,
            "general_metadata": json.dumps({"url": "https://example.com/page", "warc_filename": "x.warc.gz"})}


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(41)
    lines = iter(ZH_LINES)  # every document its own lines: none is a near-duplicate of another

    def text(n=2):
        return "".join(next(lines) for _ in range(n))
    images = {f"{i}.png": encode(draw(rng)) for i in range(6)}
    src = tmp_path_factory.mktemp("obelics_in")
    (src / "img").mkdir()
    (src / "img" / "local.png").write_bytes(encode(draw(rng)))
    with image_server(images) as url:
        rows = [
            _row([text(), None, text(1)], [None, f"{url}/0.png", None]),
            _row([None, text(), None, text()], [f"{url}/1.png", None, f"{url}/2.png", None]),
            _row([text(), None], [None, "img/local.png"]),  # the local-path variant
            _row([text(), None], [None, f"{url}/3.png", None]),
            _row([text(), text()], [None, f"{url}/4.png"]),
            _row([text(), text()], [None, None]),
            _row([text(), None], [None, f"{url}/missing.png"]),
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=OBELICS), src / "obelics-00000.parquet")
        embedded = pa.schema([("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
                              ("texts", pa.list_(pa.string()))])
        pq.write_table(pa.Table.from_pylist([{"images": [{"bytes": encode(draw(rng)), "path": "e.png"}, None],
                                              "texts": [None, text()]}], schema=embedded), src / "embedded.parquet")
        pq.write_table(pa.Table.from_pylist([{"images": [None], "texts": text()}]), src / "types.parquet")
        pq.write_table(pa.Table.from_pylist([{"texts": [text()]}]), src / "no_images.parquet")
        out = tmp_path_factory.mktemp("obelics_out")
        stats = curate(src, out, "download.allow_private_addresses=true", "download.retries=0",
                       config="interleaved_obelics")
    return stats, out


def test_documents_curated(run):
    stats, out = run
    assert assert_contract(out) == stats
    assert (stats["input"], stats["kept"]) == (10, 4)
    assert stats["image_tokens"] == 5 * 16


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_bad_rows_counted_under_their_reason(run, key):
    _, out = run
    assert rejections(out)[key]["reason"] == EXPECTED[key]


def test_bad_rows_name_the_field(run):
    _, out = run
    details = {k: e["detail"] for k, e in rejections(out).items()}
    assert details["obelics-00000-0000003"] == "'texts' has 2 slots and 'images' 3; OBELICS lists are parallel"
    assert details["obelics-00000-0000004"] == "slot 1 holds both a text and an image"
    assert details["types-0000000"] == "'texts' is str, expected a list"
    assert details["no_images-0000000"].startswith("no_images.parquet has no column 'images' (the OBELICS layout)")


def test_energon_reads_documents_in_reading_order(run):
    _, out = run
    orders = sorted(tuple("txt" if isinstance(x, str) else "img" for x in s.sequence)
                    for s in energon_samples(out / "shards"))
    assert orders == sorted([("txt", "img", "txt"), ("img", "txt", "img", "txt"), ("txt", "img"), ("img", "txt")])
