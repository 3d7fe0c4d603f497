"""Instruction-following probe: prompts about an image, each with a constraint a function can check.

Constraint families (the keys of `PROMPTS`; the family names of data/synthetic_instructions.py):
    language_zh  answer in Traditional Chinese: Han characters dominate (at least 2 per Latin word) and
                 none of a list of simplified-only characters appears
    language_en  answer in English: Latin words and no Han character
    max_chars    answer no longer than N characters (surrounding whitespace excluded), with some content
    list         a list: at least 2 non-empty lines, each starting with "-", "*", "•" or "1." / "1)" / "1、"
    yes_no       nothing but yes or no: "是" / "否" / "yes" / "no" (case and end punctuation ignored)

`PROMPTS` is what the probe asks. `TRAIN_PROMPTS` holds other phrasings of the same families with the
same checkers, for SFT data that must not contain the probe's own prompts (tested: disjoint from
`PROMPTS`). The synthetic generator does not draw from it: its SFT split comes from
data/synthetic_instructions.py, whose answers are tested against `FAMILY_CHECKS` and whose prompts
against `PROMPTS`, so that the probe measures whether a constraint was learnt rather than whether a
prompt was memorised. Every entry is an `IFPrompt(template, check, answer)`: `template.format(**fields)`
is the prompt, `answer.format(**fields)` a reply that satisfies `check` (a tested invariant: every entry,
every synthetic attribute combination), where `fields = template_fields(meta, ask_true)` for a synthetic
sample's metadata.

Importing this module needs only the standard library and the demo's world (data/world.py): no torch,
no megatron. `run_suite`/`run_probe` import the generation stack when called.
"""
from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption

# --- checkers -----------------------------------------------------------------------------------------

_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN_WORD_RE = re.compile(r"[A-Za-z]+")
# Simplified forms that Traditional Chinese text never uses (common words and this domain's vocabulary).
SIMPLIFIED_ONLY = frozenset(
    "这们来时说为国过还发对没门间样东车马鸟龙语请问题吗见让认记红绿蓝黄圆图颜边张庙顶个湾机两带从实无开关现"
)


def answer_language(text: str) -> str:
    """'zh', 'en', 'mixed' or 'none', from character classes: Han characters vs Latin words."""
    han = len(_HAN_RE.findall(text))
    words = len(_LATIN_WORD_RE.findall(text))
    if han == 0 and words == 0:
        return "none"
    if han == 0:
        return "en"
    if han >= 2 * words:
        return "zh"
    return "mixed"


def is_traditional_chinese(text: str) -> bool:
    return answer_language(text) == "zh" and not any(ch in SIMPLIFIED_ONLY for ch in text)


def is_english(text: str) -> bool:
    return answer_language(text) == "en"


class MaxChars:
    """Checker: at most `limit` characters once surrounding whitespace is stripped, and some content
    (a letter, digit or Han character: a lone "。" is not an answer)."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, text: str) -> bool:
        text = text.strip()
        return len(text) <= self.limit and any(ch.isalnum() for ch in text)

    def __repr__(self) -> str:
        return f"MaxChars({self.limit})"

    def __eq__(self, other) -> bool:
        return isinstance(other, MaxChars) and other.limit == self.limit

    def __hash__(self) -> int:
        return hash(("MaxChars", self.limit))


_ITEM_RE = re.compile(r"^\s*(?:[-*•]|\d{1,2}\s*[.)、．])\s*\S")


def is_list(text: str) -> bool:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return len(lines) >= 2 and all(_ITEM_RE.match(line) for line in lines)


_YES, _NO = {"是", "yes"}, {"否", "no"}
_EDGE_PUNCT = "。.!！?？,，、:：;；\"'「」『』()（） \t\r\n"


def yes_no_value(text: str) -> bool | None:
    """True for a bare yes, False for a bare no, None for anything else."""
    word = unicodedata.normalize("NFKC", text).strip(_EDGE_PUNCT).casefold()
    return True if word in _YES else False if word in _NO else None


def is_yes_no(text: str) -> bool:
    return yes_no_value(text) is not None


# --- prompts ------------------------------------------------------------------------------------------

class IFPrompt(NamedTuple):
    template: str  # str.format template over template_fields()
    check: Callable[[str], bool]
    answer: str  # a compliant reply, same fields


CONSTRAINTS = ("language_zh", "language_en", "max_chars", "list", "yes_no")
CONSTRAINT_DESCRIPTIONS = {
    "language_zh": "answer in Traditional Chinese",
    "language_en": "answer in English",
    "max_chars": "answer within a character limit",
    "list": "answer as a bulleted or numbered list",
    "yes_no": "answer only yes/no (是/否)",
}

# One checker per family, for data that carries no per-prompt limit (the SFT generator's own prompts):
# max_chars uses the probe's tightest limit.
FAMILY_CHECKS: dict[str, Callable[[str], bool]] = {
    "language_zh": is_traditional_chinese, "language_en": is_english, "max_chars": MaxChars(10), "list": is_list,
    "yes_no": is_yes_no,
}

_LIST_ZH = "- 顏色：{color_zh}\n- 形狀：{object_zh}\n- 位置：{position_zh}"
_LIST_EN = "1. Color: {color_en}\n2. Shape: {object_en}\n3. Position: {position_en}"

PROMPTS: dict[str, list[IFPrompt]] = {
    "language_zh": [
        IFPrompt("What color is the object? Please answer in Traditional Chinese.", is_traditional_chinese,
                 "這個東西是{color_zh}。"),
        IFPrompt("Describe this image in Traditional Chinese.", is_traditional_chinese, "{caption_zh}"),
        IFPrompt("請用繁體中文回答：圖中是什麼東西？", is_traditional_chinese, "這是{object_zh}。"),
    ],
    "language_en": [
        IFPrompt("請用英文回答：圖中的東西是什麼顏色？", is_english, "It is {color_en}."),
        IFPrompt("Describe this image in English.", is_english, "{caption_en}"),
        IFPrompt("這張圖片裡有什麼？請用英文回答。", is_english, "There is a {object_en} in the image."),
    ],
    "max_chars": [
        IFPrompt("請用不超過10個字回答：圖中是什麼東西？", MaxChars(10), "{object_zh}。"),
        IFPrompt("In at most 20 characters: what color is the object?", MaxChars(20), "{color_en}."),
        IFPrompt("請用一句不超過15個字的話描述這張圖。", MaxChars(15), "{caption_zh}"),
    ],
    "list": [
        IFPrompt("請用條列式列出圖中東西的顏色、形狀和位置，每行以「-」開頭。", is_list, _LIST_ZH),
        IFPrompt("List the color, shape and position of the object as a numbered list.", is_list, _LIST_EN),
    ],
    "yes_no": [
        IFPrompt("圖中的東西是{asked_color_zh}的嗎？請只回答「是」或「否」。", is_yes_no, "{yes_no_zh}"),
        IFPrompt("Is the object in the image {asked_color_en}? Answer only yes or no.", is_yes_no, "{yes_no_en}"),
        IFPrompt("圖中的東西在{asked_position_zh}嗎？只回答是或否。", is_yes_no, "{yes_no_zh}"),
    ],
}

TRAIN_PROMPTS: dict[str, list[IFPrompt]] = {
    "language_zh": [
        IFPrompt("Answer in Traditional Chinese: what is in the picture?", is_traditional_chinese,
                 "圖中是{color_zh}的{object_zh}。"),
        IFPrompt("Where is the object? Reply in Chinese.", is_traditional_chinese, "它在{position_zh}。"),
        IFPrompt("請用中文描述這張圖片。", is_traditional_chinese, "{caption_zh}"),
    ],
    "language_en": [
        IFPrompt("What is in the image? Answer in English.", is_english, "A {object_en}."),
        IFPrompt("請以英文描述圖片。", is_english, "{caption_en}"),
        IFPrompt("它在圖片的哪個位置？請用英文回答。", is_english, "It is at the {position_en}."),
    ],
    "max_chars": [
        IFPrompt("用不超過8個字回答：它在哪裡？", MaxChars(8), "{position_zh}。"),
        IFPrompt("Describe the image in at most 40 characters.", MaxChars(40),
                 "{color_en} {object_en}, {position_en}."),
        IFPrompt("請用五個字以內說出它的顏色。", MaxChars(5), "{color_zh}。"),
    ],
    "list": [
        IFPrompt("請用編號清單（1. 2. 3.）說明這張圖片的顏色、形狀和位置。", is_list,
                 "1. 顏色：{color_zh}\n2. 形狀：{object_zh}\n3. 位置：{position_zh}"),
        IFPrompt("Describe the object as a bulleted list, one item per line starting with '-'.", is_list,
                 "- Color: {color_en}\n- Shape: {object_en}\n- Position: {position_en}"),
    ],
    "yes_no": [
        IFPrompt("這是{asked_object_zh}嗎？請回答是或否。", is_yes_no, "{yes_no_zh}"),
        IFPrompt("Is there a {asked_object_en} in the picture? Reply with yes or no only.", is_yes_no,
                 "{yes_no_en}"),
        IFPrompt("Is the object at the {asked_position_en}? Answer yes or no.", is_yes_no, "{yes_no_en}"),
    ],
}


def template_fields(meta: dict, ask_true: bool = True, rng: random.Random | None = None) -> dict[str, str]:
    """Format fields for a synthetic sample's metadata (its color/object/position keys).

    asked_* name the true attribute when `ask_true`, otherwise another value of it (drawn with `rng`,
    or the next one in the table); yes_no_zh / yes_no_en are the correct bare answers.
    """
    tables = {"color": COLORS, "object": OBJECTS, "position": POSITIONS}
    fields = {"caption_zh": caption(meta, "zh"), "caption_en": caption(meta, "en"),
              "yes_no_zh": "是" if ask_true else "否", "yes_no_en": "yes" if ask_true else "no"}
    for name, table in tables.items():
        keys = [entry.key for entry in table]
        index = keys.index(meta[name])
        if ask_true:
            asked = index
        else:
            others = [i for i in range(len(table)) if i != index]
            asked = rng.choice(others) if rng is not None else (index + 1) % len(table)
        for suffix, i in (("", index), ("asked_", asked)):
            entry = table[i]
            fields[f"{suffix}{name}_zh"] = entry.zh
            fields[f"{suffix}{name}_en"] = entry.key if name == "color" else entry.en
    return fields


# --- the suite ----------------------------------------------------------------------------------------

@dataclass
class ProbePrompt:
    constraint: str
    template_id: str  # "<constraint>/<index in PROMPTS[constraint]>"
    prompt: str
    check: Callable[[str], bool]
    image: Any  # [3, H, W] float tensor in [0, 1]
    meta: dict = field(default_factory=dict)
    expected_yes: bool | None = None  # yes/no prompts: the correct answer
    sample: int = 0  # index of the image in the samples


def default_suite(samples, *, seed: int = 0, prompts: dict[str, list[IFPrompt]] | None = None) -> list[ProbePrompt]:
    """One prompt per constraint family per sample (templates rotate over samples; yes/no questions
    alternate between true and false attributes), for samples of (image tensor, synthetic metadata)."""
    prompts = prompts or PROMPTS
    rng = random.Random(seed)
    suite = []
    for s, (image, meta) in enumerate(samples):
        ask_true = s % 2 == 0
        fields = template_fields(meta, ask_true, rng)
        for constraint, entries in prompts.items():
            k = s % len(entries)
            entry = entries[k]
            suite.append(ProbePrompt(constraint, f"{constraint}/{k}", entry.template.format(**fields), entry.check,
                                     image, dict(meta), ask_true if constraint == "yes_no" else None, s))
    return suite


def names_true_attribute(answer: str, meta: dict) -> bool:
    """Whether the answer names the image's true colour, object or position (in Chinese or English)."""
    fields = template_fields(meta)
    text = answer.casefold()
    return any(fields[f"{name}_{lang}"].casefold() in text
               for name in ("color", "object", "position") for lang in ("zh", "en"))


def score_answers(suite: list[ProbePrompt], answers: list[str]) -> list[dict]:
    """One record per prompt: the answer, whether it complies, and whether it is about the image:
    yes/no prompts record `correct`, the others `grounded` (names a true attribute). Compliance is
    about form only: a degenerate "這張：。" complies with language_zh; `grounded` tells the two apart."""
    records = []
    for item, answer in zip(suite, answers, strict=True):
        record = {"constraint": item.constraint, "template": item.template_id, "prompt": item.prompt,
                  "answer": answer, "compliant": bool(item.check(answer)), "sample": item.sample,
                  "language": answer_language(answer)}
        if item.expected_yes is not None:
            record["correct"] = yes_no_value(answer) == item.expected_yes
        elif item.meta:
            record["grounded"] = names_true_attribute(answer, item.meta)
        records.append(record)
    return records


def grounding(records: list[dict]) -> dict[str, float]:
    """{constraint: share of answers that name a true attribute} (yes/no: share answered correctly)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        value = record.get("correct", record.get("grounded"))
        if value is not None:
            hits[record["constraint"]].append(bool(value))
    return {c: sum(v) / len(v) for c, v in hits.items()}


def compliance(records: list[dict]) -> dict[str, float]:
    """{constraint: compliance rate, ..., "overall": rate over all prompts}."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        hits[record["constraint"]].append(record["compliant"])
    rates = {c: sum(v) / len(v) for c, v in hits.items()}
    everything = [r["compliant"] for r in records]
    rates["overall"] = sum(everything) / len(everything) if everything else 0.0
    return rates


def run_suite(model, tokenizer, preset, suite: list[ProbePrompt], *, image_token_index: int,
              max_new_tokens: int = 64, prompt_style: str = "chat") -> list[dict]:
    """Greedy answers to every prompt of the suite, scored by `score_answers`."""
    from nemo_twvlm.inference.answer import generate_text  # lazy: torch + megatron

    answers = [generate_text(model, tokenizer, preset, item.image, item.prompt, image_token_index=image_token_index,
                             max_new_tokens=max_new_tokens, prompt_style=prompt_style) for item in suite]
    return score_answers(suite, answers)


def run_probe(model, tokenizer, preset, samples, image_token_index: int, max_new_tokens: int = 64, *,
              prompt_style: str = "chat", seed: int = 0) -> dict[str, float]:
    """Per-constraint compliance rates and "overall" of `model` on `default_suite(samples)`."""
    suite = default_suite(samples, seed=seed)
    return compliance(run_suite(model, tokenizer, preset, suite, image_token_index=image_token_index,
                                max_new_tokens=max_new_tokens, prompt_style=prompt_style))
