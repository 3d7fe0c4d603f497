"""The executor is chosen last: Curator's Ray Data executor and the in-process one run the same
stages to byte-identical outputs, and Ray leaves no process behind."""
from __future__ import annotations

import numpy as np
import psutil
import pytest
from curation_inputs import assert_contract, curate, good_pairs, write_tar


def _outputs(out) -> dict[str, bytes]:
    names = ["manifest.json", "stats.json", "quarantine/index.jsonl"]
    names += [str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))]
    return {name: (out / name).read_bytes() for name in names}


def _ray_processes() -> list[str]:
    names = []
    for proc in psutil.Process().children(recursive=True):
        try:
            names.append(" ".join(proc.cmdline())[:80])
        except psutil.Error:
            pass
    return [n for n in names if "ray" in n]


@pytest.fixture
def ray_cleanup():
    yield
    import ray

    ray.shutdown()  # in case the run failed before the executor's own shutdown


@pytest.mark.parametrize("dedup", ["dedup.shards=1", "dedup.shards=3"])
def test_ray_data_matches_in_process(tmp_path, langid_model, ray_cleanup, dedup):
    """With `dedup.shards=3` Ray runs the fan-out, three shard tasks and the merge."""
    rng = np.random.default_rng(9)
    samples = good_pairs(rng, 12)
    samples.append(("dup", dict(samples[2][1])))
    samples.append(("empty", {"png": b"", "txt": "沒有圖片".encode()}))
    write_tar(tmp_path / "in" / "a.tar", samples[:7])
    write_tar(tmp_path / "in" / "b.tar", samples[7:])
    overrides = ("input.batch_samples=4", "shards.samples_per_shard=3", dedup)
    curate(tmp_path / "in", tmp_path / "local", *overrides[:-1])
    stats = curate(tmp_path / "in", tmp_path / "ray", *overrides, executor="ray_data")
    assert assert_contract(tmp_path / "ray") == stats
    assert stats["dropped"] == {"exact_duplicate": 1} and stats["quarantined"] == {"empty_image": 1}
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")
    assert _ray_processes() == []


def test_the_in_process_executor_lets_go_of_each_task_it_has_passed_on():
    """A reader returns every part of its input at once, and later stages fill each part in place:
    once a part has gone on, the executor must not keep it alive until its last sibling is done."""
    import gc
    import weakref

    from nemo_curator.tasks import EmptyTask

    from nemo_twvlm.curation.executors import _handed_on

    tasks = [EmptyTask() for _ in range(3)]
    refs = [weakref.ref(t) for t in tasks]
    stream = _handed_on(tasks)
    del tasks
    first = next(stream)
    assert first is refs[0]()
    del first
    gc.collect()
    assert refs[0]() is None and refs[1]() is not None and refs[2]() is not None
    assert [t is r() for t, r in zip(stream, refs[1:])] == [True, True]
