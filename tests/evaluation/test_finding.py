"""The finding's measurement: exact per-answer chance, content pooled over prompts, the blanked
images really blank, and the line the acceptance reads."""
import re

import pytest
import torch

from nemo_twvlm.data.image import preprocess_image
from nemo_twvlm.evaluation import finding
from nemo_twvlm.evaluation.finding import answer_chance, content, finding_line, holds
from nemo_twvlm.presets import PRESETS

LINE = re.compile(r"^finding: base_if=([0-9.]+) aligned_if=([0-9.]+) aligned_content=([0-9.]+) "
                  r"aligned_content_blank=([0-9.]+) vsft_if=([0-9.]+) chance=([0-9.]+) chance_blank=([0-9.]+) "
                  r"seed=(\d+)$")


@pytest.mark.parametrize("answer,chance", [
    ("紅色。", 1 / 6), ("It is at the top left.", 1 / 4), ("嗯", 0.0),
    # colour, object and position all named: the answer is right unless all three are wrong
    ("紅色的圓形在左上。", 1 - (5 / 6) * (5 / 6) * (3 / 4)),
])
def test_answer_chance_is_the_share_of_worlds_it_names(answer, chance):
    assert answer_chance({"answer": answer, "grounded": True}) == pytest.approx(chance)


def test_yes_no_chance_is_one_half_for_a_bare_answer_only():
    assert answer_chance({"answer": "是", "correct": True}) == 0.5
    assert answer_chance({"answer": "是的，它是紅色。", "correct": False}) == 0.0


def test_content_pools_correct_and_grounded_and_skips_the_rest():
    records = [{"answer": "是", "correct": True}, {"answer": "紅色", "grounded": False},
               {"answer": "x", "compliant": True}]
    score, chance = content(records)
    assert score == 0.5 and chance == pytest.approx((0.5 + 1 / 6) / 2)


def test_measure_blanks_every_image_in_blank_mode(monkeypatch):
    vision = PRESETS["debug"].vision
    seen = []

    def fake_run_suite(model, tokenizer, preset, items, **kwargs):
        seen.append([item.image for item in items])
        return [{"constraint": item.constraint, "answer": "紅色", "compliant": True, "grounded": True}
                for item in items]

    monkeypatch.setattr(finding, "run_suite", fake_run_suite)
    samples = [(torch.rand(3, 64, 64), {"color": "red", "object": "circle", "position": "top_left"})] * 2
    result = finding.measure(None, None, PRESETS["debug"], samples, image_token_index=5)
    assert set(result) == {"images", "blank"}
    real, blank = seen
    assert len(real) == len(blank) == 10  # five constraint families per image
    assert all(torch.equal(r, samples[0][0]) for r in real)
    assert all(preprocess_image(b, vision).abs().max() < 1e-6 for b in blank)
    assert result["images"]["content"] == 1.0 and result["images"]["chance"] == pytest.approx(1 / 6)


def test_line_and_acceptance():
    values = dict(base_if=0.4, aligned_if=0.65, aligned_content=0.6, aligned_content_blank=0.3, vsft_if=0.8,
                  aligned_chance=0.35, aligned_chance_blank=0.25)
    match = LINE.match(finding_line(values, 3))
    assert match and float(match[2]) == 0.65 and match[8] == "3"
    assert all(holds(values).values())
    assert not all(holds({**values, "aligned_if": 0.55}).values())
    assert not all(holds({**values, "aligned_content_blank": 0.4}).values())
