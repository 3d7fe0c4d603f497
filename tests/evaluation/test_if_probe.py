"""Instruction-following probe: the checkers, the prompt tables, and the suite's bookkeeping."""
from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from nemo_twvlm.evaluation import instruction_following as IF


@pytest.mark.parametrize("text, lang", [
    ("紅色的圓形在左上。", "zh"), ("這是台北101。", "zh"), ("這是 Taipei 101", "zh"),
    ("It is red.", "en"), ("An orange temple roof at the bottom right.", "en"),
    ("It is 紅色.", "mixed"), ("。", "none"), ("", "none"),
])
def test_answer_language(text, lang):
    assert IF.answer_language(text) == lang


def test_checkers():
    assert IF.is_traditional_chinese("圖中是紅色的圓形。")
    assert not IF.is_traditional_chinese("图中是红色的圆形。")  # simplified characters
    assert not IF.is_traditional_chinese("It is red.")
    assert IF.is_english("It is red.") and not IF.is_english("It is 紅色.")
    limit = IF.MaxChars(5)
    assert limit("紅色。") and limit("  左上。 ") and limit("12345")
    assert not limit("紅色的圓形在左上。") and not limit("") and not limit("。")
    assert IF.is_list("- 紅色\n- 圓形\n- 左上") and IF.is_list("1. red\n2) circle\n\n3、 top left")
    assert not IF.is_list("- 紅色") and not IF.is_list("- 紅色\n圓形") and not IF.is_list("紅色的圓形")
    assert IF.is_yes_no("是") and IF.is_yes_no("否。") and IF.is_yes_no(" Yes.") and IF.is_yes_no("no")
    assert not IF.is_yes_no("是的，它是紅色。") and not IF.is_yes_no("yes, it is") and not IF.is_yes_no("")
    assert IF.yes_no_value("YES!") is True and IF.yes_no_value("否") is False and IF.yes_no_value("也許") is None


def _all_metas():
    from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS

    for c, o, p in itertools.product(COLORS, OBJECTS, POSITIONS):
        yield {"color": c.key, "object": o.key, "position": p.key}


@pytest.mark.parametrize("table", ["PROMPTS", "TRAIN_PROMPTS"])
def test_every_example_answer_complies_for_every_sample(table):
    prompts = getattr(IF, table)
    assert set(prompts) == set(IF.CONSTRAINTS)
    for meta, ask_true in itertools.product(_all_metas(), (True, False)):
        fields = IF.template_fields(meta, ask_true)
        for constraint, entries in prompts.items():
            for entry in entries:
                prompt, answer = entry.template.format(**fields), entry.answer.format(**fields)
                assert "{" not in prompt and "{" not in answer
                assert entry.check(answer), (table, constraint, prompt, answer)
                if constraint == "yes_no":
                    assert IF.yes_no_value(answer) is ask_true


def test_probe_and_training_phrasings_differ():
    for constraint in IF.CONSTRAINTS:
        probe = {e.template for e in IF.PROMPTS[constraint]}
        train = {e.template for e in IF.TRAIN_PROMPTS[constraint]}
        assert probe and train and not probe & train


def test_template_fields_asks_about_another_value_when_false():
    meta = {"color": "red", "object": "circle", "position": "top_left"}
    true, false = IF.template_fields(meta, True), IF.template_fields(meta, False)
    assert true["asked_color_zh"] == true["color_zh"] == "紅色" and true["yes_no_zh"] == "是"
    assert false["asked_color_zh"] != "紅色" and false["asked_position_en"] != "top left" and false["yes_no_en"] == "no"
    assert true["caption_zh"] == "紅色的圓形在左上。"


def test_suite_scoring_and_compliance():
    samples = [(None, {"color": "red", "object": "circle", "position": "top_left"}),
               (None, {"color": "blue", "object": "taipei_101", "position": "bottom_right"})]
    suite = IF.default_suite(samples)
    assert len(suite) == 2 * len(IF.CONSTRAINTS)
    assert [p.constraint for p in suite[:5]] == list(IF.PROMPTS)
    assert {p.template_id for p in suite if p.sample == 1} == {f"{c}/1" for c in IF.CONSTRAINTS}
    answers = {"language_zh": "圖中是紅色的圓形。", "language_en": "紅色", "max_chars": "圓形。", "list": "- 紅色\n- 圓形",
               "yes_no": "是"}
    records = IF.score_answers(suite, [answers[p.constraint] for p in suite])
    rates = IF.compliance(records)
    # language_en fails both times; max_chars: "圓形。" is 3 characters, within 10 (sample 0) and 20 (sample 1)
    assert rates == {"language_zh": 1.0, "language_en": 0.0, "max_chars": 1.0, "list": 1.0, "yes_no": 1.0, "overall": 0.8}
    yes_no = [r for r in records if r["constraint"] == "yes_no"]
    assert [r["correct"] for r in yes_no] == [True, False]  # sample 0 asks the truth, sample 1 a wrong colour
    assert IF.compliance([]) == {"overall": 0.0}


def test_importable_without_torch_or_megatron():
    code = ("import sys, nemo_twvlm.evaluation.instruction_following as m; "
            "bad = [n for n in sys.modules if n == 'torch' or n.startswith('megatron')]; "
            "assert not bad, bad; assert m.PROMPTS and m.TRAIN_PROMPTS")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sft_generator_answers_pass_the_probe_checkers():
    """The synthetic SFT split teaches what the probe checks: every generated answer complies with its
    family's checker, and no training prompt is one of the probe's own prompts."""
    instructions = pytest.importorskip("nemo_twvlm.data.synthetic_instructions")
    families = getattr(instructions, "FAMILIES", None)
    if not families or not set(families) <= set(IF.CONSTRAINTS):
        pytest.skip("synthetic_instructions.FAMILIES does not use the probe's family names")
    import numpy as np

    rng = np.random.default_rng(0)
    probe_prompts = {e.template.format(**IF.template_fields(meta, t)) for meta in _all_metas() for t in (True, False)
                     for entries in IF.PROMPTS.values() for e in entries}
    for meta in _all_metas():
        for family, make in families.items():
            prompt, answer = make(meta, rng)
            assert IF.FAMILY_CHECKS[family](answer), (family, prompt, answer)
            assert prompt not in probe_prompts, prompt


def test_grounding_tells_degenerate_compliance_apart():
    meta = {"color": "red", "object": "circle", "position": "top_left"}
    assert IF.names_true_attribute("這個東西是紅色。", meta) and IF.names_true_attribute("It is at the TOP LEFT.", meta)
    assert not IF.names_true_attribute("這張：。", meta)
    suite = [p for p in IF.default_suite([(None, meta)]) if p.constraint in ("language_zh", "yes_no")]
    records = IF.score_answers(suite, ["這張：。", "是"])
    assert [r["compliant"] for r in records] == [True, True]
    assert records[0]["grounded"] is False and records[1]["correct"] is True
    assert IF.grounding(records) == {"language_zh": 0.0, "yes_no": 1.0}
