"""Curator's file partitioner over curation.inputs.list_inputs: the files handed to the reader are
exactly the ones the summary counts and whose shards the stale-shard cleanup keeps. (Curator's own
directory listing differs: it also reads `a.TAR` files that a case-sensitive count would leave out.)

A Parquet, JSON-list or JSONL file of more than `rows_per_read` rows becomes one task per range of its
rows, in whole parts of `batch_samples` (read_table.row_ranges): a LAION metadata file holds ~18M rows,
~1.8 KB each once read into samples, and llava_v1_5_mix665k.json 665k conversations in ~1 GB of text,
more than one worker should hold. The ranges' parts are the parts the whole file would have had, so
the output is the same either way."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from nemo_curator.stages.file_partitioning import FilePartitioningStage
from nemo_curator.tasks import EmptyTask, FileGroupTask

from nemo_twvlm.curation.inputs import list_inputs
from nemo_twvlm.curation.stages.io.read_table import row_ranges
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
        ranges = row_ranges(path, self.rows_per_read, self.batch_samples) if _is_rows(path) else None
        if ranges is None:
            return [task]
        return [FileGroupTask(dataset_name=task.dataset_name, data=[path], reader_config={},
                              _metadata={**task._metadata, ROWS: rows}) for rows in ranges]


def _is_rows(path: str) -> bool:
    return path.lower().endswith((".parquet", ".json", ".jsonl"))
