"""What stages share: the task protocol, loading something (a model, a tokenizer, converters) on
first use, and fanning in.

Every curation task carries its payload in `data` (samples, signatures, decisions); `CurationStage`
declares that once. Readers add `rejected` (the rows they could not read), and `write/checkpoint.py`
reads it.

Ray Data runs a stage that overrides `setup()` as an actor pool holding a CPU per actor: four such
stages on a 2-core laptop reserve every CPU and the pipeline deadlocks (measured with Ray 2.60),
and actors stop Ray from fusing stages into one task. (Fused or not, Ray Data pickles a task between
its stages: the stages that hold a part's decoded pixels are one `stages.fused.FusedStage`.)
These stages are cheap to load, so they run as tasks and load on first use; executors that do
call `setup()` (actors, Xenna, in-process) load them there, once. What they load is kept per process
(`once_per_process`): a second pipeline in the same process (a reused Ray worker, tests, the
benchmark's warm runs) neither loads it again nor frees it at its end, ~0.3 s a run for fastText,
OpenCC and the tokenizer here.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.sample import Sample, SampleBatch

X = TypeVar("X")
Y = TypeVar("Y")
T = TypeVar("T")


_LOADED: dict[tuple, tuple[tuple, Any]] = {}


def once_per_process(load: Callable[..., T], *args: Any) -> T:
    """`load(*args)`, called once per process for these arguments: for read-only models and converters
    that every stage instance may share. An argument naming a file or directory is also keyed by its
    modification time and size (a directory's: its files'), so one replaced in place loads again and the
    stale copy is freed."""
    key, version = (load, args), tuple(_file_version(arg) for arg in args)
    loaded = _LOADED.get(key)
    if loaded is None or loaded[0] != version:
        loaded = _LOADED[key] = (version, load(*args))
    return loaded[1]


def _file_version(arg: Any) -> tuple | None:
    if not isinstance(arg, (str, os.PathLike)) or not os.path.exists(arg):
        return None
    if not os.path.isdir(arg):
        stat = os.stat(arg)
        return ((stat.st_mtime_ns, stat.st_size),)
    with os.scandir(arg) as entries:
        files = [(entry.name, entry.stat()) for entry in entries if entry.is_file()]
    return tuple(sorted((name, stat.st_mtime_ns, stat.st_size) for name, stat in files))


class CurationStage(ProcessingStage[X, Y]):
    """A stage that reads and writes a task's `data`."""

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []


class PerSampleStage(CurationStage[SampleBatch, SampleBatch]):
    """A stage that decides each sample on its own: `check(sample)` edits it in place or raises `Reject`,
    and `SampleBatch.apply` counts the rejections by reason."""

    def check(self, sample: Sample) -> None:
        raise NotImplementedError

    def process(self, batch: SampleBatch) -> SampleBatch:
        return batch.apply(self.name, self.check)


class LoadOnFirstUse:
    def load(self) -> None:
        raise NotImplementedError

    def process(self, batch):
        """Loads first, then the stage's own processing (the class after this one in the MRO)."""
        self.ensure_loaded()
        return super().process(batch)

    def setup(self, worker_metadata: Any = None) -> None:
        self.load()
        self._loaded = True

    def ensure_loaded(self) -> None:
        if not getattr(self, "_loaded", False):
            self.setup()

    def ray_stage_spec(self) -> dict[str, Any]:
        return {**super().ray_stage_spec(), "is_actor_stage": False}


# A batch size no input reaches, so every executor hands a fan-in stage all its tasks in one batch.
ALL_AT_ONCE = 1 << 30


class FanIn:
    """A stage that needs every task of the stage before it at once: it works in `process_batch`, and
    is not resumable, since no output descends from a single input."""

    batch_size = ALL_AT_ONCE
    is_resumable = False

    def process(self, task: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} needs every task at once: it runs through process_batch")
