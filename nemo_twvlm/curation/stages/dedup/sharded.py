"""Sharded dedup (`dedup.shards > 1`): the decisions of `DedupStage` with the candidate search split
by LSH band key into independent tasks (the algorithm: nemo_twvlm.curation.stages.dedup.banding).

`ShardedDedupStage` is one Curator `CompositeStage`; the pipeline plan decomposes it into:

1. `dedup_partition`, per analysed part: its band keys in one file, one record batch per shard;
2. `dedup_fanout`: once every part is partitioned, one task per shard;
3. `dedup_shard`, one task per shard, reading only its own batches: its groups of equal values and
   verified matching pairs;
4. `dedup_merge`, one task: every shard's candidates walked in input order into per-source decisions.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pyarrow.parquet as pq
from nemo_curator.stages.base import CompositeStage, ProcessingStage

from nemo_twvlm.curation.config import DedupConfig
from nemo_twvlm.curation.parts import part_table, require_every_part
from nemo_twvlm.curation.sample import DedupShard, ShardCandidates, SignatureBatch, SourceDecision
from nemo_twvlm.curation.stages.base import CurationStage, FanIn
from nemo_twvlm.curation.stages.dedup.banding import Banding, Merge, TokenBudget, find_candidates, read_shard, write_partition


@dataclass
class ShardedDedupStage(CompositeStage[SignatureBatch, SourceDecision]):
    """`DedupStage`'s decisions from the four stages it decomposes into (module docstring)."""

    work_dir: str
    dedup: DedupConfig
    token_budget: int | None  # tokens.budget
    name: str = "dedup"

    def __post_init__(self) -> None:
        super().__init__()

    def decompose(self) -> list[ProcessingStage]:
        d = self.dedup
        banding = Banding(exact=d.exact, image_hamming=d.image_hamming, image_bands=d.image_bands,
                          caption_jaccard=d.caption_jaccard, num_perm=d.num_perm)
        return [DedupPartitionStage(self.work_dir, d.shards, banding), DedupFanoutStage(d.shards),
                DedupShardStage(self.work_dir, banding), DedupMergeStage(self.work_dir, banding, self.token_budget)]


@dataclass
class DedupPartitionStage(CurationStage[SignatureBatch, SignatureBatch]):
    """Per analysed part: its band keys, a file per shard; only the part's identity goes on."""

    work_dir: str
    num_shards: int
    banding: Banding
    name: str = "dedup_partition"

    def process(self, batch: SignatureBatch) -> SignatureBatch:
        write_partition(self.work_dir, self.num_shards, self.banding, batch.data, batch.source, batch.part)
        # The signatures are on disk now: only the part's identity travels to the fan-out.
        return SignatureBatch(dataset_name=batch.dataset_name, source=batch.source, part=batch.part,
                              num_parts=batch.num_parts)


@dataclass
class DedupFanoutStage(FanIn, CurationStage[SignatureBatch, DedupShard]):
    """A barrier that starts the shard tasks once every part is partitioned, so the executor runs
    the shards in parallel."""

    num_shards: int
    name: str = "dedup_fanout"

    def process_batch(self, tasks: list[SignatureBatch]) -> list[DedupShard]:
        parts = sorted((t.source, t.part, t.num_parts) for t in tasks)
        require_every_part(parts, self.name)
        return [DedupShard(dataset_name=tasks[0].dataset_name, data=parts, shard=s, num_shards=self.num_shards)
                for s in range(self.num_shards)]


@dataclass
class DedupShardStage(CurationStage[DedupShard, ShardCandidates]):
    """One shard's buckets: its groups of equal values and its verified matching pairs."""

    work_dir: str
    banding: Banding
    name: str = "dedup_shard"

    def process(self, task: DedupShard) -> ShardCandidates:
        rows = read_shard(self.work_dir, task.num_shards, task.shard, task.data)
        found = find_candidates(rows, image_hamming=self.banding.image_hamming,
                                caption_jaccard=self.banding.caption_jaccard)
        return ShardCandidates(dataset_name=task.dataset_name, data=found, parts=task.data, shard=task.shard,
                               num_shards=task.num_shards)


@dataclass
class DedupMergeStage(FanIn, CurationStage[ShardCandidates, SourceDecision]):
    """Every shard's candidates walked in input order into the decisions `DedupStage` makes."""

    work_dir: str
    banding: Banding
    token_budget: int | None
    name: str = "dedup_merge"

    def process_batch(self, tasks: list[ShardCandidates]) -> list[SourceDecision]:
        shards = sorted(t.shard for t in tasks)
        if shards != list(range(tasks[0].num_shards)):
            raise RuntimeError(f"dedup_merge got shards {shards} of {tasks[0].num_shards}: the executor split "
                               "the fan-in batch")
        parts = tasks[0].parts
        merge = Merge((t.data for t in tasks), self.banding)
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
