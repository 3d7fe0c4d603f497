"""Dedup signatures per sample: pixel hashes, an exact content key, a pHash (single-image samples)
and a MinHash of the normalised text's character shingles. The dedup stage compares them.

Images are hashed as shipped (after `resize`): two samples are exact duplicates when their shipped
pixels and captions are, and a 1 MP original costs under half the hashing. The pHash is the same
32x32 grey thumbnail either way. This is the last stage that needs pixels, so it lets them go."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.hashing import TextMinHasher, phash, pixel_hash
from nemo_twvlm.curation.sample import Sample, SampleBatch
from nemo_twvlm.curation.stages.base import LoadOnFirstUse
from nemo_twvlm.curation.zh import dedup_normalise, shingles


@dataclass
class SignatureStage(LoadOnFirstUse, ProcessingStage[SampleBatch, SampleBatch]):
    shingle: int = 3
    num_perm: int = 64
    name: str = "signatures"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def load(self) -> None:
        self._minhash = TextMinHasher(self.num_perm)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        return batch.apply(self.name, self._sign)

    def _sign(self, sample: Sample) -> None:
        images = sample.images
        for item in images:
            item.meta["sha"] = pixel_hash(item.pil)
        text = dedup_normalise(sample.text)
        # A pair is a duplicate only if both its image and its caption are; a document, if all of it is.
        key = "\x1f".join([item.meta["sha"] for item in images] + [text])
        sample.meta["content_sha"] = hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()
        sample.meta["phash"] = phash(images[0].pil) if len(images) == 1 else None
        for item in images:
            item.pil = None
        grams = shingles(text, self.shingle)
        sample.meta["minhash"] = self._minhash(grams).tobytes() if grams else None
