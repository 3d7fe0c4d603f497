"""Character-level quality filters that work for Chinese: length, CJK ratio (zh only), character
n-gram repetition, punctuation ratio. Curator's word-based filters misjudge unsegmented text.
A conversation is judged by its assistant turns: they are what SFT trains on."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.zh import quality_metrics


@dataclass
class QualityStage(ProcessingStage[SampleBatch, SampleBatch]):
    min_chars: int = 4
    max_chars: int = 2000
    min_cjk_ratio: float = 0.3
    max_char_repetition: float = 0.5
    max_punctuation_ratio: float = 0.35
    name: str = "quality_zh"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, batch: SampleBatch) -> SampleBatch:
        return batch.apply(self.name, self._check)

    def _check(self, sample: Sample) -> None:
        conversation = sample.roles is not None
        m = quality_metrics("\n".join(sample.turns("assistant")) if conversation else sample.text)
        lang = sample.meta.get("lang_assistant" if conversation else "lang")
        sample.meta["chars"] = m["chars"]
        if m["chars"] < self.min_chars:
            raise Reject("too_short", f"{m['chars']} chars < {self.min_chars}")
        if m["chars"] > self.max_chars:
            raise Reject("too_long", f"{m['chars']} chars > {self.max_chars}")
        if lang == "zh" and m["cjk_ratio"] < self.min_cjk_ratio:
            raise Reject("low_cjk_ratio", f"{m['cjk_ratio']:.2f} < {self.min_cjk_ratio}")
        if m["char_repetition"] > self.max_char_repetition:
            raise Reject("char_repetition", f"{m['char_repetition']:.2f} > {self.max_char_repetition}")
        if m["punctuation_ratio"] > self.max_punctuation_ratio:
            raise Reject("punctuation_ratio", f"{m['punctuation_ratio']:.2f} > {self.max_punctuation_ratio}")
