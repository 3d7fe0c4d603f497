from __future__ import annotations

from conftest import text_batch
from curation_inputs import REPO, yaml_config

from nemo_twvlm.curation.stages.filters.token_count import TokenCountStage
from nemo_twvlm.data.tokenizer import load_tokenizer


def test_text_tokens_are_the_tokenizers_and_the_cap_drops(reasons):
    tokenizer = str(REPO / "data" / "tokenizer")
    cap = yaml_config().tokens.max_per_sample
    long = "台灣的夜市很熱鬧。" * 2000
    batch = TokenCountStage(tokenizer, 16, max_per_sample=cap).process(text_batch("台灣的夜市很熱鬧。", long))
    (kept,) = batch.data
    assert kept.meta["text_tokens"] == len(load_tokenizer(tokenizer)("台灣的夜市很熱鬧。")["input_ids"])
    assert kept.meta["image_tokens"] == 0
    assert reasons(batch) == {"s1": "too_many_tokens"}
