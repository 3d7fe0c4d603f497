from __future__ import annotations

import numpy as np
from curation_inputs import stage_args

from nemo_twvlm.curation.hashing import TextMinHasher
from nemo_twvlm.curation.sample import SignatureBatch
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage
from nemo_twvlm.curation.zh import dedup_normalise, shingles


def _stage(**changes) -> DedupStage:
    d = stage_args("dedup")
    return DedupStage(exact=d["exact"], image_hamming=d["image_hamming"], image_bands=d["image_bands"],
                      caption_jaccard=d["caption_jaccard"], num_perm=d["num_perm"], **({"token_budget": None,
                      "joint": False} | changes))


def _part(source: str, rows: list[tuple[str, int | None, str, int]], part=0, num_parts=1) -> SignatureBatch:
    hasher, shingle = TextMinHasher(stage_args("dedup")["num_perm"]), stage_args("dedup")["shingle"]
    cols = {"index": [], "key": [], "content_sha": [], "phash": [], "minhash": [], "text_tokens": [], "image_tokens": []}
    for i, (sha, phash, caption, tokens) in enumerate(rows):
        for name, value in zip(cols, (i, f"k{i}", sha, phash, hasher(shingles(dedup_normalise(caption), shingle)),
                                      tokens, 0)):
            cols[name].append(value)
    return SignatureBatch(dataset_name="t", data=cols, source=source, part=part, num_parts=num_parts)


CAPTION = "台灣的夜市很熱鬧，小吃很多，大家都很喜歡去逛街吃東西。"
# pHashes far apart (random 64-bit values are ~32 bits apart); NEAR is FAR[0] with 3 bits flipped.
FAR = [int(v) for v in np.random.default_rng(0).integers(0, 2**63, 8)]
NEAR = FAR[0] ^ 0b111


def test_first_of_each_cluster_survives_across_sources():
    a = _part("a", [("x", FAR[0], CAPTION, 10), ("y", NEAR, "完全不同的另一句話，關於山上的寺廟。", 10)])
    b = _part("b", [("x", FAR[1], "別的句子", 10), ("z", FAR[2], CAPTION + "。", 10), ("w", FAR[3], "再一個不同的句子喔", 10)])
    decisions = {d.source: d.data for d in _stage().process_batch([b, a])}  # task order does not matter
    assert decisions["a"] == {1: ("near_duplicate_image", "3 bits from a/k0")}
    assert set(decisions["b"]) == {0, 1}
    assert decisions["b"][0] == ("exact_duplicate", "same as a/k0")
    assert decisions["b"][1][0] == "near_duplicate_caption"


def test_token_budget_keeps_input_order():
    captions = ["台灣的夜市很熱鬧", "山上的寺廟很安靜", "台北一零一很高", "珍珠奶茶很好喝", "海邊的風很大"]
    rows = [(f"s{i}", FAR[i], caption, 10) for i, caption in enumerate(captions)]
    decisions = _stage(token_budget=25).process_batch([_part("a", rows)])[0].data
    assert sorted(decisions) == [2, 3, 4] and decisions[2][0] == "over_token_budget"
