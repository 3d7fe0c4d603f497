"""Exact and near-duplicate removal across the whole input, then the token budget.

A fan-in stage: it needs every analysed part at once (its batch size covers them all, so every
executor hands it one batch) but only their signatures, never their pixels. Samples are visited
in input order (source, index) and compared with the samples kept so far, so the first of each
cluster survives and the result is the same however the work was split or resumed.
Single-process: ~0.3 KB of signatures per sample, so one node holds tens of millions. Past that,
`dedup.shards > 1` replaces this stage with the sharded form (nemo_twvlm.curation.stages.dedup.banding),
which makes the same decisions.

Near-duplicate images are searched with multi-index hashing (near_dup_search.MultiHashIndex): exact
for any radius, so it finds exactly the kept images banded LSH with `image_bands > image_hamming`
(which the config requires) finds, at a cost per decision that stays flat as the kept set grows.

`joint` (conversations): a sample is a near-duplicate only of a kept sample whose image is near its
image *and* whose first user turn is near its first user turn. Either alone is common and harmless:
one image asked several questions, one templated question asked of many images. Samples without
exactly one image (text-only, multi-image) are then deduplicated exactly only.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from nemo_twvlm.curation.hashing import MinHashIndex
from nemo_twvlm.curation.near_dup_search import MultiHashIndex
from nemo_twvlm.curation.parts import require_every_part
from nemo_twvlm.curation.sample import SignatureBatch, SourceDecision
from nemo_twvlm.curation.stages.base import CurationStage, FanIn
from nemo_twvlm.curation.stages.dedup.banding import CAPTION, EXACT, IMAGE, TokenBudget, duplicate


@dataclass
class DedupStage(FanIn, CurationStage[SignatureBatch, SourceDecision]):
    exact: bool
    image_hamming: int | None
    image_bands: int  # not the search's: checked because the sharded form, which cuts these bands, must agree
    caption_jaccard: float | None
    num_perm: int
    token_budget: int | None
    joint: bool
    name: str = "dedup"

    def __post_init__(self) -> None:
        if self.image_hamming is not None and not 0 <= self.image_hamming < self.image_bands:
            raise ValueError(f"image_hamming={self.image_hamming} must be in [0, image_bands={self.image_bands}): "
                             "with fewer bands the sharded dedup misses matches this stage finds")

    def process_batch(self, tasks: list[SignatureBatch]) -> list[SourceDecision]:
        require_every_part([(t.source, t.part, t.num_parts) for t in tasks], self.name)
        by_source: dict[str, list[SignatureBatch]] = defaultdict(list)
        for task in tasks:
            by_source[task.source].append(task)
        exact: dict[str, str] = {}
        images = MultiHashIndex(self.image_hamming) if self.image_hamming is not None else None
        texts = MinHashIndex(self.caption_jaccard, self.num_perm) if self.caption_jaccard is not None else None
        if self.joint:
            images, texts = (images, {}) if images is not None and texts is not None else (None, None)
        budget = TokenBudget(self.token_budget)
        decisions: list[SourceDecision] = []
        bar = tqdm(total=sum(t.num_items for t in tasks), desc="dedup", unit="sample", mininterval=2, disable=None)
        for source in sorted(by_source):
            drops: dict[int, tuple[str, str]] = {}
            for part in sorted(by_source[source], key=lambda p: p.part):
                cols = part.data
                if images is not None:  # one vectorised search per part: speed only
                    images.lookahead([h for h in cols["phash"] if h is not None])
                for i, index in enumerate(cols["index"]):
                    ref = f"{source}/{cols['key'][i]}"
                    verdict = (self._verdict(cols, i, exact, images, texts)
                               or budget.spend(cols["text_tokens"][i] + cols["image_tokens"][i]))
                    if verdict is None:
                        self._add(cols, i, ref, exact, images, texts)
                    else:
                        drops[index] = verdict
                bar.update(len(cols["index"]))
            decisions.append(SourceDecision(dataset_name=by_source[source][0].dataset_name, data=drops,
                                            source=source, num_parts=by_source[source][0].num_parts))
        bar.close()
        return decisions

    def _verdict(self, cols, i, exact, images, texts) -> tuple[str, str] | None:
        if self.exact and cols["content_sha"][i] in exact:
            return duplicate(EXACT, 0, exact[cols["content_sha"][i]])
        if self.joint:
            return self._joint_verdict(cols, i, images, texts)
        if images is not None and cols["phash"][i] is not None:
            hit = images.query(cols["phash"][i])
            if hit is not None:
                return duplicate(IMAGE, hit[1], hit[0])
        if texts is not None and cols["minhash"][i] is not None:
            hit = texts.query(cols["minhash"][i])
            if hit is not None:
                return duplicate(CAPTION, hit[1], hit[0])
        return None

    def _joint_verdict(self, cols, i, images, questions: dict) -> tuple[str, str] | None:
        if images is None or cols["phash"][i] is None or cols["minhash"][i] is None:
            return None
        for ref, bits in images.query_all(cols["phash"][i]):
            if ref in questions:
                jaccard = float(np.mean(questions[ref] == cols["minhash"][i]))
                if jaccard >= self.caption_jaccard:
                    return "near_duplicate_conversation", f"{bits} bits, Jaccard ~{jaccard:.2f} from {ref}"
        return None

    def _add(self, cols, i, ref, exact, images, texts) -> None:
        if self.exact:
            exact.setdefault(cols["content_sha"][i], ref)
        if self.joint:
            if images is not None and cols["phash"][i] is not None and cols["minhash"][i] is not None:
                images.add(ref, cols["phash"][i])
                texts[ref] = cols["minhash"][i]
            return
        if images is not None and cols["phash"][i] is not None:
            images.add(ref, cols["phash"][i])
        if texts is not None and cols["minhash"][i] is not None:
            texts.add(ref, cols["minhash"][i])
