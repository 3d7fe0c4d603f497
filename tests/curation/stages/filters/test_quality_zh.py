from __future__ import annotations

from conftest import text_batch
from curation_inputs import stage_args

from nemo_twvlm.curation.stages.filters.quality_zh import QualityStage


def test_each_threshold_drops_under_its_reason(reasons):
    stage = QualityStage(**stage_args("quality"))  # min 4, max 2000 chars, CJK >= 0.3, repetition 0.5, punct. 0.35
    batch = stage.process(text_batch("台灣的夜市很熱鬧，小吃很多。", "夜市", "夜" * 2001, "Night market, Taipei 台北",
                                     "哈哈哈哈哈哈哈哈哈哈哈哈", "！！！台灣！！！夜市！！！"))
    assert [s.key for s in batch.data] == ["s0"]
    assert reasons(batch) == {"s1": "too_short", "s2": "too_long", "s3": "low_cjk_ratio", "s4": "char_repetition",
                              "s5": "punctuation_ratio"}
    assert batch.data[0].meta["chars"] == 14


def test_cjk_ratio_applies_to_zh_only(reasons):
    stage = QualityStage(**stage_args("quality"))
    assert reasons(stage.process(text_batch("Night market, Taipei", lang="en"))) == {}
