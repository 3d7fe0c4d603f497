"""Chinese-aware text helpers: cleaning, script detection and normalisation, quality metrics."""
from __future__ import annotations

import pytest

from nemo_twvlm.curation.zh import (
    ScriptDetector,
    clean_text,
    count_cjk,
    dedup_normalise,
    is_cjk,
    looks_chinese,
    quality_metrics,
    shingles,
)


@pytest.mark.parametrize("raw, clean", [
    ("&lt;b&gt;台北&lt;/b&gt;的夜景", "台北的夜景"),
    ("看這裡https://example.com/a?b=1台北101", "看這裡台北101"),
    ("  紅色 的\t圓形\n\n在左上。 ", "紅色的圓形在左上。"),
    ("A  red\u200b circle &amp;amp; a square", "A red circle & a square"),
    ("全形標點：「你好」，保持不變。", "全形標點：「你好」，保持不變。"),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize("text, script", [
    ("紅色的圓形在左上。", "zh-Hant"),
    ("红色的圆形在左上。", "zh-Hans"),
    ("在左上", "ambiguous"),
    ("台北101", "ambiguous"),           # 台 is everyday zh-TW, not Simplified evidence
    ("太魯閣峽谷的大理石岩壁很美。", "zh-Hant"),
    ("这个東西很好", "mixed"),
    ("我們的軟體很好用，这里", "zh-Hant"),  # one stray Simplified character among many Traditional
])
def test_script_detection(text, script):
    assert ScriptDetector().detect(text) == script


def test_s2twp_uses_taiwan_vocabulary():
    assert ScriptDetector().to_taiwan("我们的软件和鼠标") == "我們的軟體和滑鼠"


def test_looks_chinese():
    assert looks_chinese("台北101是台北很高的大樓")
    assert not looks_chinese("東京タワーは高い")        # kana: Japanese
    assert not looks_chinese("오늘 날씨가 좋다")
    assert not looks_chinese("Taipei 101 is tall")


def test_quality_metrics():
    assert quality_metrics("哈哈哈哈哈哈哈哈哈哈")["char_repetition"] > 0.8
    normal = quality_metrics("夜市裡有雞排、蚵仔煎、臭豆腐和滷肉飯。")
    assert normal["char_repetition"] == 0 and normal["cjk_ratio"] == 1.0
    assert 0.1 < normal["punctuation_ratio"] < 0.3
    assert quality_metrics("Taipei 台北")["cjk_ratio"] == pytest.approx(2 / 8)


def test_letters_and_cjk_are_counted_per_character_in_mixed_text():
    # Ideographs of the URO, extension B and compatibility blocks, bopomofo, kana, hangul, Latin, digits.
    text = "Taipei 101 台北𠀀豈ㄅㄆ、かな한글 café x２３！台灣"
    assert count_cjk(text) == sum(is_cjk(ch) for ch in text) == 8
    joined = text.replace(" ", "")
    letters = sum(ch.isalpha() for ch in joined)
    digits = sum(ch.isdecimal() for ch in joined)
    metrics = quality_metrics(text)
    assert metrics["cjk_ratio"] == pytest.approx(8 / letters)
    assert metrics["punctuation_ratio"] == pytest.approx((len(joined) - letters - digits) / len(joined))


def test_dedup_normalisation_and_shingles():
    assert dedup_normalise(" 紅色的圓形，在左上！！ ") == dedup_normalise("紅色的圓形在左上")
    assert dedup_normalise("ＡＢＣ abc") == "abcabc"
    assert shingles("台北市", 3) == {"台北市"} and shingles("台北", 3) == {"台北"}
    assert shingles("台北市區", 3) == {"台北市", "北市區"}
