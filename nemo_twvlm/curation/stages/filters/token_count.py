"""Text tokens with the project tokenizer and image tokens from the model preset, per sample;
conversations through the tokenizer's chat template, as training renders them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse, once_per_process


@dataclass
class TokenCountStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    tokenizer: str
    image_tokens: int                 # per image: nemo_twvlm.presets, resolved by the pipeline builder
    max_per_sample: int | None
    name: str = "token_count"

    def load(self) -> None:
        from nemo_twvlm.data.tokenizer import load_tokenizer

        local = Path(self.tokenizer)  # a directory, or a name load_tokenizer looks up
        self._tokenizer = once_per_process(load_tokenizer, str(local.resolve()) if local.exists() else self.tokenizer)

    def _lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a fast tokenizer: skip building a BatchEncoding (half the time)
            # encode_batch_fast skips the character offsets: the same ids, ~10% sooner.
            return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return list(map(len, self._tokenizer(texts, add_special_tokens=False)["input_ids"]))

    def _texts(self, sample: Sample) -> list[str]:
        """What the model reads: a conversation as its chat template renders it (headers, end tokens)."""
        if sample.roles is None:
            return sample.texts
        messages = [{"role": role, "content": text} for role, text in zip(sample.roles, sample.texts)]
        return [self._tokenizer.apply_chat_template(messages, tokenize=False)]

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        texts = [self._texts(sample) for sample in batch.data]
        lengths = iter(self._lengths([t for sample_texts in texts for t in sample_texts]))
        counts = iter(map(len, texts))

        def count(sample: Sample) -> None:
            # A conversation's <image> placeholders are one id each, which the image tokens replace.
            placeholders = len(sample.images) if sample.roles is not None else 0
            sample.meta["text_tokens"] = sum(next(lengths) for _ in range(next(counts))) - placeholders
            sample.meta["image_tokens"] = self.image_tokens * len(sample.images)
            total = sample.meta["text_tokens"] + sample.meta["image_tokens"]
            if self.max_per_sample is not None and total > self.max_per_sample:
                raise Reject("too_many_tokens", f"{total} > {self.max_per_sample}")

        return batch.apply(self.name, count)
