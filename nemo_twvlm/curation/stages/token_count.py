"""Text tokens with the project tokenizer and image tokens from the model preset, per sample."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Reject, Sample, SampleBatch


@dataclass
class TokenCountStage(ProcessingStage[SampleBatch, SampleBatch]):
    tokenizer: str
    image_tokens: int                 # per image: nemo_twvlm.presets, resolved by the pipeline builder
    max_per_sample: int | None = None
    name: str = "token_count"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def setup(self, worker_metadata=None) -> None:
        from nemo_twvlm.data.tokenizer import load_tokenizer

        self._tokenizer = load_tokenizer(self.tokenizer)

    def process(self, batch: SampleBatch) -> SampleBatch:
        texts = [t for sample in batch.data for t in sample.texts]
        lengths = iter(map(len, self._tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else ())

        def count(sample: Sample) -> None:
            sample.meta["text_tokens"] = sum(next(lengths) for _ in sample.texts)
            sample.meta["image_tokens"] = self.image_tokens * len(sample.images)
            total = sample.meta["text_tokens"] + sample.meta["image_tokens"]
            if self.max_per_sample is not None and total > self.max_per_sample:
                raise Reject("too_many_tokens", f"{total} > {self.max_per_sample}")

        return batch.apply(self.name, count)
