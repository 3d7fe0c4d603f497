"""Curator's file partitioner over curation.inputs.list_inputs: the files handed to the reader are
exactly the ones the summary counts and whose shards the stale-shard cleanup keeps. (Curator's own
directory listing differs: it also reads `a.TAR` files that a case-sensitive count would leave out.)

A Parquet file of more than `rows_per_read` rows becomes one task per range of its rows, in whole parts
of `batch_samples`: a LAION metadata file holds ~18M rows, ~1.8 KB each once read into samples, more than
one worker can hold. The ranges' parts are the parts the whole file would have had, so the output is
the same either way."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from nemo_curator.stages.file_partitioning import FilePartitioningStage
from nemo_curator.tasks import EmptyTask, FileGroupTask

from nemo_twvlm.curation.inputs import list_inputs
from nemo_twvlm.curation.parts import RowRange
from nemo_twvlm.curation.stages.io.read_table import parquet_rows
from nemo_twvlm.curation.stages.io.reader import ROWS


@dataclass
class ListInputsStage(FilePartitioningStage):
    """`file_paths` is input_dir; the partitioner proper gets the listed files."""

    # Keyword-only: the partitioner's own fields before them have defaults.
    rows_per_read: int = field(kw_only=True)
    batch_samples: int = field(kw_only=True)

    def process(self, task: EmptyTask) -> list[FileGroupTask]:
        files = list_inputs(self.file_paths, self.file_extensions).files
        tasks = FilePartitioningStage.process(replace(self, file_paths=[str(p) for p in files]), task)
        return [ranged for whole in tasks for ranged in self._ranges(whole)]

    def _ranges(self, task: FileGroupTask) -> list[FileGroupTask]:
        (path,) = task.data
        total = parquet_rows(path) if path.lower().endswith(".parquet") else None
        if total is None or total <= self.rows_per_read:  # an unreadable footer: the reader says why
            return [task]
        step = math.ceil(self.rows_per_read / self.batch_samples) * self.batch_samples
        return [FileGroupTask(dataset_name=task.dataset_name, data=[path], reader_config={},
                              _metadata={**task._metadata, ROWS: RowRange(start, min(start + step, total), total)})
                for start in range(0, total, step)]
