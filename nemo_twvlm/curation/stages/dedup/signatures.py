"""Dedup signatures per sample: pixel hashes, an exact content key, a pHash (single-image samples)
and a MinHash of the normalised text's character shingles. The dedup stage compares them.

Images are hashed as shipped (after `resize`): two samples are exact duplicates when their shipped
pixels and captions are, and a 1 MP original costs under half the hashing. The pHash is the same
32x32 grey thumbnail either way. This is the last stage that needs pixels, so it lets them go.
The pHash's DCT and the MinHash run once per batch (hashing.phashes, TextMinHasher.many); the
pHash thumbnail is taken per sample, right after the pixel hash has read the pixels into cache.
A conversation is compared by its images and its first user turn: the question asked of the image
(the answers of two copies drift apart in translation and rewriting)."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from nemo_twvlm.curation.hashing import TextMinHasher, content_key, phash_thumbnail, phashes, pixel_hash
from nemo_twvlm.curation.sample import Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage, LoadOnFirstUse
from nemo_twvlm.curation.zh import dedup_normalise, shingles
from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER


def _dedup_text(sample: Sample) -> str:
    if sample.roles is None:
        return sample.text
    return sample.turns("user")[0].replace(IMAGE_PLACEHOLDER, "")


@dataclass
class SignatureStage(LoadOnFirstUse, CurationStage[SampleBatch, SampleBatch]):
    shingle: int
    num_perm: int
    name: str = "signatures"

    def load(self) -> None:
        self._minhash = TextMinHasher(self.num_perm)

    def process(self, batch: SampleBatch) -> SampleBatch:
        self.ensure_loaded()
        thumbnails: list[tuple[Sample, Image.Image]] = []  # of samples with one image, for the pHash
        grams: list[tuple[Sample, set[str]]] = []

        def sign(sample: Sample) -> None:
            images = sample.images
            for item in images:
                item.meta["sha"] = pixel_hash(item.pil)
            text = dedup_normalise(_dedup_text(sample))
            # A pair is a duplicate only if both its image and its caption are; a document, if all of it is.
            sample.meta["content_sha"] = content_key([item.meta["sha"] for item in images], text)
            sample.meta["phash"] = sample.meta["minhash"] = None
            if len(images) == 1:
                thumbnails.append((sample, phash_thumbnail(images[0].pil)))
            for item in images:
                item.pil = None
            text_grams = shingles(text, self.shingle)
            if text_grams:
                grams.append((sample, text_grams))

        batch.apply(self.name, sign)
        for (sample, _), h in zip(thumbnails, phashes([t for _, t in thumbnails])):
            sample.meta["phash"] = h
        for (sample, _), m in zip(grams, self._minhash.many([g for _, g in grams])):
            sample.meta["minhash"] = m.tobytes()
        return batch
