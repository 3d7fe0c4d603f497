"""Curator's file partitioner over curation.inputs.list_inputs: the files handed to the reader are
exactly the ones the summary counts and whose shards the stale-shard cleanup keeps. (Curator's own
directory listing differs: it also reads `a.TAR` files that a case-sensitive count would leave out.)"""
from __future__ import annotations

from dataclasses import dataclass, replace

from nemo_curator.stages.file_partitioning import FilePartitioningStage
from nemo_curator.tasks import EmptyTask, FileGroupTask

from nemo_twvlm.curation.inputs import list_inputs


@dataclass
class ListInputsStage(FilePartitioningStage):
    """`file_paths` is input_dir; the partitioner proper gets the listed files."""

    def process(self, task: EmptyTask) -> list[FileGroupTask]:
        files = list_inputs(self.file_paths, self.file_extensions).files
        return FilePartitioningStage.process(replace(self, file_paths=[str(p) for p in files]), task)
