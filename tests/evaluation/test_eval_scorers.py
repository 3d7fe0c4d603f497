"""Scorers against values worked out by hand (the derivations are in the comments)."""
from __future__ import annotations

import math

import pytest

from nemo_twvlm.evaluation.scorers import (bleu_stats, char_tokenize, cider_d, contains_match, corpus_bleu,
                                           exact_match, extract_choice, normalize_answer, sentence_bleu)


def test_char_tokenize_splits_han_keeps_latin_runs_and_punctuation():
    assert char_tokenize("紅色的 Taipei 101，好！") == ["紅", "色", "的", "Taipei", "101", "，", "好", "！"]
    assert char_tokenize("台北101在左上。") == ["台", "北", "101", "在", "左", "上", "。"]
    assert char_tokenize("A red circle.") == ["A", "red", "circle", "."]
    assert char_tokenize("  ") == []


def test_normalisation_and_accuracy():
    assert normalize_answer(" Ｒｅｄ！ ") == "red"  # NFKC folds full-width letters and punctuation
    assert normalize_answer("紅 色。") == "紅色"
    assert exact_match("紅色。", ["紅色"]) == 1.0
    assert exact_match("RED", ["red", "紅色"]) == 1.0
    assert exact_match("綠色", ["紅色"]) == 0.0
    assert exact_match("這個東西是紅色。", ["紅色"]) == 0.0
    assert contains_match("這個東西是紅色。", ["紅色"]) == 1.0
    assert contains_match("這個東西是綠色。", ["紅色", ""]) == 0.0  # an empty gold never matches


def test_sentence_bleu_one_substitution():
    # hyp 紅色的圓形在左上。 vs ref 綠色的圓形在左上。: 9 tokens each, the first differs.
    # p1 = 8/9, p2 = 7/8, p3 = 6/7, p4 = 5/6 (only the n-grams holding 紅 miss); BP = 1 (c = r = 9).
    # BLEU = (8/9 * 7/8 * 6/7 * 5/6) ** (1/4) = (5/9) ** (1/4) = 0.86334
    expected = (5 / 9) ** 0.25
    for smooth in ("none", "exp"):
        assert sentence_bleu("紅色的圓形在左上。", ["綠色的圓形在左上。"], smooth=smooth) == pytest.approx(expected)
    assert expected == pytest.approx(0.86334, abs=1e-5)
    assert sentence_bleu("紅色的圓形在左上。", ["紅色的圓形在左上。"]) == pytest.approx(1.0)


def test_bleu_clipping_multi_reference_and_smoothing():
    # hyp 左上左上 (4 tokens), refs 左上。 / 在左上 (3 tokens each): r = 3 < c = 4, so BP = 1.
    # 1-grams: 左 x2, 上 x2, each clipped to 1 (max count in any one reference): 2/4
    # 2-grams: 左上 x2 (clipped to 1), 上左 x1 (absent): 1/3
    # 3-grams: 左上左, 上左上: 0/2;  4-grams: 左上左上: 0/1
    stats = bleu_stats(char_tokenize("左上左上"), [char_tokenize("左上。"), char_tokenize("在左上")])
    assert (stats.matches, stats.totals, stats.hyp_len, stats.ref_len) == ([2, 1, 0, 0], [4, 3, 2, 1], 4, 3)
    assert sentence_bleu("左上左上", ["左上。", "在左上"], smooth="none", effective_order=False) == 0.0
    # exp: the k-th zero-match order gets 1 / (2^k * total): p3 = 1/(2*2), p4 = 1/(4*1)
    # BLEU = (1/2 * 1/3 * 1/4 * 1/4) ** (1/4) = (1/96) ** (1/4) = 0.31947
    assert sentence_bleu("左上左上", ["左上。", "在左上"], smooth="exp") == pytest.approx((1 / 96) ** 0.25)
    # add1 (orders >= 2): p2 = 2/4, p3 = 1/3, p4 = 1/2 -> (1/2 * 1/2 * 1/3 * 1/2) ** (1/4) = (1/24) ** (1/4)
    assert sentence_bleu("左上左上", ["左上。", "在左上"], smooth="add1", effective_order=False) == pytest.approx(
        (1 / 24) ** 0.25)


def test_bleu_brevity_penalty_and_closest_reference_length():
    # hyp 左上 (2) vs refs of 3 and 9 tokens: closest r = 3, BP = exp(1 - 3/2); p1 = 2/2, p2 = 1/1 and
    # no 3- or 4-grams: with effective order BLEU = exp(-1/2) * (1 * 1) ** (1/2) = 0.60653
    refs = ["在左上", "紅色的圓形在左上。"]
    assert sentence_bleu("左上", refs) == pytest.approx(math.exp(-0.5))
    assert sentence_bleu("左上", refs, smooth="none", effective_order=False) == 0.0
    # Tie: hyp of 4 tokens, refs of 3 and 5 -> the shorter (3) counts, so c > r and BP = 1.
    # 紅色圓形 vs 紅色的 / 紅色的圓形: p1 = 4/4, p2 = 2/3 (色圓 misses), p3 = 1/(2*2), p4 = 1/(4*1) (exp)
    stats = bleu_stats(char_tokenize("紅色圓形"), [char_tokenize("紅色的"), char_tokenize("紅色的圓形")])
    assert stats.ref_len == 3
    assert sentence_bleu("紅色圓形", ["紅色的", "紅色的圓形"]) == pytest.approx((1 * 2 / 3 / 4 / 4) ** 0.25)
    assert sentence_bleu("", ["紅色"]) == 0.0


def test_corpus_bleu_sums_statistics_before_the_mean():
    # Segment 1 (above): matches 8,7,6,5 of 9,8,7,6; c = r = 9.  Segment 2: 左上 vs 在左上: 2,1,0,0 of
    # 2,1,0,0; c = 2, r = 3.  Sums: 10/11, 8/9, 6/7, 5/6; c = 11, r = 12 -> BP = exp(1 - 12/11).
    # BLEU = exp(-1/11) * (10/11 * 8/9 * 6/7 * 5/6) ** (1/4) = exp(-1/11) * (400/693) ** (1/4) = 0.79589
    hyps = ["紅色的圓形在左上。", "左上"]
    refs = [["綠色的圓形在左上。"], ["在左上"]]
    expected = math.exp(-1 / 11) * (400 / 693) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    assert corpus_bleu(hyps, refs, smooth="none") == pytest.approx(expected)
    assert expected == pytest.approx(0.79589, abs=1e-5)
    # Pre-tokenised input (lists of tokens) gives the same.
    assert corpus_bleu([char_tokenize(h) for h in hyps], [[char_tokenize(r) for r in rs] for rs in refs]) == \
        pytest.approx(expected)
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [])


def test_cider_d_two_samples_idf():
    # N = 2, idf(g) = ln 2 - ln df(g). df: 紅 1, 圓 2, 綠 1, 紅圓 1, 綠圓 1, so 圓 weighs 0 and the rest ln 2.
    # Sample 1 (紅圓 vs 紅圓): cosine 1 for n = 1, 2; no 3-/4-grams -> 0. 10 * mean(1, 1, 0, 0) = 5.
    # Sample 2 (紅圓 vs 綠圓): the only shared n-gram is 圓, of weight 0 -> 0.
    score, per = cider_d(["紅圓", "紅圓"], [["紅圓"], ["綠圓"]])
    assert per == pytest.approx([5.0, 0.0])
    assert score == pytest.approx(2.5)
    # A one-sample corpus has idf ln 1 - ln 1 = 0 everywhere (coco-caption's definition).
    assert cider_d(["紅圓"], [["紅圓"]])[0] == 0.0


def test_cider_d_three_samples_length_penalty_and_references():
    # N = 3. df over each sample's reference set: 紅 1, 圓 2, 方 2, 紅圓 1, 紅方 1, 綠 1, 綠方 1, 藍 1, 藍圓 1.
    # Weights tf * (ln 3 - ln df): a = ln 3 for df 1 (and for unseen n-grams, df 0), b = ln 3 - ln 2 for df 2.
    a, b = math.log(3), math.log(1.5)
    g = math.exp(-1 / (2 * 6.0 ** 2))  # Gaussian length penalty for a length difference of 1, sigma 6
    # s1: 紅圓 vs {紅圓, 紅方}. vs 紅圓: cosine 1 for n = 1, 2. vs 紅方: n = 1 dot a*a over |(a,b)|^2, n = 2: 0.
    #     10 * ((1 + 1) + a^2/(a^2+b^2)) / 4 n-orders / 2 references
    s1 = 10 * (2 + a * a / (a * a + b * b)) / 4 / 2
    # s2: 綠方形 (3 tokens) vs 綠方 (2): n = 1: hyp (綠 a, 方 b, 形 a), ref (綠 a, 方 b): (a^2+b^2) /
    #     (sqrt(2a^2+b^2) sqrt(a^2+b^2)); n = 2: hyp (綠方 a, 方形 a), ref (綠方 a): a^2 / (sqrt2 a * a); n = 3: 0.
    s2 = 10 * g * (math.sqrt(a * a + b * b) / math.sqrt(2 * a * a + b * b) + 1 / math.sqrt(2)) / 4
    # s3: 藍 vs 藍圓: n = 1: a*a / (a * sqrt(a^2+b^2)); nothing else; length difference 1.
    s3 = 10 * g * (a / math.sqrt(a * a + b * b)) / 4
    score, per = cider_d(["紅圓", "綠方形", "藍"], [["紅圓", "紅方"], ["綠方"], ["藍圓"]])
    assert per == pytest.approx([s1, s2, s3])
    assert per == pytest.approx([3.60014, 3.54149, 2.31301], abs=1e-4)  # the same, worked out on paper
    assert score == pytest.approx((s1 + s2 + s3) / 3)


def test_cider_d_clips_repeated_ngrams():
    # Repeating a matching word cannot raise the score: the hypothesis weight is clipped at the reference's.
    _, once = cider_d(["紅圓", "綠方"], [["紅圓"], ["綠方"]])
    _, twice = cider_d(["紅紅圓", "綠方"], [["紅圓"], ["綠方"]])
    assert twice[0] < once[0]


@pytest.mark.parametrize("text, expected", [
    ("B", 1), ("B.", 1), ("(B)", 1), ("（B）綠色", 1), ("B. 綠色", 1), ("B、綠色", 1), ("B：綠色", 1),
    ("答案是B", 1), ("答案：(C)", 2), ("正確答案是 D。", 3), ("The answer is C.", 2), ("Answer: A", 0),
    ("我選（C）", 2), ("選項D", 3), ("綠色", 1), ("這個東西是藍色。", 2), ("It is 紅色.", 0),
    ("A red circle.", None),  # an English article, not option A
    ("紅色或綠色", None),  # two options named: no answer
    ("我不知道", None), ("", None), ("b", None), ("Blue", None),
])
def test_extract_choice(text, expected):
    assert extract_choice(text, ["紅色", "綠色", "藍色", "黃色"]) == expected


def test_extract_choice_nested_options_and_custom_labels():
    options = ["紅色", "深紅色", "綠色"]
    assert extract_choice("是深紅色。", options) == 1  # 紅色 occurs only inside 深紅色
    assert extract_choice("紅色", options) == 0
    assert extract_choice("乙", ["紅色", "綠色"], ["甲", "乙"]) == 1
    assert extract_choice("答案是甲", ["紅色", "綠色"], ["甲", "乙"]) == 0
