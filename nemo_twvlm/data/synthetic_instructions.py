"""Visual instruction-tuning conversations for the synthetic image set.

Each family pairs a request carrying a checkable constraint (answer language, yes/no only, a bulleted
list, a length limit) with an answer that obeys it, so SFT on the debug model can be measured by the
instruction-following probe. Answers are derived from the image's true attributes.
"""
import numpy as np

from nemo_twvlm.data.world import OBJECTS, attributes


def _english(meta, rng):
    color, obj, pos = attributes(meta)
    asks = [("What color is the object? Answer in English.", f"{color.key.capitalize()}."),
            ("這個東西是什麼顏色？請用英文回答。", f"{color.key.capitalize()}."),
            ("What is in the picture? Please answer in English.", f"{obj.en[0].upper()}{obj.en[1:]}."),
            ("請用英文回答：圖中的東西在哪裡？", f"At the {pos.en}.")]
    return asks[rng.integers(len(asks))]


def _chinese(meta, rng):
    color, obj, pos = attributes(meta)
    asks = [("What color is the object? 請用中文回答。", f"{color.zh}。"),
            ("這是什麼東西？請用中文回答。", f"{obj.zh}。"),
            ("Where is the object? Please answer in Traditional Chinese.", f"在{pos.zh}。")]
    return asks[rng.integers(len(asks))]


def _yes_no(meta, rng):
    color, obj, _ = attributes(meta)
    asked = obj if rng.random() < 0.5 else OBJECTS[rng.integers(len(OBJECTS))]
    present = asked.key == obj.key
    if rng.random() < 0.5:
        return f"圖中有{asked.zh}嗎？請只回答是或否。", "是" if present else "否"
    return f"Is there a {asked.en} in the image? Answer only yes or no.", "yes" if present else "no"


def _bullets(meta, rng):
    color, obj, pos = attributes(meta)
    if rng.random() < 0.5:
        return "請用條列清單列出圖中東西的顏色、種類和位置。", f"- {color.zh}\n- {obj.zh}\n- {pos.zh}"
    return "List the color, the object and its position as bullet points.", f"- {color.key}\n- {obj.en}\n- {pos.en}"


def _short(meta, rng):
    color, obj, pos = attributes(meta)
    asks = [("用不超過五個字回答：這是什麼？", obj.zh),
            ("用不超過五個字回答：它在哪裡？", pos.zh),
            ("In at most three words: what color is it?", color.key)]
    return asks[rng.integers(len(asks))]


FAMILIES = {"language_en": _english, "language_zh": _chinese, "yes_no": _yes_no, "list": _bullets,
            "max_chars": _short}


def make_conversation(meta: dict, rng: np.random.Generator, turns: int = 1) -> list[dict]:
    """LLaVA-format turns; the image placeholder opens the first question."""
    names = list(FAMILIES)
    conversation = []
    for t in range(turns):
        prompt, answer = FAMILIES[names[rng.integers(len(names))]](meta, rng)
        conversation += [{"from": "human", "value": f"<image>\n{prompt}" if t == 0 else prompt},
                         {"from": "gpt", "value": answer}]
    return conversation
