"""What every reader shares: one input file per task in (or one range of a large Parquet file's rows,
`ROWS` in the task's metadata), its parts out (`data`, and `rejected`: the rows or members it could not
read), and no reading at all of a file (or range) whose parts are all done."""
from __future__ import annotations

from nemo_curator.tasks import FileGroupTask

from nemo_twvlm.curation.parts import RowRange, resumed_batches
from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage
from nemo_twvlm.curation.storage import source_id


# The FileGroupTask metadata key of the RowRange a task reads (stages.io.list_inputs sets it).
ROWS = "twvlm_rows"


class ReaderStage(CurationStage[FileGroupTask, SampleBatch]):
    input_dir: str
    work_dir: str
    batch_samples: int  # samples per part

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data", "rejected"], []

    def read(self, path: str, source: str, dataset_name: str, rows: RowRange | None = None) -> list[SampleBatch]:
        """The file's samples and rejections (those of `rows` only, for a row reader given a range), cut into
        parts (nemo_twvlm.curation.parts.split_parts)."""
        raise NotImplementedError

    def process(self, task: FileGroupTask) -> list[SampleBatch]:
        path = task.data[0]
        source = source_id(path, self.input_dir)
        rows = task._metadata.get(ROWS)
        resumed = resumed_batches(self.work_dir, source, task.dataset_name, rows, self.batch_samples)
        if resumed:
            return resumed
        if rows is None:  # a whole file: the only kind the tar readers take
            return self.read(path, source, task.dataset_name)
        return self.read(path, source, task.dataset_name, rows)
