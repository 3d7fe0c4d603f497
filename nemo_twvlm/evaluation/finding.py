"""The finding's measurement: form and content of instruction following about images, with the image
and with it blanked, and the chance level each answer would reach if the image were unrelated to it.

Form is the probe's compliance per constraint (`instruction_following.compliance`). Content is
`instruction_following.grounding` pooled over prompts: a yes/no answer is correct, any other answer
names one of the image's true attributes. Chance is per answer and exact: the share of all
colour x object x position combinations whose attributes the answer would name (for a bare yes/no,
1/2), so an answer that lists all three attributes is held to a higher chance than one that names
one. Content well above chance with the image, and at chance with it blanked, says the answers come
through the image.
"""
from __future__ import annotations

import dataclasses
import itertools
from functools import lru_cache
from html import escape
from pathlib import Path

from nemo_twvlm.evaluation.instruction_following import (
    compliance, default_suite, names_true_attribute, run_suite, yes_no_value)

MODES = ("images", "blank")
# The line's fields, in order: the acceptance reads them (README, "The finding in miniature").
LINE_FIELDS = ("base_if", "aligned_if", "aligned_content", "aligned_content_blank", "vsft_if")


@lru_cache(maxsize=1)
def _all_metas() -> tuple[dict, ...]:
    from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS

    return tuple({"color": c.key, "object": o.key, "position": p.key}
                 for c, o, p in itertools.product(COLORS, OBJECTS, POSITIONS))


def answer_chance(record: dict) -> float:
    """The content score `record`'s answer would have against a uniformly drawn image."""
    if "correct" in record:  # yes/no: the asked attribute is true half the time
        return 0.5 if yes_no_value(record["answer"]) is not None else 0.0
    metas = _all_metas()
    return sum(names_true_attribute(record["answer"], meta) for meta in metas) / len(metas)


def content(records: list[dict]) -> tuple[float, float]:
    """(content score, its chance), pooled over every prompt that has one."""
    scored = [r for r in records if "correct" in r or "grounded" in r]
    if not scored:
        return 0.0, 0.0
    hits = sum(bool(r.get("correct", r.get("grounded"))) for r in scored)
    return hits / len(scored), sum(answer_chance(r) for r in scored) / len(scored)


def blank_raw_image(vision) -> "torch.Tensor":
    """An image in [0, 1] that preprocessing turns into the all-zero (dataset-mean) input."""
    import torch

    return torch.tensor(vision.mean).view(3, 1, 1).expand(3, vision.image_size, vision.image_size).clone()


def measure(model, tokenizer, preset, samples, *, image_token_index: int, max_new_tokens: int = 32) -> dict:
    """{mode: {"form": compliance per constraint + overall, "content", "chance", "records"}} for the
    probe's default suite on `samples`, with the real images and with every image blanked."""
    suite = default_suite(samples)
    blank = blank_raw_image(preset.vision)
    results = {}
    for mode in MODES:
        items = suite if mode == "images" else [dataclasses.replace(item, image=blank) for item in suite]
        records = run_suite(model, tokenizer, preset, items, image_token_index=image_token_index,
                            max_new_tokens=max_new_tokens)
        score, chance = content(records)
        results[mode] = {"form": compliance(records), "content": score, "chance": chance, "records": records}
    return results


def finding_values(arms: dict[str, dict]) -> dict[str, float]:
    """The line's numbers from `measure` results of the arms "base", "aligned" and "vsft"."""
    aligned = arms["aligned"]
    return {"base_if": arms["base"]["images"]["form"]["overall"],
            "aligned_if": aligned["images"]["form"]["overall"],
            "aligned_content": aligned["images"]["content"],
            "aligned_content_blank": aligned["blank"]["content"],
            "vsft_if": arms["vsft"]["images"]["form"]["overall"],
            "aligned_chance": aligned["images"]["chance"],
            "aligned_chance_blank": aligned["blank"]["chance"]}


def finding_line(values: dict[str, float], seed: int) -> str:
    """`finding: base_if=... aligned_if=... aligned_content=... aligned_content_blank=... vsft_if=...`,
    then the two chance levels and the seed."""
    numbers = " ".join(f"{k}={values[k]:.3f}" for k in LINE_FIELDS)
    return (f"finding: {numbers} chance={values['aligned_chance']:.3f} "
            f"chance_blank={values['aligned_chance_blank']:.3f} seed={seed}")


def holds(values: dict[str, float]) -> dict[str, bool]:
    """The issue's acceptance, per criterion, for one seed."""
    return {"aligned_if >= base_if + 0.2": values["aligned_if"] >= values["base_if"] + 0.2,
            "aligned_content >= chance + 0.2": values["aligned_content"] >= values["aligned_chance"] + 0.2,
            "|aligned_content_blank - chance_blank| <= 0.1":
                abs(values["aligned_content_blank"] - values["aligned_chance_blank"]) <= 0.1}


def write_report(per_seed: dict[int, dict[str, dict]], path: str | Path) -> Path:
    """An HTML page: per seed, form per constraint for each arm (SVG bars) and content vs chance."""
    from nemo_twvlm.evaluation.report import _CSS, bar_chart_svg

    parts = [f"<!doctype html><meta charset='utf-8'><title>finding</title><style>{_CSS}</style>",
             "<h1>An instruction-aligned LM follows instructions about images without visual SFT</h1>",
             "<p class='meta'>arms: base (debug LM) and aligned (text-instruction-tuned debug LM), each "
             "align -> CPT on pairs + interleaved; vsft = aligned + visual SFT (reference)</p>"]
    for seed, arms in per_seed.items():
        values = finding_values(arms)
        parts.append(f"<h2>seed {seed}</h2><pre>{escape(finding_line(values, seed))}</pre><table><tr>"
                     "<th>arm</th><th>form with image</th><th>content with image / chance</th>"
                     "<th>content blanked / chance</th></tr>")
        for arm, result in arms.items():
            images, blank = result["images"], result["blank"]
            parts.append(f"<tr><td>{escape(arm)}</td><td>{bar_chart_svg(images['form'], width=420)}</td>"
                         f"<td class='num'>{images['content']:.3f} / {images['chance']:.3f}</td>"
                         f"<td class='num'>{blank['content']:.3f} / {blank['chance']:.3f}</td></tr>")
        parts.append("</table>")
    path = Path(path)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
