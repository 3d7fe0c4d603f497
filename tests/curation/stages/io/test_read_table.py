"""LAION / DataComp parquet as published: the table reader with the column names in the config
(conf/curation/pairs_laion.yaml), images fetched from a local HTTP server. A file without a needed
column, or with a field of the wrong type, is counted and named; an input whose columns are not
the configured ones fails the run, naming the expected and the found columns."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import (
    assert_contract, curate, draw, encode, energon_samples, image_server, kept_meta, rejections, yaml_config, zh_caption,
)
from nemo_curator.tasks import FileGroupTask

from nemo_twvlm.curation.readers import SchemaMismatchError
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage

N = 6
# laion400m-meta's columns and types.
LAION = pa.schema([("SAMPLE_ID", pa.int64()), ("URL", pa.string()), ("TEXT", pa.string()), ("HEIGHT", pa.int32()),
                   ("WIDTH", pa.int32()), ("LICENSE", pa.string()), ("NSFW", pa.string()),
                   ("similarity", pa.float64())])


def _laion_rows(url: str, rng, start: int, n: int) -> list[dict]:
    return [{"SAMPLE_ID": start + i, "URL": f"{url}/{start + i}.png", "TEXT": zh_caption(rng), "HEIGHT": 64,
             "WIDTH": 64, "LICENSE": "?", "NSFW": "UNLIKELY", "similarity": 0.31} for i in range(n)]


@pytest.fixture(scope="module")
def laion_dir(tmp_path_factory):
    rng = np.random.default_rng(21)
    images = {f"{i}.png": encode(draw(rng)) for i in range(N + 4)}
    src = tmp_path_factory.mktemp("laion_in")
    with image_server(images) as url:
        pq.write_table(pa.Table.from_pylist(_laion_rows(url, rng, 0, N), schema=LAION), src / "part-00000.parquet")
        no_text = LAION.remove(LAION.get_field_index("TEXT"))
        rows = [{k: v for k, v in r.items() if k != "TEXT"} for r in _laion_rows(url, rng, N, 2)]
        pq.write_table(pa.Table.from_pylist(rows, schema=no_text), src / "part-00001.parquet")
        int_text = LAION.set(LAION.get_field_index("TEXT"), pa.field("TEXT", pa.int64()))
        rows = [r | {"TEXT": 7} for r in _laion_rows(url, rng, N + 2, 2)]
        pq.write_table(pa.Table.from_pylist(rows, schema=int_text), src / "part-00002.parquet")
        yield src


@pytest.fixture(scope="module")
def run(laion_dir, tmp_path_factory, langid_model):
    out = tmp_path_factory.mktemp("laion_out")
    return curate(laion_dir, out, "download.allow_private_addresses=true", config="pairs_laion"), out


def test_laion_pairs_curated(run):
    stats, out = run
    assert assert_contract(out) == stats
    assert (stats["input"], stats["kept"]) == (N + 4, N)
    assert sorted(kept_meta(out)) == [str(i) for i in range(N)]  # SAMPLE_ID is the key
    assert len(energon_samples(out / "shards")) == N


def test_missing_column_names_the_column_and_file(run):
    stats, out = run
    assert stats["quarantined"]["missing_column"] == 2
    detail = rejections(out)[str(N)]["detail"]
    assert detail.startswith("part-00001.parquet has no column 'TEXT' (input.caption_column); found columns ")
    assert "'URL'" in detail


def test_wrong_type_names_the_field(run):
    stats, out = run
    assert stats["quarantined"]["bad_field_type"] == 2
    entry = rejections(out)[str(N + 2)]
    assert (entry["source"], entry["detail"]) == ("part-00002", "'TEXT' is int, expected a string")


def test_default_columns_fail_naming_expected_and_found(laion_dir, tmp_path, langid_model):
    """LAION's URL / TEXT under the default (url / caption) config: not a success with 0 kept."""
    with pytest.raises(SchemaMismatchError) as error:
        curate(laion_dir, tmp_path / "out", "input.format=table")
    message = str(error.value)
    assert "of 10 input samples do not have the layout input.format='table'" in message
    assert "part-00000.parquet has no column 'url' (input.url_column), 'caption' (input.caption_column); " \
           "found columns ['HEIGHT', 'LICENSE', 'NSFW', 'SAMPLE_ID', 'TEXT', 'URL', 'WIDTH', 'similarity']" in message
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["kept"] == 0 and stats["quarantined"]["missing_column"] == 10


def test_datacomp_columns(tmp_path):
    """DataComp's metadata parquet: uid / url / text, mapped by the same three config fields."""
    rows = [{"uid": f"{i:032x}", "url": f"http://example.com/{i}.jpg", "text": f"caption {i}", "original_width": 64,
             "original_height": 64, "clip_b32_similarity_score": 0.3, "sha256": "0" * 64} for i in range(3)]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "0000000.parquet")
    reader = TableReaderStage(str(tmp_path / "in"), str(tmp_path / "work"),
                              yaml_config(input={"url_column": "url", "caption_column": "text", "key_column": "uid"}).input)
    task = FileGroupTask(dataset_name="d", data=[str(tmp_path / "in" / "0000000.parquet")])
    (batch,) = reader.process(task)
    assert [(s.key, s.segments[0].ref, s.segments[1]) for s in batch.data] == \
        [(r["uid"], r["url"], r["text"]) for r in rows]
