"""Text-only instructions about the synthetic world: the debug LM's stand-in for Llama-3-Taiwan-Instruct.

Each conversation states one fact in the user turn (a colour, an object and a position, in the form
a caption takes) and then asks about it under one of the instruction-following probe's constraint
families (answer language, yes/no only, a list, a length limit); the reply obeys the constraint and
is true of the fact. No image and no word about images: the LM learns to follow instructions about
what its context says, and the finding experiment asks whether that carries over to image features.

The phrasings here are deliberately not the probe's (tests/data/test_synthetic_text_instructions.py
checks that no clause of a probe prompt occurs in this data), so the probe measures a transferred
skill, not a memorised prompt. Many phrasings per family share only the constraint's keyword
("English", "英文", "是或否", "列出", a character limit), which is what a transferred skill needs.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption, sample_attributes

_COLOR = {c.key: c for c in COLORS}
_OBJECT = {o.key: o for o in OBJECTS}
_POSITION = {p.key: p for p in POSITIONS}
# Where the LLaVA-form rows go inside the data folder, and where their curated shards go.
TEXT_INSTRUCTIONS_RAW = "text_instructions_llava"
TEXT_INSTRUCTIONS = "text_instructions"

# Words that would make a prompt about an image; none may appear in this data (tested).
IMAGE_WORDS = ("<image>", "圖", "照片", "畫面", "影像", "image", "picture", "photo", "Image", "Picture", "Photo")


def _fields(meta: dict) -> dict[str, str]:
    color, obj, pos = _COLOR[meta["color"]], _OBJECT[meta["object"]], _POSITION[meta["position"]]
    return {"color_zh": color.zh, "color_en": color.key, "object_zh": obj.zh, "object_en": obj.en,
            "position_zh": pos.zh, "position_en": pos.en,
            "caption_zh": caption(meta, "zh"), "caption_en": caption(meta, "en"),
            "a_color_en": f"{'an' if color.key[0] in 'aeiou' else 'a'} {color.key}", "Color_en": color.key.capitalize()}


# The fact, as a caption states it (what CPT teaches the model to read out of an image) or reworded.
FACTS = (
    "{caption_zh}", "{caption_zh}", "{caption_en}", "{caption_en}",
    "有一個{color_zh}的{object_zh}，位置在{position_zh}。", "{position_zh}有一個{color_zh}的{object_zh}。",
    "There is {a_color_en} {object_en} at the {position_en}.", "The {color_en} {object_en} is at the {position_en}.",
)

# (question, answer) per asked attribute, in each language; answers use the same fields.
_ASK = {
    "color": {"zh": (("它是什麼顏色？", "{color_zh}。"), ("這個東西的顏色是？", "它是{color_zh}的。"),
                     ("那個{object_zh}是什麼顏色？", "{color_zh}。")),
              "en": (("Which colour is it?", "It is {color_en}."), ("What colour does the {object_en} have?",
                                                                     "{Color_en}."),
                     ("Tell me its colour.", "The colour is {color_en}."))},
    "object": {"zh": (("那是什麼東西？", "那是{object_zh}。"), ("它是哪一種物品？", "{object_zh}。")),
               "en": (("Which object is it?", "It is a {object_en}."), ("What kind of thing is it?",
                                                                       "A {object_en}."))},
    "position": {"zh": (("它位於哪裡？", "它在{position_zh}。"), ("它在哪個角落？", "{position_zh}。")),
                 "en": (("Where is it located?", "At the {position_en}."), ("In which corner is it?",
                                                                           "It is at the {position_en}."))},
    "restate": {"zh": (("用一句話重述上面的內容。", "{caption_zh}"), ("它在說什麼？簡短說明。", "{caption_zh}")),
                "en": (("Restate that in one sentence.", "{caption_en}"), ("Summarise the sentence above.",
                                                                          "{caption_en}"))},
}
_LANGUAGE_RULE = {
    "en": ("Reply in English.", "Your answer must be in English.", "英文作答。", "回答時使用英文。", "Use English only.",
           "以英文回覆。"),
    "zh": ("Reply in Chinese.", "Use Traditional Chinese characters in your reply.", "以中文作答。", "用繁體中文作答。",
           "回覆時使用中文。", "Write the reply in Chinese."),
}
_YES_NO = {
    "color": (("它是{asked_color_zh}的嗎？只能回答是或否。", "zh"), ("Is it {asked_color_en}? Yes or no only.", "en"),
              ("Reply yes or no: is the {object_en} {asked_color_en}?", "en"),
              ("那個{object_zh}是{asked_color_zh}的嗎？回答是或否就好。", "zh")),
    "object": (("那是{asked_object_zh}嗎？請以是或否作答。", "zh"), ("Is it a {asked_object_en}? Say yes or no.", "en")),
    "position": (("它在{asked_position_zh}嗎？回答是或否就好。", "zh"),
                 ("Is it at the {asked_position_en}? Reply with just yes or no.", "en")),
}
_LIST = (
    ("把顏色、物品和位置各寫一行，用「-」開頭。", "- {color_zh}\n- {object_zh}\n- {position_zh}"),
    ("請分項列出它的顏色、種類與位置。", "- 顏色：{color_zh}\n- 種類：{object_zh}\n- 位置：{position_zh}"),
    ("Give the colour, the object and the place as bullet points.", "- {color_en}\n- {object_en}\n- {position_en}"),
    ("Write a numbered list of its colour, object and position.",
     "1. Colour: {color_en}\n2. Object: {object_en}\n3. Position: {position_en}"),
    ("用編號列出三項：顏色、物品、位置。", "1. {color_zh}\n2. {object_zh}\n3. {position_zh}"),
)
_LIMITS = (6, 8, 10, 12, 15, 20)
_SHORT = {
    "zh": ("答案不要超過{n}個字：{question}", "限{n}個字以內。{question}", "{question}（最多{n}個字）"),
    "en": ("Keep it under {n} characters. {question}", "{question} No more than {n} characters.",
           "Answer within {n} characters: {question}"),
}
# The shortest reply to each attribute question, in each language.
_SHORT_ANSWER = {"color": {"zh": "{color_zh}", "en": "{color_en}"}, "object": {"zh": "{object_zh}", "en": "{object_en}"},
                 "position": {"zh": "{position_zh}", "en": "{position_en}"}}


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _other(rng: np.random.Generator, table, key: str):
    return _pick(rng, [entry for entry in table if entry.key != key])


def _language(meta, fields, rng):
    answer_lang = _pick(rng, ("zh", "en"))
    ask_lang = _pick(rng, ("zh", "en"))
    kind = _pick(rng, list(_ASK))
    question, _ = _pick(rng, _ASK[kind][ask_lang])
    _, answer = _pick(rng, _ASK[kind][answer_lang])  # the question's meaning, in the language the rule asks for
    rule = _pick(rng, _LANGUAGE_RULE[answer_lang])
    return f"{question}{rule}" if rng.random() < 0.5 else f"{rule}{question}", answer, f"language_{answer_lang}"


def _yes_no(meta, fields, rng):
    attribute = _pick(rng, list(_YES_NO))
    table = {"color": COLORS, "object": OBJECTS, "position": POSITIONS}[attribute]
    present = rng.random() < 0.5
    asked = next(e for e in table if e.key == meta[attribute]) if present else _other(rng, table, meta[attribute])
    question, lang = _pick(rng, _YES_NO[attribute])
    asked_fields = {f"asked_{attribute}_zh": asked.zh, f"asked_{attribute}_en": asked.key if attribute == "color" else asked.en}
    answer = ("是" if present else "否") if lang == "zh" else ("yes" if present else "no")
    return question.format(**fields, **asked_fields), answer, "yes_no"


def _list(meta, fields, rng):
    return (*_pick(rng, _LIST), "list")


def _max_chars(meta, fields, rng):
    attribute = _pick(rng, list(_SHORT_ANSWER))
    lang = _pick(rng, ("zh", "en"))
    question, _ = _pick(rng, _ASK[attribute][lang])
    answer = _SHORT_ANSWER[attribute][lang].format(**fields)
    limit = _pick(rng, [n for n in _LIMITS if n >= len(answer)])  # the reply must obey the limit it is given
    return _pick(rng, _SHORT[lang]).format(n=limit, question=question), answer, "max_chars"


def _plain(meta, fields, rng):
    """An unconstrained question, answered in the question's language (the default the rules override)."""
    lang = _pick(rng, ("zh", "en"))
    return (*_pick(rng, _ASK[_pick(rng, list(_ASK))][lang]), None)


# Each family returns (prompt, reply, the probe constraint the reply obeys or None); the constraints are
# evaluation.instruction_following.CONSTRAINTS, and "plain" asks without one.
FAMILIES = {"language": _language, "yes_no": _yes_no, "list": _list, "max_chars": _max_chars, "plain": _plain}


def make_text_conversation(meta: dict, rng: np.random.Generator, turns: int = 1) -> list[dict]:
    """LLaVA-format turns about one stated fact: the fact opens the first user turn, as an image would."""
    fields = _fields(meta)
    names = list(FAMILIES)
    conversation = []
    for t in range(turns):
        prompt, answer, _ = FAMILIES[_pick(rng, names)](meta, fields, rng)
        prompt, answer = prompt.format(**fields), answer.format(**fields)
        if t == 0:
            prompt = f"{_pick(rng, FACTS).format(**fields)}\n{prompt}"
        conversation += [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
    return conversation


def write_text_instructions(folder: str | Path, count: int, *, seed: int = 0) -> Path:
    """`count` text-only conversations as one LLaVA instruction JSON list with no `image` fields (the
    `conversations` curation kind reads them as text-only rows)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, 7])  # a stream of its own: the image splits' samples never move
    rows = [{"id": f"text{i:07d}",
             "conversations": make_text_conversation(sample_attributes(rng), rng, turns=int(rng.integers(1, 3)))}
            for i in range(count)]
    path = folder / "instructions.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path
