"""Inputs of another layout than the config describes do not "succeed" with nothing kept: when most
of the input is rejected for its layout (missing or case-mismatched columns, lines that are not
JSON objects, files that are not their format) the run writes its outputs, then fails naming the
file and what was expected and found."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import assert_contract, curate, good_pairs, write_tar

from nemo_twvlm.curation.readers import SchemaMismatchError


def _binary(path, n: int = 4096) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)))


@pytest.mark.parametrize("name, overrides, reason, detail", [
    ("rows.jsonl", ["input.format=table"], "bad_row", r"\n  rows \(\d+ rows\): line is not a JSON object\n"),
    ("rows.parquet", ["input.format=table"], "unreadable_file", r"\n  rows \(1 rows\): rows.parquet: "),
    ("pairs.tar", [], "unreadable_tar", r"\n  pairs \(1 rows\): "),
])
def test_binary_file_fails_naming_it(tmp_path, name, overrides, reason, detail):
    _binary(tmp_path / "in" / name)
    with pytest.raises(SchemaMismatchError, match=detail):
        curate(tmp_path / "in", tmp_path / "out", *overrides)
    stats = assert_contract(tmp_path / "out")  # the outputs are written and reconcile
    assert stats["kept"] == 0 and set(stats["quarantined"]) == {reason}


def test_laion_columns_under_the_default_names_fail_with_the_case_hint(tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"URL": ["a.png"] * 3, "TEXT": ["台灣的夜市很熱鬧"] * 3}), tmp_path / "in" / "laion.parquet")
    with pytest.raises(SchemaMismatchError) as e:
        curate(tmp_path / "in", tmp_path / "out", "input.format=table")
    assert ("laion.parquet has no column 'url' (input.url_column), 'caption' (input.caption_column); found columns "
            "['TEXT', 'URL'] (column names are case-sensitive: found 'URL' for 'url')") in str(e.value)
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["quarantined"] == {"missing_column": 3}


def test_one_binary_file_among_good_ones_is_counted_not_fatal(tmp_path, langid_model):
    write_tar(tmp_path / "in" / "good.tar", good_pairs(np.random.default_rng(1), 6))
    _binary(tmp_path / "in" / "junk.tar")
    stats = curate(tmp_path / "in", tmp_path / "out")
    assert stats["kept"] == 6 and stats["quarantined"] == {"unreadable_tar": 1}
    assert_contract(tmp_path / "out")
    assert os.listdir(tmp_path / "out" / "shards") != []
