"""MultiHashIndex makes today's decisions (HammingLSH's, and exhaustive search's) at any layout."""
import numpy as np
import pytest

from nemo_twvlm.curation.hashing import HammingLSH
from nemo_twvlm.curation.near_dup_search import (
    FLAT, SMALL, MultiHashIndex, first_kept_within, first_kept_within_exhaustive, layout_for, synthetic_codes,
)

RADIUS = 6


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
    dup_of, dist = first_kept_within(codes, RADIUS)  # the layout picked for 20k codes
    assert layout_for(len(codes)) == SMALL
    np.testing.assert_array_equal(dup_of, want[0])
    np.testing.assert_array_equal(dist, want[1])
    lsh = _hamming_lsh(codes, RADIUS)
    np.testing.assert_array_equal(lsh[0], want[0])
    np.testing.assert_array_equal(lsh[1], want[1])
    kept = int((dup_of < 0).sum())
    assert 3_000 < kept < 17_000 and (dist[dup_of >= 0] <= RADIUS).all() and dist[dup_of >= 0].max() == RADIUS


def test_flat_layout_matches_exhaustive():
    codes = synthetic_codes(3_000, RADIUS, seed=2, cluster_sizes=(2, 500)).tolist()
    want = first_kept_within_exhaustive(codes, RADIUS)
    got = first_kept_within(codes, RADIUS, layout=FLAT, block=256)  # several blocks: flushes between them
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("layout", [SMALL, FLAT])
def test_radius_is_exact_where_pigeonhole_is_tight(layout):
    # 6 differing bits spread evenly over the substrings (the fewest per substring) are found; 7 are not.
    width = layout.bits
    six = sum(1 << ((j % layout.nhash) * width + j // layout.nhash) for j in range(RADIUS))
    index = MultiHashIndex(RADIUS, layout=layout)
    index.add("a", 0)
    index.lookahead([six])  # moves "a" into FAISS
    assert index.query(six) == ("a", RADIUS)
    assert index.query(six | (1 << 63)) is None


def test_drop_in_for_hamming_lsh_with_query_all_and_without_lookahead():
    codes = synthetic_codes(2_000, RADIUS, seed=3, cluster_sizes=(2, 200)).tolist()
    ours, theirs = MultiHashIndex(RADIUS, layout=SMALL, block=64), HammingLSH(RADIUS)
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
    index = MultiHashIndex(RADIUS, expected=len(members))
    for i, h in enumerate(members):
        if index.query(h) is None:
            index.add(i, h)
    assert len(index) == 1
    dup_of, _ = first_kept_within(members, RADIUS)
    assert dup_of[0] == -1 and (dup_of[1:] == 0).all()


def test_bad_radius_is_named():
    with pytest.raises(ValueError, match="max_distance=64"):
        MultiHashIndex(64)
