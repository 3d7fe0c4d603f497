"""Character-level quality filters that work for Chinese: length, CJK ratio (zh only), character
n-gram repetition, punctuation ratio. Curator's word-based filters misjudge unsegmented text.
A conversation is judged by its assistant turns (they are what SFT trains on), the CJK ratio per
turn identified as zh."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.sample import Reject, Sample
from nemo_twvlm.curation.stages.base import PerSampleStage
from nemo_twvlm.curation.zh import quality_metrics


@dataclass
class QualityStage(PerSampleStage):
    """quality.*: each threshold drops under its own reason, in the order they are checked."""

    min_chars: int
    max_chars: int
    min_cjk_ratio: float
    max_char_repetition: float
    max_punctuation_ratio: float
    name: str = "quality_zh"

    def check(self, sample: Sample) -> None:
        if sample.roles is None:
            m = quality_metrics(sample.text)
            zh = [m["cjk_ratio"]] if sample.meta.get("lang") == "zh" else []
        else:
            m = quality_metrics("\n".join(sample.turns("assistant")))
            turns = zip(sample.roles, sample.meta["turn_langs"], sample.texts)  # each turn by its own language
            zh = [quality_metrics(t)["cjk_ratio"] for role, lang, t in turns if role == "assistant" and lang == "zh"]
        sample.meta["chars"] = m["chars"]
        if m["chars"] < self.min_chars:
            raise Reject("too_short", f"{m['chars']} chars < {self.min_chars}")
        if m["chars"] > self.max_chars:
            raise Reject("too_long", f"{m['chars']} chars > {self.max_chars}")
        if zh and min(zh) < self.min_cjk_ratio:
            raise Reject("low_cjk_ratio", f"{min(zh):.2f} < {self.min_cjk_ratio}")
        if m["char_repetition"] > self.max_char_repetition:
            raise Reject("char_repetition", f"{m['char_repetition']:.2f} > {self.max_char_repetition}")
        if m["punctuation_ratio"] > self.max_punctuation_ratio:
            raise Reject("punctuation_ratio", f"{m['punctuation_ratio']:.2f} > {self.max_punctuation_ratio}")
