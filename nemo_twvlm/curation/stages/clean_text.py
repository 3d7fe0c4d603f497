"""Clean every text segment (HTML entities and tags, URLs, control characters, whitespace).
A conversation keeps its `<image>` placeholders and its line breaks (lists, steps) and every turn."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.zh import clean_text
from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER


@dataclass
class CleanTextStage(ProcessingStage[SampleBatch, SampleBatch]):
    strip_html: bool = True
    strip_urls: bool = True
    name: str = "clean_text"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, batch: SampleBatch) -> SampleBatch:
        return batch.apply(self.name, self._clean)

    def _clean(self, sample: Sample) -> None:
        if sample.roles is not None:
            return self._clean_turns(sample)
        sample.map_texts(lambda t: clean_text(t, strip_html=self.strip_html, strip_urls=self.strip_urls))
        # Interleaved documents lose text segments that cleaned to nothing; a pair keeps its slot.
        if len(sample.texts) > 1:
            sample.segments = [s for s in sample.segments if not isinstance(s, str) or s]
        if not sample.text.strip():
            raise Reject("empty_after_cleaning", "only markup, URLs or whitespace")

    def _clean_turns(self, sample: Sample) -> None:
        def clean(turn: str) -> str:
            lines = [IMAGE_PLACEHOLDER.join(clean_text(piece, strip_html=self.strip_html, strip_urls=self.strip_urls)
                                            for piece in line.split(IMAGE_PLACEHOLDER))
                     for line in turn.split("\n")]
            return "\n".join(lines).strip("\n")

        sample.map_texts(clean)
        for i, (role, turn) in enumerate(zip(sample.roles, sample.texts)):
            if not turn.strip():
                raise Reject("empty_after_cleaning", f"turn {i} ({role}): only markup, URLs or whitespace")
