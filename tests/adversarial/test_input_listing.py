"""One listing of input_dir (curation.inputs.list_inputs) feeds the partitioner, the summary and the
stale-shard cleanup: `A.TAR` is read, counted and its shards kept; `c.tar.gz` beside the tars is named
in stats.json's `skipped_inputs`, not silently ignored."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import assert_contract, curate, good_pairs, write_tar

from nemo_twvlm.curation.inputs import list_inputs
from nemo_twvlm.curation.stages.io.read_table import read_rows


def test_listing(tmp_path):
    for name in ("a.TAR", "b.tar", "sub/c.tar.gz", "notes.txt", "d.tar.bak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    inputs = list_inputs(tmp_path, [".tar"])
    assert [p.name for p in inputs.files] == ["a.TAR", "b.tar"]
    assert sorted(inputs.skipped) == ["d.tar.bak", "sub/c.tar.gz"]
    assert "'.gz'" in inputs.skipped["sub/c.tar.gz"]


def test_upper_case_table_file_is_read_as_its_format(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"url": "a.png", "caption": "台灣"}]), tmp_path / "ROWS.PARQUET")
    assert read_rows(str(tmp_path / "ROWS.PARQUET")).rows == [{"url": "a.png", "caption": "台灣"}]


def test_upper_case_tar_is_kept_and_compressed_tar_is_named(tmp_path, langid_model):
    rng = np.random.default_rng(5)
    write_tar(tmp_path / "in" / "a.TAR", good_pairs(rng, 3, "upper"))
    write_tar(tmp_path / "in" / "b.tar", good_pairs(rng, 2, "lower"))
    packed = write_tar(tmp_path / "c.tar", good_pairs(rng, 2, "packed"))
    (tmp_path / "in" / "c.tar.gz").write_bytes(gzip.compress(packed.read_bytes()))
    out = tmp_path / "out"
    for _ in range(2):  # the rerun finds every part done and must still keep A.TAR's shards
        stats = curate(tmp_path / "in", out)
        assert_contract(out)
        assert stats["input"] == stats["kept"] == 5
        assert list(stats["skipped_inputs"]) == ["c.tar.gz"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert {s["name"].split("-")[0] for s in manifest["shards"]} == {"a", "b"}
        assert all((out / "shards" / s["name"]).is_file() for s in manifest["shards"])


def test_same_source_twice_is_an_error_naming_both(tmp_path, langid_model):
    rng = np.random.default_rng(6)
    write_tar(tmp_path / "in" / "a.tar", good_pairs(rng, 1))
    write_tar(tmp_path / "in" / "a.TAR", good_pairs(rng, 1, "other"))
    with pytest.raises(ValueError, match=r"a\.TAR.*a\.tar|a\.tar.*a\.TAR"):
        curate(tmp_path / "in", tmp_path / "out")
