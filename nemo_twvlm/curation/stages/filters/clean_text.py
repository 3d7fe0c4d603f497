"""Clean every text segment (HTML entities and tags, URLs, control characters, whitespace), and strip
any literal `<image>` from captions and documents (nemo_twvlm.data.text), noted as `image_token_in_text`.
A conversation keeps its `<image>` placeholders (there they stand for its images), its line breaks
(lists, steps) and every turn."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.sample import Reject, Sample, note
from nemo_twvlm.curation.stages.base import PerSampleStage
from nemo_twvlm.curation.zh import clean_text
from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER
from nemo_twvlm.data.text import IMAGE_TOKEN_IN_TEXT, strip_image_token


@dataclass
class CleanTextStage(PerSampleStage):
    """text.*: what is stripped from every text segment."""

    strip_html: bool
    strip_urls: bool
    name: str = "clean_text"

    def _clean_text(self, text: str) -> str:
        return clean_text(text, strip_html=self.strip_html, strip_urls=self.strip_urls)

    def check(self, sample: Sample) -> None:
        if sample.roles is not None:
            return self._clean_turns(sample)
        found = 0

        def clean(text: str) -> str:
            nonlocal found
            # Before cleaning, where tag stripping would hide it, and after: entities spell it too (&lt;image&gt;).
            text, before = strip_image_token(text)
            text, after = strip_image_token(self._clean_text(text))
            found += before + after
            return self._clean_text(text) if after else text  # the space left behind, tidied

        sample.map_texts(clean)
        if found:
            note(sample, IMAGE_TOKEN_IN_TEXT)
        # Interleaved documents lose text segments that cleaned to nothing; a pair keeps its slot.
        if len(sample.texts) > 1:
            sample.segments = [s for s in sample.segments if not isinstance(s, str) or s]
        if not sample.text.strip():
            raise Reject("empty_after_cleaning", "only markup, URLs, whitespace or <image>" if found
                         else "only markup, URLs or whitespace")

    def _clean_turns(self, sample: Sample) -> None:
        def clean(turn: str) -> str:
            lines = [IMAGE_PLACEHOLDER.join(self._clean_text(piece) for piece in line.split(IMAGE_PLACEHOLDER))
                     for line in turn.split("\n")]
            return "\n".join(lines).strip("\n")

        sample.map_texts(clean)
        for i, (role, turn) in enumerate(zip(sample.roles, sample.texts)):
            if not turn.strip():
                raise Reject("empty_after_cleaning", f"turn {i} ({role}): only markup, URLs or whitespace")
