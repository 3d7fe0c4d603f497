"""The executor is chosen last: Ray Data (default, laptop), Xenna (clusters), or in-process.

`InProcessExecutor` runs the same stages through Curator's own stage adapter in this process,
streaming one task at a time through each stage (a stage whose batch size covers everything,
like dedup, waits for all). Tests and benchmarks use it: Ray's start-up costs ~20-30 s on 2 cores.

While it runs, the heap that existed before it (imports: Curator brings torch, pandas and Ray, ~360k
objects) is frozen out of the cyclic garbage collector: a full collection walks every tracked object,
~0.25 s here, and the objects of the parts in flight set one off about every 2,000 samples (~0.1 ms
per 256 px sample). Nothing is leaked: the heap is unfrozen afterwards, and garbage among those
objects goes with the next full collection.
"""
from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from typing import Any

from nemo_curator.backends.base import BaseExecutor, BaseStageAdapter, NodeInfo, WorkerMetadata
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import EmptyTask, Task
from tqdm import tqdm


class InProcessExecutor(BaseExecutor):
    def execute(self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None) -> list[Task]:
        adapters = [BaseStageAdapter(stage) for stage in stages]
        for adapter in adapters:
            adapter.setup_on_node(NodeInfo(node_id="local"), WorkerMetadata(worker_id="local"))
            adapter.setup(WorkerMetadata(worker_id="local"))
        gc.freeze()  # what the imports and setup made outlives the run: no collection need walk it
        try:
            stream: Iterable[Task] = initial_tasks or [EmptyTask()]
            for i, adapter in enumerate(adapters):
                stream = _run(adapter, stream)
                # Progress where work is counted: into a fan-in stage (dedup) and out of the last one.
                nxt = adapters[i + 1].stage if i + 1 < len(adapters) else None
                if nxt is None or (nxt.batch_size or 1) > 1:
                    stream = tqdm(stream, desc=adapter.stage.name, unit="task", mininterval=2, disable=None)
            return list(stream)
        finally:
            gc.unfreeze()
            for adapter in adapters:
                adapter.teardown()


def _run(adapter: BaseStageAdapter, tasks: Iterable[Task]) -> Iterator[Task]:
    size = adapter.stage.batch_size or 1
    batch: list[Task] = []
    for task in tasks:
        batch.append(task)
        if len(batch) >= size:
            yield from _handed_on(adapter.process_batch(batch))
            batch = []
    if batch:
        yield from _handed_on(adapter.process_batch(batch))


def _handed_on(results: list[Task]) -> Iterator[Task]:
    """Each result, let go of once yielded: the later stages edit a part in place (decode_verify reads its
    images into it), so a list kept until its last part was done would hold every part of an input file."""
    results.reverse()
    while results:
        yield results.pop()


def make_executor(name: str, config: dict[str, Any] | None = None) -> BaseExecutor:
    if name == "in_process":
        return InProcessExecutor(config)
    if name == "ray_data":
        from nemo_curator.backends.ray_data import RayDataExecutor

        return RayDataExecutor(config)
    if name == "xenna":
        from nemo_curator.backends.xenna import XennaExecutor

        # Xenna's default streaming mode wants more cores than a laptop has; pass
        # executor.config.execution_mode=batch there.
        return XennaExecutor(config)
    raise ValueError(f"executor.name={name!r} is not an executor; expected one of ['ray_data', 'xenna', 'in_process']")
