"""Train the debug byte-level BPE tokenizer on the synthetic corpus and save it for AutoTokenizer.

    python scripts/train_tokenizer.py [--out data/tokenizer] [--vocab-size 1024]

Han characters are pre-split one by one, except the caption attribute words (紅色, 珍珠奶茶, 左上, ...),
which stay whole. Merges therefore never cross a word boundary, so tokenizing a probe prefix and an
option separately gives exactly the tokens of the full caption, and captions do not collapse
into single whole-sentence tokens. There is no post-processor: bos is added by the chat template
or the caller, never implicitly.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer

from nemo_twvlm.data.synthetic import corpus_lines
from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption

BOS, EOS, PAD, IMAGE = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<image>"
HEADER_START, HEADER_END, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
SPECIAL_TOKENS = [BOS, EOS, HEADER_START, HEADER_END, EOT, IMAGE, PAD]  # ids 0..6 in this order

# Meta-Llama-3-8B-Instruct's template.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Llama-3's pre-tokenizer pattern. Unlike GPT-2's, it keeps a run of newlines whole whatever follows,
# so the chat template's "<|end_header_id|>\n\n" tokenizes the same alone (generation prompt) and
# before an answer, which the assistant-only loss mask relies on.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "tokenizer"


def training_text():
    yield from corpus_lines()
    # Every chat turn holds a role name and "\n\n"; repeat them like frequent text so they get merged.
    for _ in range(100):
        yield from ("system", "user", "assistant", "\n\n")


def build(vocab_size: int = 1024) -> Tokenizer:
    # Longest first so the alternation prefers whole words; sorted fully so the file is reproducible.
    words = sorted({a.zh for a in COLORS + OBJECTS + POSITIONS}, key=lambda w: (-len(w), w))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("|".join(words) + r"|\p{Han}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer)
    return tok


def save(tok: Tokenizer, out: Path) -> None:
    """Write the three files by hand: `save_pretrained` output differs between transformers 4 and 5
    (v5 drops special_tokens_map.json and moves the chat template out of tokenizer_config.json),
    while this layout loads in both."""
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
               "additional_special_tokens": [HEADER_START, HEADER_END, EOT, IMAGE]}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "clean_up_tokenization_spaces": False,  # decode must return the exact text
        "model_max_length": 1024,
        "chat_template": CHAT_TEMPLATE,
    }
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check(tokenizer) -> None:
    """Fail loudly if the saved tokenizer breaks what training and evaluation rely on."""
    for c in COLORS:
        for o in OBJECTS:
            for p in POSITIONS:
                text = caption({"color": c.key, "object": o.key, "position": p.key}, "zh")
                ids = tokenizer.encode(text, add_special_tokens=False)
                assert tokenizer.decode(ids) == text, text
    for token in SPECIAL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vocab-size", type=int, default=1024)
    args = parser.parse_args(argv)
    save(build(args.vocab_size), args.out)
    tokenizer = AutoTokenizer.from_pretrained(args.out)
    check(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    print(f"saved {args.out}: vocab size {len(tokenizer)}, special token ids {ids}")


if __name__ == "__main__":
    main()
