"""Fused stages: members run in order on one task and keep their own counts; what an executor pickles
between the pipeline's stages never holds decoded pixels, and a run that pickles every hand-off (as
Ray Data and Xenna do) writes the in-process run's bytes; members that cannot share a worker are refused."""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pytest
from curation_inputs import LANGID_MODEL, REPO, curate, draw, encode, good_pairs, write_tar
from nemo_curator.backends.base import BaseExecutor, BaseStageAdapter, NodeInfo, WorkerMetadata
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import EmptyTask

from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.pipeline import build_pipeline, finalize, input_files
from nemo_twvlm.curation.sample import SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage
from nemo_twvlm.curation.stages.fused import FusedStage, unfused


@dataclass
class Step(CurationStage):
    """Appends its name to a list task; `drop` ends the task."""
    name: str
    drop: bool = False

    def process(self, task: list[str]) -> object:  # not annotated as a list: that would mark a fan-out stage
        return None if self.drop else [*task, self.name]


def test_members_run_in_order_and_a_dropped_task_stops_there():
    assert FusedStage("f", [Step("a"), Step("b")]).process([]) == ["a", "b"]
    after = Step("c")
    after.process = lambda task: pytest.fail("a member after the one that dropped the task ran")
    assert FusedStage("f", [Step("a"), Step("b", drop=True), after]).process([]) is None
    assert [s.name for s in unfused([Step("x"), FusedStage("f", [Step("a"), Step("b")]), Step("y")])] == \
        ["x", "a", "b", "y"]


class Fans(Step):
    def process(self, task: list[str]) -> list[list[str]]:
        return [task, task]


class Actor(Step):
    def ray_stage_spec(self) -> dict:
        return {**super().ray_stage_spec(), "is_actor_stage": True}


@pytest.mark.parametrize("member, why", [
    (Fans("fans"), "'fans' cannot be fused into 'f': it may return several tasks"),
    (Step("many").with_(batch_size=8), "'many' cannot be fused into 'f': its batch_size is 8"),
    (Step("gpu").with_(resources=Resources(gpus=1.0)), "'gpu' cannot be fused into 'f': it asks for"),
    (Actor("actor"), "'actor' cannot be fused into 'f': Ray Data runs it as an actor"),
])
def test_a_member_that_cannot_share_a_worker_is_refused_by_name(member, why):
    with pytest.raises(ValueError, match=why):
        FusedStage("f", [Step("a"), member])


class PicklingExecutor(BaseExecutor):
    """Every stage over every task, then each output pickled and unpickled before the next stage, as
    Ray Data and Xenna hand tasks on; `pixels_handed_on` counts the decoded images that crossed."""

    def __init__(self):
        super().__init__({})
        self.pixels_handed_on = 0
        self.tasks_handed_on = 0

    def execute(self, stages, initial_tasks=None):
        tasks = initial_tasks or [EmptyTask()]
        for stage in stages:
            adapter = BaseStageAdapter(stage)
            adapter.setup_on_node(NodeInfo(node_id="local"), WorkerMetadata(worker_id="local"))
            adapter.setup(WorkerMetadata(worker_id="local"))
            size = min(stage.batch_size or 1, len(tasks)) or 1
            tasks = [out for i in range(0, len(tasks), size) for out in adapter.process_batch(tasks[i:i + size])]
            for task in tasks:
                if isinstance(task, SampleBatch):
                    self.pixels_handed_on += sum(item.pil is not None for _, item in task.images())
            self.tasks_handed_on += len(tasks)
            tasks = [pickle.loads(pickle.dumps(task)) for task in tasks]
            adapter.teardown()
        return tasks


def test_no_decoded_pixels_cross_a_stage_boundary_and_a_pickling_run_writes_the_same_bytes(tmp_path):
    rng = np.random.default_rng(11)
    samples = good_pairs(rng, 10)
    samples[3][1]["jpg"] = encode(draw(rng, (900, 700)), "JPEG", quality=90)  # resized as it ships
    samples[5] = (samples[5][0], {**samples[5][1], "txt": "简体中文的说明文字，这里有很多字。".encode()})  # converted
    write_tar(tmp_path / "in" / "0.tar", samples[:6])
    write_tar(tmp_path / "in" / "1.tar", samples[6:] + samples[:2])  # two exact duplicates across files
    overrides = [f"lang.model_path={LANGID_MODEL}", f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}",
                 "input.batch_samples=4"]
    reference = curate(tmp_path / "in", tmp_path / "in_process", *overrides[2:])

    cfg = compose_config("pairs_zh_tw", [f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'pickled'}",
                                         *overrides])
    executor = PicklingExecutor()
    build_pipeline(cfg).run(executor=executor)
    stats = finalize(cfg, sorted(input_files(cfg)))

    assert executor.tasks_handed_on > 10 and executor.pixels_handed_on == 0
    assert stats == reference and stats["kept"] == 10 and stats["dropped"] == {"exact_duplicate": 2}
    assert stats["converted"] == {"none": 9, "s2twp": 1}
    assert {s["stage"] for s in stats["stages"]} >= {"decode_verify", "resize", "signatures", "token_count"}
    for name in ("manifest.json", "quarantine/index.jsonl"):
        assert (tmp_path / "pickled" / name).read_bytes() == (tmp_path / "in_process" / name).read_bytes(), name
    shards = sorted(p.name for p in (tmp_path / "in_process" / "shards").glob("*.tar"))
    assert shards and shards == sorted(p.name for p in (tmp_path / "pickled" / "shards").glob("*.tar"))
    for name in shards:
        assert (tmp_path / "pickled" / "shards" / name).read_bytes() == \
            (tmp_path / "in_process" / "shards" / name).read_bytes(), name


def test_unfused_stages_would_hand_pixels_on(tmp_path):
    """The check above can fail: the same stages, each on its own, pickle a part with its pixels."""
    rng = np.random.default_rng(12)
    write_tar(tmp_path / "in" / "0.tar", good_pairs(rng, 3))
    cfg = compose_config("pairs_zh_tw", [f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}",
                                         f"lang.model_path={LANGID_MODEL}",
                                         f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}"])
    pipeline = build_pipeline(cfg)
    pipeline.stages = unfused(pipeline.stages)
    executor = PicklingExecutor()
    pipeline.run(executor=executor)
    # Out of decode_verify, clean_text, language_id, script_zh, quality_zh and resize.
    assert executor.pixels_handed_on == 3 * 6
