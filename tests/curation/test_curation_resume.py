"""Crash safety: kill the pipeline mid-run, rerun it, and get the same shards, manifest, quarantine
index and stats as an uninterrupted run: nothing lost, nothing duplicated. Parts that refer to
pass-through images in the input give the bytes of parts that hold them, and a changed input is named."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from curation_inputs import LANGID_MODEL, REPO, assert_contract, curate, draw, encode, good_pairs, write_tar

from nemo_twvlm.curation.sample import ImageItem
from nemo_twvlm.curation.storage import read_part_rows

OVERRIDES = ("input.batch_samples=6", "shards.samples_per_shard=7")


def _outputs(out) -> dict[str, bytes]:
    files = ["manifest.json", "stats.json", "quarantine/index.jsonl"]
    files += [str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))]
    files += [str(p.relative_to(out)) for p in sorted((out / "quarantine").glob("*/*.tar"))]
    return {name: (out / name).read_bytes() for name in files}


@pytest.fixture(scope="module")
def source(tmp_path_factory, langid_model):
    rng = np.random.default_rng(11)
    src = tmp_path_factory.mktemp("resume_in")
    for i in range(4):
        samples = good_pairs(rng, 30, prefix=f"s{i}_")
        samples[5] = (f"s{i}_bad", {"png": b"", "txt": "壞掉的圖片".encode()})      # quarantined
        samples[9] = (f"s{i}_dup", dict(samples[3][1]))                             # exact duplicate
        samples[12] = (f"s{i}_near", {"jpg": encode(draw(np.random.default_rng(i)), "JPEG"),
                                      "txt": samples[4][1]["txt"]})
        write_tar(src / f"{i:03d}.tar", samples)
    reference = tmp_path_factory.mktemp("resume_ref")
    curate(src, reference, *OVERRIDES)
    return src, reference


def _command(src, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nemo_twvlm.curation", "--config-name", "pairs_zh_tw", f"input_dir={src}",
            f"output_dir={out}", f"lang.model_path={LANGID_MODEL}", f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}",
            "executor.name=in_process", *OVERRIDES, *extra]


@pytest.mark.parametrize("dedup", [(), ("dedup.shards=3",)], ids=["dedup", "sharded_dedup"])
def test_sigkill_mid_analysis_then_rerun(source, tmp_path, dedup):
    """Sharded dedup too: killed and rerun, it gives the bytes of the uninterrupted single-process run."""
    src, reference = source
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(src, out, *dedup), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "work" / "analysed").glob("*/part-*.json"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no part finished within 120 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "stats.json").exists(), "killed after the run finished: nothing was tested"
    done_before = len(list((out / "work" / "analysed").glob("*/part-*.json")))

    curate(src, out, *OVERRIDES, *dedup)
    assert _outputs(out) == _outputs(reference)
    assert_contract(out)
    assert done_before < 20  # 4 sources x 5 parts: the rerun had work left


def test_crash_while_writing_shards_then_rerun(source, tmp_path):
    """A kill between a shard's rename and its source's marker, plus a temp file never renamed."""
    src, reference = source
    out = tmp_path / "out"
    curate(src, out, *OVERRIDES)
    (out / "work" / "final" / "001.json").unlink()
    (out / "shards" / "001-00001.tar").unlink()
    (out / "shards" / ".001-00002.tar.12345.tmp").write_bytes(b"half a shard")
    (out / "stats.json").unlink()

    curate(src, out, *OVERRIDES)
    assert _outputs(out) == _outputs(reference)
    assert not list(out.rglob("*.tmp"))


def test_a_shard_changed_after_its_source_was_written_is_named_then_rewritten(source, tmp_path):
    """Finalize takes the writers' recorded sizes for reading every shard's headers again: a shard cut
    short afterwards stops it naming the shard, and a rerun rewrites that source."""
    from nemo_twvlm.curation.cli import compose_config
    from nemo_twvlm.curation.pipeline import finalize, input_files

    src, reference = source
    out = tmp_path / "out"
    curate(src, out, *OVERRIDES)
    shard = out / "shards" / "002-00001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    cfg = compose_config("pairs_zh_tw", [f"input_dir={src}", f"output_dir={out}", f"lang.model_path={LANGID_MODEL}",
                                         f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}", *OVERRIDES])
    with pytest.raises(RuntimeError, match=f"shard {shard} is 3000 bytes, but [0-9]+ bytes were written.*rerun"):
        finalize(cfg, sorted(input_files(cfg)))
    curate(src, out, *OVERRIDES)
    assert _outputs(out) == _outputs(reference)


def test_rerun_of_finished_run_changes_nothing(source, tmp_path):
    src, reference = source
    out = tmp_path / "out"
    curate(src, out, *OVERRIDES)
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")}
    curate(src, out, *OVERRIDES)
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")} == before  # skipped, not rewritten
    assert _outputs(out) == _outputs(reference)


def test_parts_referring_to_input_images_give_the_same_bytes(source, tmp_path, monkeypatch):
    """The reference run's parts hold the re-encoded PNGs and refer to the pass-through JPEGs; a run
    that copies every image into its parts (as parts did before they could refer) writes the same bytes."""
    src, reference = source
    tables = sorted((reference / "work" / "analysed").glob("*/part-*.parquet"))
    spans = [s for t in tables for row in pq.read_table(t, columns=["image_spans"]).to_pylist() for s in row["image_spans"]]
    assert any(spans) and not all(spans)
    monkeypatch.setattr(ImageItem, "passthrough", lambda self: None)
    out = tmp_path / "out"
    curate(src, out, *OVERRIDES)
    assert not any(pq.read_schema(t).metadata for t in (out / "work" / "analysed").glob("*/part-*.parquet"))
    assert _outputs(out) == _outputs(reference)


def test_input_changed_during_the_run_is_named(source, tmp_path):
    src = shutil.copytree(source[0], tmp_path / "in")
    out = tmp_path / "out"
    curate(src, out, *OVERRIDES)
    table = next(t for t in sorted((out / "work" / "analysed" / "000").glob("*.parquet")) if pq.read_schema(t).metadata)
    assert read_part_rows(table)
    os.utime(src / "000.tar", ns=(0, 0))
    with pytest.raises(RuntimeError, match=f"input file {src / '000.tar'} changed during the run"):
        read_part_rows(table)
    (src / "000.tar").unlink()
    with pytest.raises(RuntimeError, match="and is gone"):
        read_part_rows(table)
