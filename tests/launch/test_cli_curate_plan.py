"""`nemo twvlm curate_plan` (or `curate --plan`): the table for a curation factory, the cluster from run.executor without
submitting anything, and bad arguments as one named line with exit 1."""
import re
import sys

import pytest

from nemo_twvlm.launch import cli


@pytest.fixture
def here(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path / "nemo_run"))


def test_prints_the_plan_table(here, capsys):
    assert cli.main(["curate_plan", "--factory", "curate_pairs_zh_tw", "samples=1000000", "nodes=2",
                     "cores_per_node=8", "memory_gb=64", "image_px=256", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "1,000,000 pairs samples of 256 px images" in out
    assert "2 nodes x 8 cores, 64.0 GiB per node" in out
    assert re.search(r"read \+ decode \+ pixel hash +0\.1 core-h", out)  # 10^6 / 3034 s
    assert re.search(r"finalize: Energon index \+ stats \(1 node\) +0\.0 core-h", out)  # 101 core-s
    assert "fits" in out


def test_documents_give_their_text_length(here, capsys):
    assert cli.main(["curate_plan", "--factory", "curate_interleaved_zh_tw", "samples=1000000", "nodes=1",
                     "cores_per_node=8", "image_px=256", "images_per_sample=3", "text_chars=3000", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "1,000,000 interleaved samples of 256 px images, shipped at 256 px; 3,000 chars of text per sample" in out
    assert "text beyond captions" in out and "2,864 chars/sample" in out  # 3000 - 3 x 45.5


def test_cluster_comes_from_run_executor_and_nothing_is_submitted(here, capsys):
    """`curate --plan` (the issue's form) is `curate_plan`."""
    assert cli.main(["curate", "--factory", "curate_pairs_zh_tw_cluster", "--plan", "samples=50000000",
                     "run.executor=slurm_cpu", "nodes=16", "dedup.shards=64", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "16 nodes x 64 cores" in out  # cpus_per_task 64 from conf/cluster/slurm_cpu.yaml; nodes given
    assert "dedup: 64 shard tasks" in out and "sbatch" not in out.lower()


@pytest.mark.parametrize("args, message", [
    (["samples=1000", "nodes=1", "cores_per_node=4", "image_px=4000"],
     "curate_plan: image_px=4000: per-sample costs were measured from 256 to 1024 px"),
    (["nodes=1", "cores_per_node=4"], "curate_plan: samples=0: expected the number of input samples, >= 1"),
    (["samples=1000", "cores_per_node=4"], "curate_plan: nodes=0: expected >= 1"),
    (["samples=1000", "nodes=1", "cores_per_node=4", "resize.quality=101"], "resize.quality=101 is out of range"),
])
def test_bad_input_names_the_field_and_exits_1(here, capsys, args, message):
    assert cli.main(["curate_plan", "--factory", "curate_pairs_zh_tw", *args, "--yes"]) == 1
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
