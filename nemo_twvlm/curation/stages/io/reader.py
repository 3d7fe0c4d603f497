"""What every reader shares: one input file per task in, its parts out (`data`, and `rejected`: the
rows or members it could not read), and no reading at all of a file whose parts are all done."""
from __future__ import annotations

from nemo_curator.tasks import FileGroupTask

from nemo_twvlm.curation.parts import resumed_batches
from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage
from nemo_twvlm.curation.storage import source_id


class ReaderStage(CurationStage[FileGroupTask, SampleBatch]):
    input_dir: str
    work_dir: str

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data", "rejected"], []

    def read(self, path: str, source: str, dataset_name: str) -> list[SampleBatch]:
        """The file's samples and rejections, cut into parts (nemo_twvlm.curation.parts.split_parts)."""
        raise NotImplementedError

    def process(self, task: FileGroupTask) -> list[SampleBatch]:
        path = task.data[0]
        source = source_id(path, self.input_dir)
        return resumed_batches(self.work_dir, source, task.dataset_name) or self.read(path, source, task.dataset_name)
