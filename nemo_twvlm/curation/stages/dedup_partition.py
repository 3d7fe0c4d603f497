"""Sharded dedup, step 1 of 4 (see nemo_twvlm.curation.sharded_dedup): one part's band keys,
written by shard. Runs per part, like the stages before it."""
from __future__ import annotations

from dataclasses import dataclass, field

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.parts import dedup_partition
from nemo_twvlm.curation.sample import SignatureBatch
from nemo_twvlm.curation.sharded_dedup import Banding, write_partition


@dataclass
class DedupPartitionStage(ProcessingStage[SignatureBatch, SignatureBatch]):
    work_dir: str
    num_shards: int
    banding: Banding = field(default_factory=Banding)
    name: str = "dedup_partition"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, batch: SignatureBatch) -> SignatureBatch:
        path = dedup_partition(self.work_dir, self.num_shards, batch.source, batch.part)
        write_partition(path, self.banding, batch.data, batch.source, self.num_shards)
        # The signatures are on disk now: only the part's identity travels to the fan-out.
        return SignatureBatch(dataset_name=batch.dataset_name, source=batch.source, part=batch.part,
                              num_parts=batch.num_parts)
