"""The flat lookup pieces: the key bitmap answers exactly, sorted runs find every slot of a key across
their merges, and growable rows keep their slots."""
import numpy as np

from nemo_twvlm.curation.flat_index import Growable, KeyBitmap, SortedRuns


def test_key_bitmap_is_exact_at_the_edges_of_words_and_of_the_key_space():
    bitmap = KeyBitmap()
    keys = np.array([0, 31, 32, 2**32 - 1, 123_456_789], np.uint64)
    bitmap.set(keys)
    assert bitmap.test(keys.astype(np.uint32)).all()
    misses = np.array([1, 30, 33, 2**32 - 2, 123_456_788], np.uint32)
    assert not bitmap.test(misses).any()
    assert bitmap.test(np.array([[0, 1], [31, 33]], np.uint32)).tolist() == [[True, False], [True, False]]


def test_sorted_runs_find_every_slot_across_merges():
    rng = np.random.default_rng(0)
    runs, stored = SortedRuns(), {}
    for batch in range(12):  # 12 x 9,000 pairs: the recent run is merged into the large one on the way
        keys = rng.integers(0, 5_000, 9_000).astype(np.uint64)
        slots = np.arange(batch * 9_000, (batch + 1) * 9_000)
        runs.extend(keys, slots)
        for k, s in zip(keys.tolist(), slots.tolist()):
            stored.setdefault(k, []).append(s)
    assert len(runs) == 108_000
    probe = np.array([0, 17, 4_999, 5_000, 17], np.uint64)  # 5,000 was never stored; 17 asked twice
    which, slots = runs.find(probe)
    for i, k in enumerate(probe.tolist()):
        assert sorted(slots[which == i].tolist()) == stored.get(k, [])


def test_growable_rows_keep_their_slots():
    rows = Growable((3,), np.uint32)
    for start in range(0, 3_000, 700):
        rows.extend(np.arange(start, min(start + 700, 3_000))[:, None].repeat(3, 1))
    assert rows.size == 3_000 and rows[np.array([0, 2_999, 1_500])][:, 0].tolist() == [0, 2_999, 1_500]
