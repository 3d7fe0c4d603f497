"""The shard search finds the same candidates whether a bucket is searched all-pairs or with
MultiHashIndex, and the single-process stage refuses bands the sharded form could not match."""
from __future__ import annotations

import pytest

from nemo_twvlm.curation.near_dup_search import synthetic_codes
from nemo_twvlm.curation.sample import SignatureBatch
from nemo_twvlm.curation.stages.dedup.banding import IMAGE, Banding, find_candidates, read_shard
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
    for dense_degree in (10**9, None):  # every pair an edge; the default, dense values left to the merge
        all_pairs = find_candidates(rows, image_hamming=6, caption_jaccard=None, index_above=10**9,
                                    dense_degree=dense_degree)
        # The index on the clusters' buckets only: each index maps two 512 MiB bitmaps, slow to do 10^4 times.
        indexed = find_candidates(rows, image_hamming=6, caption_jaccard=None, index_above=40,
                                  dense_degree=dense_degree)
        assert indexed.edges == all_pairs.edges and indexed.dense == all_pairs.dense
        assert indexed.groups == all_pairs.groups and indexed.refs == all_pairs.refs
        if dense_degree is None:
            assert len(all_pairs.dense[IMAGE]) > 100
        else:
            assert len(all_pairs.edges) > 1_000  # clusters make many within-6-bit pairs of distinct values


def test_bands_the_sharded_form_cannot_match_are_refused():
    with pytest.raises(ValueError, match="image_hamming=8 must be in \\[0, image_bands=8\\)"):
        DedupStage(exact=True, image_hamming=8, image_bands=8, caption_jaccard=None, num_perm=64,
                   token_budget=None, joint=False)
