"""The text-only instructions of the finding experiment: no image anywhere, replies that obey their
constraint and state the truth, and none of the probe's phrasings in any arm's training data."""
from __future__ import annotations

import io
import itertools
import json
import re
import tarfile

import numpy as np
import pytest

from nemo_twvlm.data.synthetic import COLORS, OBJECTS, POSITIONS, sample_attributes
from nemo_twvlm.data.synthetic_instructions import make_conversation
from nemo_twvlm.data.synthetic_text_instructions import (
    FAMILIES, IMAGE_WORDS, _fields, make_text_conversation, write_text_instructions)
from nemo_twvlm.data.task_encoder import CAPTION_PROMPT
from nemo_twvlm.evaluation import instruction_following as IF

ALL_METAS = [{"color": c.key, "object": o.key, "position": p.key}
             for c, o, p in itertools.product(COLORS, OBJECTS, POSITIONS)]
VALUES = {"color": [(c.key, c.zh, c.key) for c in COLORS], "object": [(o.key, o.zh, o.en) for o in OBJECTS],
          "position": [(p.key, p.zh, p.en) for p in POSITIONS]}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = write_text_instructions(tmp_path_factory.mktemp("text_sft"), 3000, seed=1)
    return json.loads(path.read_text(encoding="utf-8"))


def _turns(rows):
    return [turn["value"] for row in rows for turn in row["conversations"]]


def test_no_images_and_no_image_words(rows):
    assert len(rows) == 3000
    assert all(set(row) == {"id", "conversations"} for row in rows)  # no `image`: text-only rows
    leaks = [(word, text) for text in _turns(rows) for word in IMAGE_WORDS if word.casefold() in text.casefold()]
    assert not leaks, leaks[:5]


def test_same_seed_same_rows(rows, tmp_path):
    again = json.loads(write_text_instructions(tmp_path / "again", 3000, seed=1).read_text(encoding="utf-8"))
    other = json.loads(write_text_instructions(tmp_path / "other", 3000, seed=2).read_text(encoding="utf-8"))
    assert again == rows and other != rows


def _named(text: str, attribute: str) -> set[str]:
    return {key for key, zh, en in VALUES[attribute] if zh in text or re.search(rf"\b{re.escape(en)}\b", text)}


def test_replies_obey_their_constraint_and_state_the_fact():
    rng = np.random.default_rng(0)
    seen, yes = set(), []
    for _ in range(3000):
        meta = sample_attributes(rng)
        name = list(FAMILIES)[int(rng.integers(len(FAMILIES)))]
        prompt, answer, constraint = FAMILIES[name](meta, _fields(meta), rng)
        prompt, answer = prompt.format(**_fields(meta)), answer.format(**_fields(meta))
        seen.add(constraint)
        if constraint == "max_chars":
            limit = int(re.search(r"\d+", prompt)[0])
            assert IF.MaxChars(limit)(answer), (prompt, answer)
        elif constraint is not None:
            assert IF.FAMILY_CHECKS[constraint](answer), (prompt, answer)
        if constraint == "yes_no":
            # Yes exactly when every attribute value the question names is the fact's.
            named = {a: _named(prompt, a) for a in VALUES}
            truth = all(values <= {meta[a]} for a, values in named.items())
            assert IF.yes_no_value(answer) is truth, (meta, prompt, answer)
            yes.append(truth)
        else:
            assert IF.names_true_attribute(answer, meta), (meta, prompt, answer)
    assert seen == {*IF.CONSTRAINTS, None}
    assert 0.4 < sum(yes) / len(yes) < 0.6


def test_the_fact_opens_the_first_turn_only():
    rng = np.random.default_rng(3)
    for meta in ALL_METAS:
        conversation = make_text_conversation(meta, rng, turns=2)
        first, second = conversation[0]["value"], conversation[2]["value"]
        fact = first.split("\n")[0]
        assert all(_named(fact, a) == {meta[a]} for a in VALUES), fact
        assert "\n" not in second


def _clauses(text: str) -> set[str]:
    parts = re.split(r"[。？！?!：:，,；;\n「」（）()]|\.(?:\s|$)", text)
    return {p.strip() for p in parts if len(p.strip()) >= 4}


def probe_clauses() -> set[str]:
    """Every clause of every probe prompt, over every attribute combination and both yes/no sides."""
    clauses = set()
    for meta, ask_true in itertools.product(ALL_METAS, (True, False)):
        fields = IF.template_fields(meta, ask_true)
        for entries in IF.PROMPTS.values():
            for entry in entries:
                clauses |= _clauses(entry.template.format(**fields))
    return clauses


def leaks(texts) -> list[tuple[str, str]]:
    clauses = probe_clauses()
    return [(clause, text) for text in texts for clause in clauses if clause in text]


def _shard_texts(folder):
    texts = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                if member.name.endswith(".txt"):
                    texts.append(data.decode("utf-8"))
                elif member.name.endswith(".json"):
                    texts += [s for s in json.load(io.BytesIO(data)).get("segments", []) if isinstance(s, str)]
    return texts


def test_probe_phrasings_appear_in_neither_arms_training_data(rows, synthetic_blend):
    cpt = _shard_texts(synthetic_blend / "pairs") + _shard_texts(synthetic_blend / "interleaved")
    assert len(cpt) > 300  # captions and document texts were read
    assert not leaks(_turns(rows)), leaks(_turns(rows))[:5]  # text SFT
    assert not leaks(cpt + [CAPTION_PROMPT]), "align/CPT data"  # align and CPT read the same shards


def test_the_leak_check_finds_a_probe_phrasing():
    # The visual SFT arm (reference only) does reuse probe clauses: the check must see them.
    rng = np.random.default_rng(0)
    visual = [t["value"] for meta in ALL_METAS for t in make_conversation(meta, rng, turns=2)]
    assert any(clause == "What color is the object" for clause, _ in leaks(visual))
