"""A tokenizer laid out exactly like the published Llama-3 (and Llama-3-Taiwan) tokenizers, built offline.

    128,000 byte-level BPE ids, then 256 special tokens at 128,000-128,255: <|begin_of_text|>,
    <|end_of_text|>, <|reserved_special_token_0..3|>, <|start_header_id|>, <|end_header_id|>,
    <|reserved_special_token_4|>, <|eot_id|>, <|reserved_special_token_5..250|>. No <image>, no pad
    token; bos <|begin_of_text|>, eos <|eot_id|> (the Instruct release), Meta's Llama-3 chat template,
    generation_config.json stopping on <|end_of_text|> and <|eot_id|>.

By default the BPE part is the committed debug tokenizer's vocabulary and merges, so real text tokenizes
as it does in the demo; the remaining ids up to 128,000 are filler tokens spelled only with the
byte-level characters of control bytes, so their merges never touch printable text. With
`ranks=META_RANKS` it is Meta's own: the 128,000 BPE ranks of Llama-3's tokenizer.model (which setup
takes from Meta's llama-models wheel on PyPI, scripts/fetch_llama3_tokenizer.sh), converted by
transformers' TikTokenConverter with Llama-3's pre-tokenizer regex, as the published tokenizer.json is.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from tokenizers import pre_tokenizers

REPO = Path(__file__).resolve().parents[2]
META_RANKS = Path(os.environ.get("TWVLM_LLAMA3_RANKS",
                                 REPO / ".venv" / "share" / "nemo_twvlm" / "llama3" / "tokenizer.model"))
BPE_SIZE = 128_000
VOCAB = BPE_SIZE + 256
BOS, EOS_TEXT, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"

# Meta-Llama-3-8B-Instruct's (and Llama-3-Taiwan-70B-Instruct's) template, verbatim.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# A template that renders only user turns: what a careless edit of the template looks like.
USER_ONLY_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<|start_header_id|>user<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def special_tokens() -> list[str]:
    """The 256 names at ids 128,000.. in order (Llama-3, not 3.1, which renamed some reserved ones)."""
    names = [BOS, EOS_TEXT, *(f"<|reserved_special_token_{i}|>" for i in range(4)), HEADER_START, HEADER_END,
             "<|reserved_special_token_4|>", EOT]
    names += [f"<|reserved_special_token_{i}|>" for i in range(5, 5 + 256 - len(names))]
    assert len(names) == 256
    return names


def _bpe_model(debug: dict) -> dict:
    """The debug BPE without its special tokens, padded with control-byte filler tokens to BPE_SIZE ids."""
    specials = {token["content"] for token in debug["added_tokens"]}
    vocab = [token for token, _ in sorted(debug["model"]["vocab"].items(), key=lambda kv: kv[1])
             if token not in specials]
    merges = [" ".join(m) if isinstance(m, list) else m for m in debug["model"]["merges"]]
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    # bytes 0x00-0x1F and 0x7F-0xA0 map to these characters in the byte-level alphabet
    rare = sorted(c for c in byte_chars if 0x100 <= ord(c) <= 0x143)
    known = set(vocab)
    for length in itertools.count(2):
        for combo in itertools.product(rare, repeat=length):
            if len(vocab) == BPE_SIZE:
                return {**debug["model"], "vocab": {t: i for i, t in enumerate(vocab)}, "merges": merges}
            token = "".join(combo)
            if token not in known:
                merges.append(f"{token[:-1]} {token[-1]}")
                vocab.append(token)
                known.add(token)
    raise AssertionError("unreachable")


def _meta_bpe(ranks: Path) -> dict:
    """Meta's BPE (model, pre-tokenizer, decoder) as tokenizer.json spells it, from tokenizer.model."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converted = json.loads(TikTokenConverter(vocab_file=str(ranks)).converted().to_str())
    assert len(converted["model"]["vocab"]) == BPE_SIZE, f"{ranks}: not Llama-3's 128,000 BPE ranks"
    return converted


def write_llama3_tokenizer(directory: Path, *, chat_template: str = CHAT_TEMPLATE, eos: str = EOT,
                           reserved: bool = True, ranks: Path | None = None) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json in the published layout.

    `reserved=False` renames the reserved tokens (a tokenizer with no spare special token); `ranks`
    (Meta's tokenizer.model) gives the real vocabulary instead of the debug one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    debug = json.loads((REPO / "data" / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = _meta_bpe(Path(ranks)) if ranks is not None else {
        "pre_tokenizer": debug["pre_tokenizer"], "decoder": debug["decoder"], "model": _bpe_model(debug)}
    names = special_tokens() if reserved else [
        n.replace("reserved_special_token", "control_token") for n in special_tokens()]
    added = [{"id": BPE_SIZE + i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, name in enumerate(names)]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": bpe["pre_tokenizer"],
        # Llama-3 adds bos through its post-processor.
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {BOS: {"id": BOS, "ids": [BPE_SIZE], "tokens": [BOS]}}},
        "decoder": bpe["decoder"],
        "model": bpe["model"],
    }
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = {
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
        "bos_token": BOS, "chat_template": chat_template, "clean_up_tokenization_spaces": True, "eos_token": eos,
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": BOS, "eos_token": eos}, indent=2),
                                                      encoding="utf-8")
    return directory


def write_generation_config(directory: Path) -> None:
    """Llama-3-Instruct's generation_config.json: stop on <|end_of_text|> or <|eot_id|>."""
    config = {"bos_token_id": BPE_SIZE, "eos_token_id": [BPE_SIZE + 1, BPE_SIZE + 9], "do_sample": True,
              "temperature": 0.6, "top_p": 0.9}
    (Path(directory) / "generation_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def write_published_pair(directory: Path, randomize_, seed: int = 3) -> tuple[Path, Path]:
    """A CLIP vision tower and a Llama-3-layout Llama, both at the debug preset's widths."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from nemo_twvlm.presets import PRESETS

    vision, lm = PRESETS["debug"].vision, PRESETS["debug"].language

    clip, llama = directory / "clip", directory / "llama"
    tower = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=vision.hidden_size, intermediate_size=vision.ffn_hidden_size,
        num_hidden_layers=vision.num_layers, num_attention_heads=vision.num_attention_heads,
        image_size=vision.image_size, patch_size=vision.patch_size))
    randomize_(tower, seed)
    tower.save_pretrained(clip)
    language = LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=lm.hidden_size, intermediate_size=lm.ffn_hidden_size,
        num_hidden_layers=lm.num_layers, num_attention_heads=lm.num_attention_heads,
        num_key_value_heads=lm.num_query_groups, max_position_embeddings=lm.max_position_embeddings,
        rope_theta=lm.rotary_base, rms_norm_eps=lm.norm_epsilon,
        bos_token_id=BPE_SIZE, eos_token_id=BPE_SIZE + 9))
    randomize_(language, seed + 1)
    language.save_pretrained(llama)
    write_llama3_tokenizer(llama)
    write_generation_config(llama)
    return clip, llama


def check_layout(tokenizer) -> None:
    assert len(tokenizer) == VOCAB
    assert tokenizer.convert_tokens_to_ids(BOS) == 128000 and tokenizer.convert_tokens_to_ids(EOT) == 128009
    assert tokenizer.convert_tokens_to_ids("<|reserved_special_token_0|>") == 128002
    assert tokenizer.convert_tokens_to_ids("<|reserved_special_token_250|>") == 128255
    # no `<image>`: it is an ordinary string of BPE ids
    assert tokenizer.convert_tokens_to_ids("<image>") in (None, tokenizer.unk_token_id)


if __name__ == "__main__":
    import sys
    import time

    from transformers import AutoTokenizer

    start = time.perf_counter()
    out = write_llama3_tokenizer(Path(sys.argv[1]))
    tok = AutoTokenizer.from_pretrained(out)
    check_layout(tok)
    print(f"{len(tok)} tokens in {time.perf_counter() - start:.2f} s;",
          tok.apply_chat_template([{"role": "user", "content": "紅色的圓形"}], tokenize=True, add_generation_prompt=True))
