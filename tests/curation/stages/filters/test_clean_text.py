from __future__ import annotations

from conftest import text_batch
from curation_inputs import stage_args

from nemo_twvlm.curation.stages.filters.clean_text import CleanTextStage


def test_markup_urls_and_whitespace_are_cleaned_and_empty_text_dropped(reasons):
    batch = CleanTextStage(**stage_args("text")).process(text_batch(
        "<b>台灣</b>&amp;夜市  https://example.com/x  很熱鬧", "<p></p> https://a.b", "  夜市\u0000小吃  "))
    assert [s.text for s in batch.data] == ["台灣 &夜市很熱鬧", "夜市小吃"]
    assert reasons(batch) == {"s1": "empty_after_cleaning"}


def test_html_kept_when_configured_off():
    batch = CleanTextStage(**stage_args("text", strip_html=False, strip_urls=False)).process(
        text_batch("<b>台灣</b> https://example.com"))
    assert batch.data[0].text == "<b>台灣</b> https://example.com"
