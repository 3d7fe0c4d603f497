from __future__ import annotations

from conftest import text_batch
from curation_inputs import stage_args

from nemo_twvlm.curation.stages.filters.language_id import LanguageIdStage


def test_allowed_languages_pass_others_drop(langid_model, reasons):
    stage = LanguageIdStage(**stage_args("lang", model_path=str(langid_model)))
    batch = stage.process(text_batch("台灣的夜市很熱鬧，小吃很多。", "The night market in Taipei is lively.",
                                     "Der Nachtmarkt in Taipeh ist sehr lebendig und laut.", lang=None))
    assert [s.meta["lang"] for s in batch.data] == ["zh", "en"]
    assert reasons(batch) == {"s2": "lang_not_allowed"}


def test_missing_model_names_the_field(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="lang.model_path="):
        LanguageIdStage(**stage_args("lang", model_path=str(tmp_path / "none.ftz"))).setup_on_node()
