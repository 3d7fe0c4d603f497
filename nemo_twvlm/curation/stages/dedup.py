"""Exact and near-duplicate removal across the whole input, then the token budget.

A fan-in stage: it needs every analysed part at once (its batch size covers them all, so every
executor hands it one batch) but only their signatures, never their pixels. Samples are visited
in input order (source, index) and compared with the samples kept so far, so the first of each
cluster survives and the result is the same however the work was split or resumed.
Single-process by design: ~0.3 KB of signatures per sample, so one node holds tens of millions;
past that the indexes must be sharded by LSH band (not built yet).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage
from tqdm import tqdm

from nemo_twvlm.curation.hashing import HammingLSH, MinHashIndex
from nemo_twvlm.curation.sample import SignatureBatch, SourceDecision

ALL_AT_ONCE = 1 << 30


@dataclass
class DedupStage(ProcessingStage[SignatureBatch, SourceDecision]):
    exact: bool = True
    image_hamming: int | None = 6
    image_bands: int = 8
    caption_jaccard: float | None = 0.85
    num_perm: int = 64
    token_budget: int | None = None
    name: str = "dedup"
    batch_size: int = ALL_AT_ONCE
    is_resumable: bool = False  # fan-in: no output descends from a single input

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, task: SignatureBatch) -> SourceDecision:
        raise NotImplementedError("DedupStage compares samples across parts: it runs through process_batch")

    def process_batch(self, tasks: list[SignatureBatch]) -> list[SourceDecision]:
        by_source: dict[str, list[SignatureBatch]] = defaultdict(list)
        for task in tasks:
            by_source[task.source].append(task)
        for source, parts in by_source.items():
            if sorted(p.part for p in parts) != list(range(parts[0].num_parts)):
                raise RuntimeError(f"dedup got parts {sorted(p.part for p in parts)} of {parts[0].num_parts} "
                                   f"for source {source!r}: the executor split the fan-in batch")
        exact: dict[str, str] = {}
        images = HammingLSH(self.image_hamming, self.image_bands) if self.image_hamming is not None else None
        texts = MinHashIndex(self.caption_jaccard, self.num_perm) if self.caption_jaccard is not None else None
        used = 0
        decisions: list[SourceDecision] = []
        total = sum(t.num_items for t in tasks)
        bar = tqdm(total=total, desc="dedup", unit="sample", mininterval=2, disable=None)
        for source in sorted(by_source):
            drops: dict[int, tuple[str, str]] = {}
            for part in sorted(by_source[source], key=lambda p: p.part):
                cols = part.data
                for i, index in enumerate(cols["index"]):
                    ref = f"{source}/{cols['key'][i]}"
                    verdict = self._verdict(cols, i, exact, images, texts)
                    if verdict is None and self.token_budget is not None:
                        tokens = cols["text_tokens"][i] + cols["image_tokens"][i]
                        if used + tokens > self.token_budget:
                            verdict = ("over_token_budget", f"{used} + {tokens} > {self.token_budget}")
                        else:
                            used += tokens
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
            return "exact_duplicate", f"same as {exact[cols['content_sha'][i]]}"
        if images is not None and cols["phash"][i] is not None:
            hit = images.query(cols["phash"][i])
            if hit is not None:
                return "near_duplicate_image", f"{hit[1]} bits from {hit[0]}"
        if texts is not None and cols["minhash"][i] is not None:
            hit = texts.query(cols["minhash"][i])
            if hit is not None:
                return "near_duplicate_caption", f"Jaccard ~{hit[1]:.2f} with {hit[0]}"
        return None

    def _add(self, cols, i, ref, exact, images, texts) -> None:
        if self.exact:
            exact.setdefault(cols["content_sha"][i], ref)
        if images is not None and cols["phash"][i] is not None:
            images.add(ref, cols["phash"][i])
        if texts is not None and cols["minhash"][i] is not None:
            texts.add(ref, cols["minhash"][i])
