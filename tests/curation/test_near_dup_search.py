"""MultiHashIndex makes today's decisions (HammingLSH's, and exhaustive search's) in any call order,
probing its bitmaps, scanning a small kept set, or passing from one to the other mid-run."""
import numpy as np
import pytest

from nemo_twvlm.curation import near_dup_search
from nemo_twvlm.curation.hashing import HammingLSH
from nemo_twvlm.curation.near_dup_search import (
    MultiHashIndex, first_kept_within, first_kept_within_exhaustive, flip_masks, synthetic_codes,
)

RADIUS = 6


@pytest.fixture(autouse=True, params=[0, 1_000, near_dup_search.SCAN_BELOW], ids=["probe", "scan-then-probe", "scan"])
def scan_below(request, monkeypatch):
    monkeypatch.setattr(near_dup_search, "SCAN_BELOW", request.param)


def _hamming_lsh(codes, radius):
    index, dup_of, dist = HammingLSH(radius), [], []
    for i, h in enumerate(codes):
        hit = index.query(h)
        if hit is None:
            index.add(i, h)
        dup_of.append(-1 if hit is None else hit[0])
        dist.append(0 if hit is None else hit[1])
    return np.array(dup_of), np.array(dist)


def test_20k_realistic_mix_matches_exhaustive_and_hamming_lsh():
    codes = synthetic_codes(20_000, RADIUS, seed=1).tolist()
    want = first_kept_within_exhaustive(codes, RADIUS)
    dup_of, dist = first_kept_within(codes, RADIUS)
    np.testing.assert_array_equal(dup_of, want[0])
    np.testing.assert_array_equal(dist, want[1])
    lsh = _hamming_lsh(codes, RADIUS)
    np.testing.assert_array_equal(lsh[0], want[0])
    np.testing.assert_array_equal(lsh[1], want[1])
    kept = int((dup_of < 0).sum())
    assert 3_000 < kept < 17_000 and (dist[dup_of >= 0] <= RADIUS).all() and dist[dup_of >= 0].max() == RADIUS


def test_small_blocks_match_exhaustive():
    codes = synthetic_codes(3_000, RADIUS, seed=2, cluster_sizes=(2, 500)).tolist()
    want = first_kept_within_exhaustive(codes, RADIUS)
    got = first_kept_within(codes, RADIUS, block=97)  # many flushes into the bitmaps and runs between blocks
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("low_bits", [3, 2, 0])
def test_radius_is_exact_where_pigeonhole_is_tight(low_bits):
    # 6 differing bits split 3+3, 2+4 or 0+6 over the two 32-bit halves are found; a seventh is not.
    six = sum(1 << b for b in range(low_bits)) | sum(1 << (32 + b) for b in range(RADIUS - low_bits))
    index = MultiHashIndex(RADIUS)
    index.add("a", 0)
    index.lookahead([six])  # moves "a" from pending into the bitmaps
    assert index.query(six) == ("a", RADIUS)
    assert index.query(six | (1 << 31) | (1 << 63)) is None  # 8 bits: 4 + 4
    assert index.query(six | (1 << 40)) is None  # 7 bits


def test_flip_masks_are_every_mask_within_the_flips():
    masks = flip_masks(32, 3)
    assert len(masks) == 1 + 32 + 496 + 4960 == len(set(masks.tolist()))
    assert masks[0] == 0 and max(int(m).bit_count() for m in masks) == 3


def test_drop_in_for_hamming_lsh_with_query_all_and_without_lookahead():
    codes = synthetic_codes(2_000, RADIUS, seed=3, cluster_sizes=(2, 200)).tolist()
    ours, theirs = MultiHashIndex(RADIUS, block=64), HammingLSH(RADIUS)
    for i, h in enumerate(codes):
        assert ours.query_all(h) == theirs.query_all(h)
        assert ours.query(h) == theirs.query(h)
        if i % 3:  # keep some, as the stage keeps only what survives every relation
            ours.add(f"s{i}", h)
            theirs.add(f"s{i}", h)


def test_dense_cluster_is_one_kept_representative():
    # 5,000 copies within 3 bits of one centre (all pairwise within 6): the index ends with one code,
    # and every member is dropped for that one, not for one another.
    rng = np.random.default_rng(4)
    centre = int(rng.integers(0, 2**63))
    members = [centre ^ sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 4)), replace=False))
               for _ in range(5_000)]
    index = MultiHashIndex(RADIUS)
    for i, h in enumerate(members):
        if index.query(h) is None:
            index.add(i, h)
    assert len(index) == 1
    dup_of, _ = first_kept_within(members, RADIUS)
    assert dup_of[0] == -1 and (dup_of[1:] == 0).all()


def test_bad_radius_is_named():
    with pytest.raises(ValueError, match="max_distance=64"):
        MultiHashIndex(64)


def test_lookahead_of_nothing_changes_nothing():
    index = MultiHashIndex(RADIUS)
    index.add("a", 5)
    index.lookahead([])  # a part whose samples have no pHash
    assert index.query(5) == ("a", 0) and index.query_all((1 << 40) - 1) == []
