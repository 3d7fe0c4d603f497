"""`curate ... run.executor=slurm_cpu run.executor.nodes=N`: one sbatch that starts the Ray head, then the
workers, waits for all N nodes and runs the pipeline once, on the head, against that cluster."""
import io
import subprocess
import sys
from pathlib import Path

import fiddle as fdl
import pytest
import yaml
from nemo_run.core.serialization.zlib_json import ZlibJSONSerializer

from nemo_twvlm.launch import cli
from nemo_twvlm.launch.commands import curate

REPO = Path(__file__).resolve().parents[2]
SLURM_CPU = yaml.safe_load((REPO / "conf" / "cluster" / "slurm_cpu.yaml").read_text())
RUN = ["curate", "--factory", "pairs_zh_tw", "input_dir=/workspace/twvlm/raw", "output_dir=/workspace/twvlm/curated",
       "run.executor=slurm_cpu"]


@pytest.fixture
def dryrun(monkeypatch, tmp_path, capsys):
    """`main(args)` in this process; returns what it printed."""
    monkeypatch.setenv("COLUMNS", "2000")  # rich wraps printed lines at the terminal width
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path / "nemo_run"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.chdir(REPO)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main([*RUN, *args, "--dryrun", "--yes"])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def _first(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_dryrun_for_four_nodes_starts_head_then_workers_waits_and_runs_the_pipeline_once(dryrun):
    code, out, _ = dryrun("run.executor.nodes=4", "executor.name=xenna", "dedup.shards=4")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    sbatch = {line for line in lines if line.startswith("#SBATCH")}
    assert {"#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", f"#SBATCH --cpus-per-task={SLURM_CPU['cpus_per_task']}",
            f"#SBATCH --partition={SLURM_CPU['partition']}", "#SBATCH --job-name=tester-pairs_zh_tw"} <= sbatch
    assert not any("gres" in line or "gpus-per-node" in line for line in sbatch)
    assert f"export CPUS_PER_WORKER={SLURM_CPU['cpus_per_task']}" in lines  # not the template's 8 GPUs x 16
    token = f"{SLURM_CPU['tunnel']['job_dir']}/pairs_zh_tw/ray_auth_token"
    assert {"export RAY_AUTH_MODE=token", f"export RAY_AUTH_TOKEN_PATH={token}"} <= set(lines)

    head = _first(lines, "ray start --head")
    head_srun = _first(lines, "--container-name=ray-head --nodes=1")
    worker = _first(lines, 'ray start --address "$ip_head"')
    worker_loop = _first(lines, "for ((i = 1; i < SLURM_JOB_NUM_NODES; i++))")
    waited = _first(lines, 'echo "All workers connected!"')
    commands = [i for i, line in enumerate(lines) if "nemo_run.core.runners.fdl_runner" in line]
    assert _first(lines, f"> {token})") < head < head_srun < worker_loop < worker < waited
    assert len(commands) == 1 and commands[0] > waited
    command = lines[commands[0]]
    assert command.startswith('COMMAND="${COMMAND:-RAY_ADDRESS=$ip_head python -m nemo_run.core.runners.fdl_runner '
                              '-n pairs_zh_tw ')
    assert 'bash -c "$COMMAND"' in lines[_first(lines[waited:], "--container-name=ray-head") + waited]

    script = out[out.index("#!/bin/bash"):]
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr

    # The head runs the task parsed here: the curate command with this config.
    encoded = command.removesuffix('}"').rsplit(" ", 1)[1]
    task = ZlibJSONSerializer().deserialize(encoded)
    assert fdl.get_callable(task) is curate
    cfg = fdl.build(task.cfg)
    assert (cfg.output_dir, cfg.executor.name, cfg.dedup.shards) == ("/workspace/twvlm/curated", "xenna", 4)


def test_the_pipeline_must_use_a_ray_executor(dryrun):
    code, _, err = dryrun("run.executor.nodes=2", "executor.name=in_process")
    assert code == 1
    assert "executor.name='in_process'" in err and "['ray_data', 'xenna']" in err


def test_nodes_need_a_cpu_count(dryrun):
    code, _, err = dryrun("run.executor.nodes=2", "run.executor.cpus_per_task=None")
    assert code == 1
    assert "run.executor.cpus_per_task=None" in err
