"""The shard search finds the same candidates whether a bucket is searched all-pairs or with
MultiHashIndex, and the single-process stage refuses bands the sharded form could not match."""
from __future__ import annotations

import pytest

from nemo_twvlm.curation.near_dup_search import synthetic_codes
from nemo_twvlm.curation.sample import SignatureBatch
from nemo_twvlm.curation.stages.dedup.banding import Banding, find_candidates, read_shard
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage
from nemo_twvlm.curation.stages.dedup.sharded import DedupPartitionStage

BANDING = Banding(exact=False, image_hamming=6, image_bands=8, caption_jaccard=None, num_perm=64)


def test_index_search_finds_the_all_pairs_candidates(tmp_path):
    codes = synthetic_codes(3_000, 6, seed=7, clustered=0.5, cluster_sizes=(2, 300)).tolist()
    cols = {"index": list(range(len(codes))), "key": [f"k{i}" for i in range(len(codes))],
            "content_sha": [f"{i:032x}" for i in range(len(codes))], "phash": codes,
            "minhash": [None] * len(codes)}
    batch = SignatureBatch(dataset_name="t", data=cols, source="src0", part=0, num_parts=1)
    DedupPartitionStage(str(tmp_path), 1, BANDING).process(batch)
    rows = read_shard(tmp_path, 1, 0, [("src0", 0, 1)])
    all_pairs = find_candidates(rows, image_hamming=6, caption_jaccard=None, index_above=10**9)
    indexed = find_candidates(rows, image_hamming=6, caption_jaccard=None, index_above=0)
    assert len(all_pairs.edges) > 1_000  # clusters make many within-6-bit pairs of distinct values
    assert indexed.edges == all_pairs.edges
    assert indexed.groups == all_pairs.groups and indexed.refs == all_pairs.refs


def test_bands_the_sharded_form_cannot_match_are_refused():
    with pytest.raises(ValueError, match="image_hamming=8 must be in \\[0, image_bands=8\\)"):
        DedupStage(exact=True, image_hamming=8, image_bands=8, caption_jaccard=None, num_perm=64,
                   token_budget=None, joint=False)
