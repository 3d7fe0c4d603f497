"""Sharded dedup, step 2 of 4 (see nemo_twvlm.curation.sharded_dedup): once every part is
partitioned, start one task per shard, so the executor runs the shards in parallel."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.parts import require_every_part
from nemo_twvlm.curation.sample import DedupShard, SignatureBatch
from nemo_twvlm.curation.stages.base import FanIn


@dataclass
class DedupFanoutStage(FanIn, ProcessingStage[SignatureBatch, DedupShard]):
    num_shards: int
    name: str = "dedup_fanout"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process_batch(self, tasks: list[SignatureBatch]) -> list[DedupShard]:
        parts = sorted((t.source, t.part, t.num_parts) for t in tasks)
        require_every_part(parts, self.name)
        return [DedupShard(dataset_name=tasks[0].dataset_name, data=parts, shard=s, num_shards=self.num_shards)
                for s in range(self.num_shards)]
