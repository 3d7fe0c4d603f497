"""The committed debug tokenizer (data/tokenizer): lossless on captions, Llama-3 specials and chat template."""
from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from nemo_twvlm.data.synthetic import corpus_lines, probes
from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT / "data" / "tokenizer"
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<image>", "<|pad|>"]
ALL_METAS = [{"color": c.key, "object": o.key, "position": p.key}
             for c, o, p in itertools.product(COLORS, OBJECTS, POSITIONS)]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def test_files_and_size(tokenizer):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (TOKENIZER_DIR / name).is_file()
    assert len(tokenizer) <= 1024


def test_special_tokens(tokenizer):
    assert tokenizer.convert_tokens_to_ids(SPECIALS) == list(range(len(SPECIALS)))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
    for token in SPECIALS:
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    ids = tokenizer.encode("<image>\n紅色的圓形在左上。", add_special_tokens=False)
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    # No implicit bos/eos: the chat template and the data pipeline place them.
    assert tokenizer("紅色").input_ids == tokenizer.encode("紅色", add_special_tokens=False)


def test_round_trip(tokenizer):
    for line in itertools.chain((caption(m, lang) for m in ALL_METAS for lang in ("zh", "en")), corpus_lines()):
        assert tokenizer.decode(tokenizer.encode(line, add_special_tokens=False)) == line


def test_probe_prefix_and_option_tokenize_independently(tokenizer):
    # Scoring an option after a prefix must see the same tokens as the caption the model trained on.
    def enc(text):
        return tokenizer.encode(text, add_special_tokens=False)

    for meta in ALL_METAS:
        for probe in probes(meta):
            for option in probe["options"]:
                assert enc(probe["prefix"] + option) == enc(probe["prefix"]) + enc(option)


def test_chat_template(tokenizer):
    messages = [{"role": "user", "content": "<image>\n請用一句話描述這張圖。"},
                {"role": "assistant", "content": "紅色的珍珠奶茶在左上。"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<image>\n請用一句話描述這張圖。<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n紅色的珍珠奶茶在左上。<|eot_id|>")
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_committed_tokenizer_is_what_the_script_trains():
    # Fails when the corpus or the script changed without rerunning scripts/train_tokenizer.py.
    spec = importlib.util.spec_from_file_location("train_tokenizer", ROOT / "scripts" / "train_tokenizer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fresh = json.loads(script.build().to_str())
    assert fresh == json.loads((TOKENIZER_DIR / "tokenizer.json").read_text(encoding="utf-8"))
