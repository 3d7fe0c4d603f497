"""zh-Hant / zh-Hans / mixed / ambiguous by OpenCC round trip; Simplified is converted to Taiwan
usage (OpenCC s2twp) or dropped, as configured. Applies to text language ID called `zh`, and to
every turn of a conversation."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse, once_per_process
from nemo_twvlm.curation.zh import ScriptDetector


@dataclass
class ScriptStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    simplified: str  # convert | drop
    name: str = "script_zh"

    def load(self) -> None:
        self._detector = once_per_process(ScriptDetector)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        converted = Counter()

        def check(sample: Sample) -> None:
            if sample.roles is not None:
                return self._turns(sample, converted)
            if sample.meta.get("lang") != "zh":
                return
            script = self._detector.detect(sample.text)
            sample.meta["script"] = script
            if script not in ("zh-Hans", "mixed"):
                return
            if self.simplified == "drop":
                raise Reject("zh_hans" if script == "zh-Hans" else "zh_mixed_script")
            sample.map_texts(self._detector.to_taiwan)
            sample.meta["converted"] = "s2twp"
            converted[script] += 1

        batch.apply(self.name, check)
        batch.stage_counts()[self.name]["converted"] = dict(converted)
        return batch

    def _turns(self, sample: Sample, converted: Counter) -> None:
        """Every turn on its own, whatever the conversation's language: a Simplified answer to an
        English question is still converted, and one Simplified turn is not outvoted by long others."""
        sample.meta["script"] = self._detector.detect(sample.text)
        scripts = [self._detector.detect(turn) for turn in sample.texts]
        simplified = [s for s in scripts if s in ("zh-Hans", "mixed")]
        if not simplified:
            return
        if self.simplified == "drop":
            raise Reject("zh_hans" if simplified[0] == "zh-Hans" else "zh_mixed_script",
                         f"turn {scripts.index(simplified[0])}")
        turns = iter(scripts)
        sample.map_texts(lambda t: self._detector.to_taiwan(t) if next(turns) in ("zh-Hans", "mixed") else t)
        sample.meta["converted"] = "s2twp"
        converted["mixed" if "mixed" in simplified else "zh-Hans"] += 1
