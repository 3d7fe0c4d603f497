"""Sharded dedup, step 4 of 4 (see nemo_twvlm.curation.sharded_dedup): every shard's candidates,
walked in input order into the same per-source decisions `DedupStage` makes."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pyarrow.parquet as pq
from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.parts import part_table
from nemo_twvlm.curation.sample import ShardCandidates, SourceDecision
from nemo_twvlm.curation.sharded_dedup import Merge, TokenBudget
from nemo_twvlm.curation.stages.base import FanIn


@dataclass
class DedupMergeStage(FanIn, ProcessingStage[ShardCandidates, SourceDecision]):
    work_dir: str
    token_budget: int | None = None
    name: str = "dedup_merge"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process_batch(self, tasks: list[ShardCandidates]) -> list[SourceDecision]:
        shards = sorted(t.shard for t in tasks)
        if shards != list(range(tasks[0].num_shards)):
            raise RuntimeError(f"dedup_merge got shards {shards} of {tasks[0].num_shards}: the executor split "
                               "the fan-in batch")
        parts = tasks[0].parts
        merge = Merge(t.data for t in tasks)
        drops: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
        budget = TokenBudget(self.token_budget)
        for sample, tokens in self._samples(merge, parts):
            verdict = merge.verdict(sample) or budget.spend(tokens)
            if verdict is None:
                merge.keep(sample)
            else:
                drops[sample[0]][sample[1]] = verdict
        num_parts = {source: n for source, _, n in parts}
        return [SourceDecision(dataset_name=tasks[0].dataset_name, data=drops[source], source=source,
                               num_parts=num_parts[source]) for source in sorted(num_parts)]

    def _samples(self, merge: Merge, parts: list[tuple[str, int, int]]):
        """Samples in input order with their tokens: only the candidates unless a budget counts them all."""
        if self.token_budget is None:
            yield from ((sample, 0) for sample in merge.candidates())
            return
        for source, part, _ in parts:
            cols = pq.read_table(part_table(self.work_dir, source, part),
                                 columns=["index", "text_tokens", "image_tokens"]).to_pydict()
            for index, text, image in zip(cols["index"], cols["text_tokens"], cols["image_tokens"]):
                yield (source, index), text + image
