"""Reruns into an existing output_dir after the input or the config changed: the parts the change
made stale are redone, so the outputs equal a fresh run's (shards, stats, quarantine, manifest)
and the log names what changed."""
from __future__ import annotations

import hashlib

import numpy as np
from curation_inputs import assert_contract, curate, good_pairs, write_tar

from nemo_twvlm.curation import hashing
from nemo_twvlm.curation.stages.dedup import signatures


def outputs(out) -> dict[str, bytes]:
    names = ["manifest.json", "stats.json", "quarantine/index.jsonl"]
    names += [str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))]
    names += [str(p.relative_to(out)) for p in sorted((out / "quarantine").glob("*/*.tar"))]
    return {name: (out / name).read_bytes() for name in names}


def test_grown_input_file_is_read_again(tmp_path, langid_model, log_warnings):
    samples = good_pairs(np.random.default_rng(5), 6)
    write_tar(tmp_path / "in" / "0.tar", samples[:4])
    write_tar(tmp_path / "in" / "1.tar", samples[4:5])
    first = curate(tmp_path / "in", tmp_path / "out")
    assert first["input"] == 5
    write_tar(tmp_path / "in" / "0.tar", samples[:4] + samples[5:])  # one more sample, same part count
    rerun = curate(tmp_path / "in", tmp_path / "out")
    fresh = curate(tmp_path / "in", tmp_path / "fresh")
    assert rerun["input"] == fresh["input"] == 6 and rerun["kept"] == fresh["kept"]
    assert outputs(tmp_path / "out") == outputs(tmp_path / "fresh")
    assert_contract(tmp_path / "out")
    (changed,) = [m for m in log_warnings if "input files changed" in m]
    assert "0: " in changed and "1: " not in changed  # the grown file, not the other one


def test_changed_config_is_applied(tmp_path, langid_model, log_warnings):
    write_tar(tmp_path / "in" / "0.tar", good_pairs(np.random.default_rng(6), 6))
    first = curate(tmp_path / "in", tmp_path / "out")
    strict = ["quality.min_chars=40"]
    rerun = curate(tmp_path / "in", tmp_path / "out", *strict)
    fresh = curate(tmp_path / "in", tmp_path / "fresh", *strict)
    assert fresh["dropped"].get("too_short", 0) > 0 and first["kept"] > fresh["kept"]  # the change matters
    assert rerun == fresh
    assert outputs(tmp_path / "out") == outputs(tmp_path / "fresh")
    assert any("config changed" in m and "quality.min_chars: 4 -> 40" in m for m in log_warnings)


def test_unchanged_rerun_resumes_without_redoing(tmp_path, langid_model, log_warnings):
    write_tar(tmp_path / "in" / "0.tar", good_pairs(np.random.default_rng(7), 3))
    curate(tmp_path / "in", tmp_path / "out")
    marker = next((tmp_path / "out" / "work" / "analysed").rglob("part-*.json"))
    written = marker.stat().st_mtime_ns
    curate(tmp_path / "in", tmp_path / "out", "executor.name=in_process")  # the executor decides nothing
    curate(tmp_path / "in", tmp_path / "out", "input.rows_per_read=7")  # nor does a row reader's task size
    assert marker.stat().st_mtime_ns == written
    assert not [m for m in log_warnings if "redone" in m]


def test_parts_signed_by_an_older_pixel_hash_are_redone(tmp_path, langid_model, log_warnings, monkeypatch):
    """Exact duplicates compare pixel hashes across parts: a rerun that kept one file's parts signed by
    another hash and re-signed a changed file's would miss the duplicate between them."""
    samples = good_pairs(np.random.default_rng(8), 5)
    write_tar(tmp_path / "in" / "0.tar", samples[:4])
    write_tar(tmp_path / "in" / "1.tar", [("copy", dict(samples[1][1]))])

    def sha256_pixels(img):
        return hashlib.sha256(f"{img.mode}{img.size}".encode() + img.tobytes()).hexdigest()[:32]

    with monkeypatch.context() as old:
        old.setattr(signatures, "pixel_hash", sha256_pixels)
        old.setitem(hashing.SIGNATURES, "pixel_hash", "sha256[:32]")
        first = curate(tmp_path / "in", tmp_path / "out")
    assert first["dropped"]["exact_duplicate"] == 1
    write_tar(tmp_path / "in" / "1.tar", [("copy", dict(samples[1][1])), ("new", dict(samples[4][1]))])
    rerun = curate(tmp_path / "in", tmp_path / "out")
    fresh = curate(tmp_path / "in", tmp_path / "fresh")
    assert rerun == fresh and rerun["dropped"]["exact_duplicate"] == 1
    assert outputs(tmp_path / "out") == outputs(tmp_path / "fresh")
    assert any("config changed" in m and "signatures.pixel_hash: 'sha256[:32]' -> " in m for m in log_warnings)
