"""A debug text-retention set from the synthetic world, in the layout of the real ones.

`mcq.jsonl`: zh-TW multiple choice in the TMMLU+/TMLU layout (question, A-D, answer letter). Each
question asks which sentence is a well-formed description; the options are the same three words
(colour, object, position) in the caption template in different orders, so only a model that has
learnt how the synthetic world's Traditional Chinese is written prefers the right one.
`text.jsonl`: held-out zh-TW text in the interleaved documents' style (no images), for perplexity.

A drawn seed stream no training split uses keeps both apart from the training data's draws; the
sentences themselves are of the kind CPT trains on (that is what it should not forget).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from nemo_twvlm.data.world import COLORS, INTRO_PHRASES, LINK_PHRASES, OBJECTS, POSITIONS, caption

LETTERS = ("A", "B", "C", "D")
QUESTIONS = ("下列哪一句是通順的圖片描述？", "哪一個句子的語序正確？", "請選出正確的中文句子。")
# A seed-stream tag: synthetic.write_dataset's splits use [seed, 0..3].
_STREAM = 104729


def _sentence(words: tuple[str, str, str]) -> str:
    return f"{words[0]}的{words[1]}在{words[2]}。"


def mcq_items(count: int, rng: np.random.Generator) -> list[dict]:
    items = []
    for _ in range(count):
        words = (COLORS[rng.integers(len(COLORS))].zh, OBJECTS[rng.integers(len(OBJECTS))].zh,
                 POSITIONS[rng.integers(len(POSITIONS))].zh)
        wrong = [p for p in itertools.permutations(words) if p != words]
        picks = [wrong[i] for i in rng.choice(len(wrong), size=3, replace=False)]
        answer = int(rng.integers(4))
        options = picks[:answer] + [words] + picks[answer:]
        item = {"question": QUESTIONS[rng.integers(len(QUESTIONS))]}
        item.update({letter: _sentence(option) for letter, option in zip(LETTERS, options)})
        item["answer"] = LETTERS[answer]
        items.append(item)
    return items


def texts(count: int, rng: np.random.Generator) -> list[str]:
    out = []
    for _ in range(count):
        parts = [INTRO_PHRASES[rng.integers(len(INTRO_PHRASES))]]
        for i in range(int(rng.integers(2, 4))):
            meta = {"color": COLORS[rng.integers(len(COLORS))].key, "object": OBJECTS[rng.integers(len(OBJECTS))].key,
                    "position": POSITIONS[rng.integers(len(POSITIONS))].key}
            parts.append(caption(meta, "zh"))
            if rng.random() < 0.5:
                parts.append(LINK_PHRASES[rng.integers(len(LINK_PHRASES))])
        out.append("".join(parts))
    return out


def write_retention_set(out_dir: str | Path, *, questions: int = 48, num_texts: int = 32, seed: int = 0) -> Path:
    """Write `mcq.jsonl` and `text.jsonl` into `out_dir`; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, _STREAM])
    with open(out / "mcq.jsonl", "w", encoding="utf-8") as f:
        for item in mcq_items(questions, rng):
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    with open(out / "text.jsonl", "w", encoding="utf-8") as f:
        for text in texts(num_texts, rng):
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return out
