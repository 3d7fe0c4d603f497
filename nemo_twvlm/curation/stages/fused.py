"""Consecutive one-task-in, one-task-out stages run as one stage: `FusedStage`.

An executor hands a task from one stage to the next by pickling it: Ray Data does so even between the
stages it fuses into one Ray task (each `map_batches` hop turns its output into a block), and Xenna
passes each stage's output through the object store to another actor. A part's decoded images live
from `decode_verify` to `signatures`, so every hop between them copied every pixel twice (pickle and
unpickle) and kept the copies in the worker: under Ray Data, a worker curating 512 px pairs in
tasks of 256 peaked at ~2,180 MiB (1,159 MiB for all stages in one process), and the run took four
times as long as fused (BENCHMARKS.md 5c). Run as one stage, the stages hand each other the task
itself, and what crosses to the next stage has no pixels left. Each member still records its own
counts under its own name.
"""
from __future__ import annotations

from typing import Any

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources

from nemo_twvlm.curation.stages.base import CurationStage


class FusedStage(CurationStage[Any, Any]):
    """`stages` in order on each task, in one worker; a member returning None (a task filtered out)
    ends the task there. Members must take and give one task at a time, on one CPU and no GPU."""

    def __init__(self, name: str, stages: list[ProcessingStage]):
        for stage in stages:
            problem = (stage.is_fanout_stage() and "it may return several tasks") or \
                ((stage.batch_size or 1) > 1 and f"its batch_size is {stage.batch_size}") or \
                (stage.resources != Resources(cpus=1.0) and f"it asks for {stage.resources}") or \
                (stage.ray_stage_spec().get("is_actor_stage") and "Ray Data runs it as an actor")
            if problem:
                raise ValueError(f"stage {stage.name!r} cannot be fused into {name!r}: {problem}")
        if not stages:
            raise ValueError(f"fused stage {name!r} has no stages")
        self.name = name
        self.stages = list(stages)

    def setup_on_node(self, node_info=None, worker_metadata=None) -> None:
        for stage in self.stages:
            stage.setup_on_node(node_info, worker_metadata)

    def setup(self, worker_metadata=None) -> None:
        for stage in self.stages:
            stage.setup(worker_metadata)

    def teardown(self) -> None:
        for stage in self.stages:
            stage.teardown()

    def ray_stage_spec(self) -> dict[str, Any]:
        # Its members load on first use (stages.base.LoadOnFirstUse): a task, as each of them is.
        return {**super().ray_stage_spec(), "is_actor_stage": False}

    def process(self, task: Any) -> Any:
        for stage in self.stages:
            task = stage.process(task)
            if task is None:
                return None
        return task


def unfused(stages: list[ProcessingStage]) -> list[ProcessingStage]:
    """The stages, each fused one as its members, in the order they run."""
    return [member for stage in stages for member in (stage.stages if isinstance(stage, FusedStage) else [stage])]
