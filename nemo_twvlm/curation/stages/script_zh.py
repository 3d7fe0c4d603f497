"""zh-Hant / zh-Hans / mixed / ambiguous by OpenCC round trip; Simplified is converted to Taiwan
usage (OpenCC s2twp) or dropped, as configured. Applies to text language ID called `zh`."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse
from nemo_twvlm.curation.zh import ScriptDetector


@dataclass
class ScriptStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    simplified: str = "convert"  # convert | drop
    name: str = "script_zh"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def load(self) -> None:
        self._detector = ScriptDetector()

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        converted = Counter()

        def check(sample: Sample) -> None:
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
