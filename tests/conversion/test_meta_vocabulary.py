"""The published Llama-3 tokenizer with Meta's own vocabulary (its tokenizer.model, which setup takes from
Meta's llama-models wheel): the layout encodes text as Meta's tiktoken reference does, the chat template
gives Llama-3-Instruct's published ids, and `<image>` lands where the import puts it without moving any
id of the text around it."""
from __future__ import annotations

import pytest

from llama3_layout import BPE_SIZE, META_RANKS, VOCAB, check_layout, write_llama3_tokenizer
from nemo_twvlm.data.synthetic import TAIWAN_LINES
from nemo_twvlm.data.tokenizer import add_image_token, load_tokenizer

# Meta's Llama-3 pre-tokenizer regex (llama_models/llama3/tokenizer.py), for the reference encoder.
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEXTS = [*TAIWAN_LINES, "Hello world", "台北101 at 8:30pm, NT$50 一杯。", "  two  spaces\n\nand\ttabs ",
         "珍珠奶茶（半糖少冰）", "I'll say it's 臺灣, they'd agree."]


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    assert META_RANKS.is_file(), f"{META_RANKS} is missing: scripts/setup.sh fetches it (fetch_llama3_tokenizer.sh)"
    return write_llama3_tokenizer(tmp_path_factory.mktemp("meta") / "tokenizer", ranks=META_RANKS)


def test_the_layout_encodes_as_metas_reference_tokenizer(meta):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    reference = tiktoken.Encoding("llama3", pat_str=PATTERN, mergeable_ranks=load_tiktoken_bpe(str(META_RANKS)),
                                  special_tokens={})
    tokenizer = load_tokenizer(meta)
    check_layout(tokenizer)
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [9906, 1917]  # as published
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text), text
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode("台灣")[0] == BPE_SIZE  # <|begin_of_text|> from the post-processor


def test_the_chat_template_gives_llama3_instructs_ids(meta):
    tokenizer = load_tokenizer(meta)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "台灣"}], tokenize=True,
                                        add_generation_prompt=True, return_dict=False)
    taiwan = tokenizer.encode("台灣", add_special_tokens=False)
    # <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n ... <|eot_id|> ... assistant ...
    assert ids == [128000, 128006, 882, 128007, 271, *taiwan, 128009, 128006, 78191, 128007, 271]


@pytest.mark.parametrize("mode, image_id, size", [("reserved", 128002, VOCAB), ("append", VOCAB, VOCAB + 1)])
def test_the_image_token_leaves_every_text_id_in_place(meta, tmp_path, mode, image_id, size):
    plain = load_tokenizer(meta)
    record = add_image_token(meta, tmp_path / "with_image", mode)
    tokenizer = load_tokenizer(tmp_path / "with_image")
    assert (record.id, len(tokenizer)) == (image_id, size)
    for text in TEXTS:
        assert tokenizer.encode(f"<image>\n{text}", add_special_tokens=False) == \
            [image_id, *plain.encode(f"\n{text}", add_special_tokens=False)], text
        assert tokenizer.encode(text, add_special_tokens=False) == plain.encode(text, add_special_tokens=False)
