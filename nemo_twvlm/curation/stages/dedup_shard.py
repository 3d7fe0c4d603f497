"""Sharded dedup, step 3 of 4 (see nemo_twvlm.curation.sharded_dedup): one shard's buckets, its
groups of equal values and its verified matching pairs. Shards are independent tasks."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.parts import dedup_partition
from nemo_twvlm.curation.sample import DedupShard, ShardCandidates
from nemo_twvlm.curation.sharded_dedup import find_candidates, read_shard


@dataclass
class DedupShardStage(ProcessingStage[DedupShard, ShardCandidates]):
    work_dir: str
    image_hamming: int | None = 6
    caption_jaccard: float | None = 0.85
    name: str = "dedup_shard"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, task: DedupShard) -> ShardCandidates:
        paths = [dedup_partition(self.work_dir, task.num_shards, source, part) for source, part, _ in task.data]
        found = find_candidates(read_shard(paths, task.shard), image_hamming=self.image_hamming,
                                caption_jaccard=self.caption_jaccard)
        return ShardCandidates(dataset_name=task.dataset_name, data=found, parts=task.data, shard=task.shard,
                               num_shards=task.num_shards)
