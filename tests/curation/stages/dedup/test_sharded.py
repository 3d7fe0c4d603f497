"""The sharded dedup makes exactly the single-process decisions (kept set, reasons and details) on
exact duplicates, identical and near-identical images and captions, chains, and a token budget,
for any shard count; and through the pipeline its outputs are byte-identical."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from curation_inputs import assert_contract, curate, draw, encode, good_pairs, write_tar

from nemo_twvlm.curation.hashing import TextMinHasher
from nemo_twvlm.curation.parts import dedup_partition, dedup_partition_dir, part_table
from nemo_twvlm.curation.sample import SignatureBatch
from nemo_twvlm.curation.stages.dedup import banding
from nemo_twvlm.curation.stages.dedup.banding import Banding, find_candidates, read_shard
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage
from nemo_twvlm.curation.stages.dedup.sharded import DedupFanoutStage
from nemo_twvlm.curation.stages.dedup.sharded import DedupMergeStage
from nemo_twvlm.curation.stages.dedup.sharded import DedupPartitionStage
from nemo_twvlm.curation.stages.dedup.sharded import DedupShardStage
from nemo_twvlm.curation.storage import write_part_table

SETTINGS = {"exact": True, "image_hamming": 6, "image_bands": 8, "caption_jaccard": 0.85, "num_perm": 64}


def _flip(h: int, bits: list[int]) -> int:
    return h ^ sum(1 << int(b) for b in bits)


def _samples(rng: np.random.Generator, n: int) -> list[dict]:
    """Clusters on purpose: a few base pHashes and MinHashes, each sample a base with 0-8 bits or
    0-12 values changed, so matches, non-matches and chains through dropped samples all occur."""
    phashes = [int(v) for v in rng.integers(0, 2**63, 12, dtype=np.int64)]
    minhashes = [rng.integers(0, 2**32, 64, dtype=np.uint32) for _ in range(12)]
    shas = [f"{k:032x}" for k in range(n)]
    out = []
    for i in range(n):
        sig = minhashes[int(rng.integers(12))].copy()
        sig[rng.choice(64, int(rng.integers(0, 13)), replace=False)] = rng.integers(0, 2**32, dtype=np.uint32)
        out.append({
            "content_sha": shas[int(rng.integers(0, n // 4))] if rng.random() < 0.3 else shas[i],
            "phash": None if rng.random() < 0.1 else _flip(phashes[int(rng.integers(12))],
                                                            list(rng.choice(64, int(rng.integers(0, 9)), replace=False))),
            "minhash": None if rng.random() < 0.1 else sig,
            "text_tokens": int(rng.integers(1, 50)), "image_tokens": 16,
        })
    return out


def _chains() -> list[dict]:
    """A~B and B~C but A!~C, for images (4 + 4 bits, 8 apart) and for captions (58/64 agreement
    each step, 52/64 end to end, all sharing LSH band 0): the sequential walk keeps A and C."""
    a = 0x0123456789ABCDEF
    sig_a = np.arange(64, dtype=np.uint32) * 2654435761
    sig_b, sig_c = sig_a.copy(), sig_a.copy()
    sig_b[[20, 25, 30, 35, 40, 45]] += 1
    sig_c[[20, 25, 30, 35, 40, 45, 50, 52, 54, 56, 58, 60]] += 1
    other = np.arange(64, dtype=np.uint32) * 40503 + 7
    row = {"text_tokens": 5, "image_tokens": 16}
    return [
        {"content_sha": "img_a", "phash": a, "minhash": other, **row},
        {"content_sha": "img_b", "phash": _flip(a, [60, 61, 62, 63]), "minhash": other + 1, **row},
        {"content_sha": "img_c", "phash": _flip(a, [56, 57, 58, 59, 60, 61, 62, 63]), "minhash": other + 2, **row},
        {"content_sha": "cap_a", "phash": None, "minhash": sig_a, **row},
        {"content_sha": "cap_b", "phash": None, "minhash": sig_b, **row},
        {"content_sha": "cap_c", "phash": None, "minhash": sig_c, **row},
    ]


def _batches(samples: list[dict], sources: int, per_part: int) -> list[SignatureBatch]:
    batches = []
    per_source = -(-len(samples) // sources)
    for s in range(sources):
        mine = samples[s * per_source:(s + 1) * per_source]
        num_parts = max(1, -(-len(mine) // per_part))
        for p in range(num_parts):
            chunk = mine[p * per_part:(p + 1) * per_part]
            cols = {"index": [p * per_part + i for i in range(len(chunk))],
                    "key": [f"k{s}_{p * per_part + i}" for i in range(len(chunk))]}
            cols |= {name: [row[name] for row in chunk] for name in chunk[0]} if chunk else {}
            batches.append(SignatureBatch(dataset_name="t", data=cols, source=f"src{s}", part=p, num_parts=num_parts))
    return batches


def _sequential(batches, budget=None) -> dict:
    decisions = DedupStage(**SETTINGS, token_budget=budget, joint=False).process_batch(batches)
    return {d.source: d.data for d in decisions}


def _sharded(batches, shards: int, work, budget=None) -> dict:
    if budget is not None:  # the merge reads every part's token counts from its table
        for b in batches:
            rows = [{"index": i, "text_tokens": t, "image_tokens": m} for i, t, m in
                    zip(b.data["index"], b.data["text_tokens"], b.data["image_tokens"])]
            write_part_table(part_table(work, b.source, b.part), rows)
    partition = DedupPartitionStage(str(work), shards, Banding(**SETTINGS))
    parts = [partition.process(b) for b in reversed(batches)]  # arrival order must not matter
    found = [DedupShardStage(str(work), Banding(**SETTINGS)).process(task)
             for task in DedupFanoutStage(shards).process_batch(parts)]
    decisions = DedupMergeStage(str(work), Banding(**SETTINGS), token_budget=budget).process_batch(found[::-1])
    return {d.source: d.data for d in decisions}


@pytest.mark.parametrize("dense_degree", [32, 1])
def test_chains_resolve_as_sequential(tmp_path, dense_degree, monkeypatch):
    monkeypatch.setattr(banding, "DENSE_DEGREE", dense_degree)
    batches = _batches(_chains(), sources=1, per_part=4)
    expected = _sequential(batches)
    assert {i: reason for i, (reason, _) in expected["src0"].items()} == {
        1: "near_duplicate_image", 4: "near_duplicate_caption"}  # B dropped for A; C kept: B was not
    assert expected["src0"][1][1] == "4 bits from src0/k0_0"
    assert expected["src0"][4][1] == "Jaccard ~0.91 with src0/k0_3"
    for shards in (2, 5):
        assert _sharded(batches, shards, tmp_path / f"s{shards}") == expected


@pytest.mark.parametrize("dense_degree", [32, 1, 3])  # the default; 1 and 3 put most matching values in the merge's index
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shards", [1, 3, 8])
def test_same_decisions_as_sequential(tmp_path, seed, shards, dense_degree, monkeypatch):
    monkeypatch.setattr(banding, "DENSE_DEGREE", dense_degree)
    batches = _batches(_samples(np.random.default_rng(seed), 400), sources=3, per_part=37)
    expected = _sequential(batches)
    reasons = [reason for drops in expected.values() for reason, _ in drops.values()]
    assert {r: reasons.count(r) > 5 for r in set(reasons)} == {  # every relation exercised
        "exact_duplicate": True, "near_duplicate_image": True, "near_duplicate_caption": True}
    assert _sharded(batches, shards, tmp_path) == expected


def test_a_part_writes_one_file_and_a_shard_reads_only_its_own_keys(tmp_path):
    batches = _batches(_samples(np.random.default_rng(3), 300), sources=2, per_part=40)
    banding = Banding(**SETTINGS)
    partition = DedupPartitionStage(str(tmp_path), 4, banding)
    tasks = DedupFanoutStage(4).process_batch([partition.process(b) for b in batches])
    files = sorted(dedup_partition_dir(tmp_path, 4).rglob("*"))
    assert [f for f in files if f.is_file()] == sorted(dedup_partition(tmp_path, 4, b.source, b.part) for b in batches)
    rows = [read_shard(tmp_path, 4, shard, tasks[shard].data) for shard in range(4)]
    for shard, shard_rows in enumerate(rows):  # each key in its own shard, and only there
        routed = {zlib.crc32(bytes((r, b)) + k) % 4
                  for r, b, k in zip(shard_rows["relation"], shard_rows["band"], shard_rows["bucket"])}
        assert routed == {shard}
    every = {(r, b, k, s, i) for shard_rows in rows for r, b, k, s, i in zip(
        *(shard_rows[c] for c in ("relation", "band", "bucket", "source", "index")))}
    assert len(every) == sum(len(shard_rows["index"]) for shard_rows in rows)
    assert len(every) == sum(1 for b in batches for i in range(len(b.data["index"])) for _ in banding.keys(b.data, i))
    found = DedupShardStage(str(tmp_path), banding).process(tasks[2]).data
    assert found.edges and found.groups


def test_a_shard_names_a_part_that_was_not_partitioned(tmp_path):
    batches = _batches(_samples(np.random.default_rng(3), 80), sources=1, per_part=40)
    partition = DedupPartitionStage(str(tmp_path), 4, Banding(**SETTINGS))
    tasks = DedupFanoutStage(4).process_batch([partition.process(b) for b in batches])
    dedup_partition(tmp_path, 4, "src0", 1).unlink()
    with pytest.raises(FileNotFoundError, match=r"part-00001.arrow: part 1 of 'src0' was not partitioned for 4 shards"):
        read_shard(tmp_path, 4, 0, tasks[0].data)


def test_a_rerun_over_an_earlier_partition_reads_only_its_own_keys(tmp_path):
    """Parts partitioned by an earlier (e.g. killed) run and then partitioned again with content
    reaching fewer shards: the earlier keys are gone with the file they were in."""
    rng = np.random.default_rng(4)
    earlier = _batches(_samples(rng, 200), sources=1, per_part=50)
    partition = DedupPartitionStage(str(tmp_path), 64, Banding(**SETTINGS))
    for b in earlier:  # 50 samples' keys reach all 64 shards
        partition.process(b)
    rerun = _batches(_samples(rng, 4), sources=1, per_part=1)  # parts 0-3: one sample's ~20 keys each
    assert _sharded(rerun, 64, tmp_path) == _sequential(rerun)
    parts = [("src0", 0, 4)]
    reached = [shard for shard in range(64) if read_shard(tmp_path, 64, shard, parts)["index"]]
    assert 0 < len(reached) < 32


def test_same_decisions_under_token_budget(tmp_path):
    batches = _batches(_samples(np.random.default_rng(5), 300), sources=2, per_part=50)
    expected = _sequential(batches, budget=3000)
    assert any(reason == "over_token_budget" for drops in expected.values() for reason, _ in drops.values())
    assert _sharded(batches, 4, tmp_path, budget=3000) == expected


def test_identical_values_group_instead_of_pairing(tmp_path):
    """k copies of one image with different captions: k group entries, no k^2 edges."""
    hasher = TextMinHasher(64)
    rows = [{"content_sha": f"{i:032x}", "phash": 0xFEEDFACECAFEBEEF, "minhash": hasher({f"c{i}", f"d{i}"}),
             "text_tokens": 1, "image_tokens": 1} for i in range(500)]
    batches = _batches(rows, sources=1, per_part=500)
    DedupPartitionStage(str(tmp_path), 1, Banding(**SETTINGS)).process(batches[0])
    found = find_candidates(read_shard(tmp_path, 1, 0, [("src0", 0, 1)]), image_hamming=6,
                            caption_jaccard=0.85)
    assert [len(members) for _, members in found.groups] == [500]
    assert not found.edges
    assert _sharded(batches, 2, tmp_path / "s") == _sequential(batches)


def test_a_dense_cluster_of_different_values_makes_no_all_pairs_edges(tmp_path):
    """600 different pHashes within 3 bits of one base (all within 6 of each other: 179,700 matching
    pairs) and 600 captions as alike, plus sparse near-duplicate pairs: the dense values go to the
    merge's index, 2% of the pairs at most stay edges, and the decisions are the sequential ones."""
    rng = np.random.default_rng(8)
    base = int(rng.integers(0, 2**63))
    sig = rng.integers(0, 2**32, 64, dtype=np.uint32)
    rows = []
    for i in range(600):
        caption = sig.copy()
        caption[rng.choice(64, 4, replace=False)] = rng.integers(0, 2**32, 4, dtype=np.uint32)
        rows.append({"content_sha": f"{i:032x}", "phash": _flip(base, list(rng.choice(64, 3, replace=False))),
                     "minhash": caption, "text_tokens": 1, "image_tokens": 1})
    for i in range(60):  # pairs far from the cluster: each matches one other
        h = int(rng.integers(0, 2**63))
        other = rng.integers(0, 2**32, 64, dtype=np.uint32)
        rows += [{"content_sha": f"s{i}{k}", "phash": _flip(h, [k]), "minhash": other + k, "text_tokens": 1,
                  "image_tokens": 1} for k in range(2)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    batches = _batches(rows, sources=2, per_part=100)
    partition = DedupPartitionStage(str(tmp_path), 4, Banding(**SETTINGS))
    tasks = DedupFanoutStage(4).process_batch([partition.process(b) for b in batches])
    found = [DedupShardStage(str(tmp_path), Banding(**SETTINGS)).process(t).data for t in tasks]
    image_edges = {e for f in found for e in f.edges if e[0] == banding.IMAGE}
    caption_edges = {e for f in found for e in f.edges if e[0] == banding.CAPTION}
    # Left: the sparse pairs, and cluster pairs in a shard where one end has few matches.
    assert 60 <= len(image_edges) < 179_700 // 50 and len(caption_edges) < 179_700 // 50
    assert sum(len(f.dense[banding.IMAGE]) for f in found) >= 600
    assert _sharded(batches, 4, tmp_path / "again") == _sequential(batches)


def _outputs(out) -> dict[str, bytes]:
    names = ["manifest.json", "stats.json", "quarantine/index.jsonl"]
    names += [str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))]
    names += [str(p.relative_to(out)) for p in sorted((out / "quarantine").glob("*/*.tar"))]
    return {name: (out / name).read_bytes() for name in names}


def test_pipeline_sharded_outputs_match_unsharded(tmp_path, langid_model):
    rng = np.random.default_rng(21)
    samples = good_pairs(rng, 30)
    base = draw(np.random.default_rng(99), (96, 96))
    samples[4] = ("near_base", {"png": encode(base), "txt": samples[4][1]["txt"]})
    samples += [
        ("dup_exact", dict(samples[2][1])),
        ("near_image", {"jpg": encode(base.resize((64, 64)), "JPEG", quality=70), "txt": good_pairs(rng, 1)[0][1]["txt"]}),
        ("near_caption", {"png": encode(draw(rng)), "txt": (samples[7][1]["txt"].decode()[:-1] + "喔").encode()}),
    ]
    write_tar(tmp_path / "in" / "a.tar", samples[:17])
    write_tar(tmp_path / "in" / "b.tar", samples[17:])
    overrides = ("input.batch_samples=5", "shards.samples_per_shard=6")
    one = curate(tmp_path / "in", tmp_path / "one", *overrides)
    assert one["dropped"] == {"exact_duplicate": 1, "near_duplicate_caption": 1, "near_duplicate_image": 1}
    sharded = curate(tmp_path / "in", tmp_path / "four", *overrides, "dedup.shards=4")
    assert assert_contract(tmp_path / "four") == sharded
    assert _outputs(tmp_path / "four") == _outputs(tmp_path / "one")
    assert len(json.loads((tmp_path / "four" / "manifest.json").read_text())["shards"]) > 2
