"""LAION / DataComp parquet as published: the table reader with the column names in the config
(conf/curation/pairs_laion.yaml), images fetched from a local HTTP server. A file without a needed
column, or with a field of the wrong type, is counted and named; an input whose columns are not
the configured ones fails the run, naming the expected and the found columns. A file of more rows
than `input.rows_per_read` is read in ranges of whole parts, giving what reading it whole gives."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import (
    assert_contract, curate, draw, encode, energon_samples, image_server, kept_meta, rejections, yaml_config, zh_caption,
)
from nemo_curator.tasks import EmptyTask, FileGroupTask

from nemo_twvlm.curation.parts import RowRange, part_marker
from nemo_twvlm.curation.readers import SchemaMismatchError
from nemo_twvlm.curation.stages.io.list_inputs import ListInputsStage
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage, read_rows
from nemo_twvlm.curation.stages.io.reader import ROWS

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


def _parts(batches) -> list[tuple]:
    return [(b.part, b.num_parts, b.resumed, [(s.key, s.index, s.segments) for s in b.data],
             [(r.key, r.index, r.reason, r.detail) for r in b.rejected], b.stage_counts()) for b in batches]


def test_a_large_parquet_file_is_read_in_ranges_of_whole_parts(tmp_path):
    """1,000 rows in row groups of 128, some of them bad; ranges of 300 rows become 320 (5 parts of 64)."""
    rows = _laion_rows("http://example.com", np.random.default_rng(3), 0, 1000)
    for i in (5, 319, 320, 700):
        rows[i]["URL"] = ""  # missing_image, counted in the part it falls in
    rows[641]["TEXT"] = None
    (tmp_path / "in").mkdir()
    big, small = tmp_path / "in" / "big.parquet", tmp_path / "in" / "small.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=LAION), big, row_group_size=128)
    pq.write_table(pa.Table.from_pylist(rows[:300], schema=LAION), small)
    cfg = yaml_config("pairs_laion", input={"batch_samples": 64})
    listing = ListInputsStage(file_paths=str(tmp_path / "in"), files_per_partition=1, file_extensions=[".parquet"],
                              rows_per_read=300, batch_samples=64)
    tasks = listing.process(EmptyTask(dataset_name="pairs", data=None))
    ranges = [(t.data[0], t._metadata.get(ROWS)) for t in tasks]
    stamp = (big.stat().st_size, big.stat().st_mtime_ns)  # the reader refuses the file once it changed
    assert ranges == [(str(big), RowRange(start, min(start + 320, 1000), 1000, stamp=stamp))
                      for start in (0, 320, 640, 960)] + [(str(small), None)]
    assert len(read_rows(str(big), RowRange(320, 640, 1000)).rows) == 320

    reader = TableReaderStage(str(tmp_path / "in"), str(tmp_path / "work"), cfg.input)
    whole = reader.read(str(big), "big", "pairs")
    ranged = [batch for task in tasks[:4] for batch in reader.process(task)]
    assert [b.part for b in ranged] == list(range(16)) and {b.num_parts for b in ranged} == {16}
    assert _parts(ranged) == _parts(whole)
    assert sum(len(b.rejected) for b in ranged) == 5

    # A range whose parts an earlier run finished is not read again; the others are.
    for part in range(5, 10):
        marker = part_marker(tmp_path / "work", "big", part)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"num_parts": 16}))
    assert [(b.part, b.resumed, len(b.data)) for b in reader.process(tasks[1])] == [(p, True, 0) for p in range(5, 10)]
    assert [b.resumed for b in reader.process(tasks[0])] == [False] * 5


def test_reading_by_ranges_gives_the_same_bytes(laion_dir, tmp_path, langid_model, monkeypatch):
    """The whole pipeline, each file one task or in ranges of 2 rows (one part each)."""
    import nemo_twvlm.curation.stages.io.read_table as read_table

    reads = []
    monkeypatch.setattr(read_table, "read_rows", lambda path, rows=None: reads.append(rows) or read_rows(path, rows))
    args = ("download.allow_private_addresses=true", "input.batch_samples=2")
    curate(laion_dir, tmp_path / "whole", *args, "input.rows_per_read=100", config="pairs_laion")
    assert reads == [None] * 3
    reads.clear()
    curate(laion_dir, tmp_path / "ranged", *args, "input.rows_per_read=2", config="pairs_laion")
    assert sorted(r.start if r else -1 for r in reads) == [-1, -1, 0, 2, 4]  # 6 rows in 3 ranges; 2 + 2 read whole

    def outputs(out):
        names = ["stats.json", "manifest.json", "quarantine/index.jsonl", *sorted(
            str(p.relative_to(out)) for p in [*out.glob("shards/*.tar"), *out.glob("quarantine/*/*.tar")])]
        return {name: (out / name).read_bytes() for name in names}

    assert outputs(tmp_path / "ranged") == outputs(tmp_path / "whole")
    assert json.loads((tmp_path / "ranged" / "stats.json").read_text())["kept"] == N


@pytest.mark.parametrize("extension", [".json", ".jsonl"])
def test_a_large_json_file_is_read_in_ranges_holding_one_range(tmp_path, extension):
    """6,000 LLaVA-sized rows in ranges of 1,000: the ranges' rows are the whole file's, and reading one
    range of the six allocates under a quarter of what reading the file whole does."""
    import tracemalloc

    from nemo_twvlm.curation.stages.io.read_table import row_ranges

    rng = np.random.default_rng(4)
    rows = [{"id": f"{i:09d}", "image": f"{i // 1000:05d}/{i:09d}.jpg",
             "conversations": [{"from": "human", "value": "<image>\n" + zh_caption(rng) * 6},
                               {"from": "gpt", "value": zh_caption(rng) * 12}]} for i in range(6000)]
    rows[2500] = ["not an object"]
    path = tmp_path / f"mix{extension}"
    if extension == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    ranges = row_ranges(str(path), 1000, 64)  # ranges of 1,024 rows
    assert [(r.start, r.stop, r.total) for r in ranges] == [(s, min(s + 1024, 6000), 6000)
                                                            for s in range(0, 6000, 1024)]
    assert {r.columns for r in ranges} == {("conversations", "id", "image")}
    whole = read_rows(str(path))
    expected = [None if i == 2500 else row for i, row in enumerate(rows)]
    assert whole.rows == expected and whole.error is None
    assert [row for r in ranges for row in read_rows(str(path), r).rows] == expected

    peaks = []
    for rows in (None, ranges[3]):
        tracemalloc.start()
        read_rows(str(path), rows)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] / 4, peaks
