"""`nemo twvlm ...`: recipes as --factory, dotted overrides, executors from conf/cluster, dry runs.

`run_pretrain` is replaced by a stub that records what it was given, so nothing here imports
megatron or trains. Subprocess tests go through the installed `nemo` entry point.
"""
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import fiddle as fdl
import nemo_run as run
import pytest
import yaml

from nemo_twvlm.launch import cli, commands
from nemo_twvlm.launch.executors import ClusterSpecError, executor_from_spec, load_executor
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.launch.recipes import find_recipes, get_recipe

REPO = Path(__file__).resolve().parents[2]
SLURM_YAML = REPO / "conf" / "cluster" / "slurm_h100.yaml"
NEMO = Path(sys.executable).with_name("nemo")

# Loaded by every Python process started with this directory on PYTHONPATH, LocalExecutor children included.
STUB_SITECUSTOMIZE = '''
import dataclasses, json, os, sys, types

def run_pretrain(cfg, *, nproc=1, **hooks):
    with open(os.environ["TWVLM_STUB_OUT"], "w") as f:
        json.dump({"pid": os.getpid(), "python": sys.executable, "nproc": nproc,
                   "cfg": dataclasses.asdict(cfg)}, f)

stub = types.ModuleType("nemo_twvlm.training.pretrain")
stub.run_pretrain = run_pretrain
sys.modules[stub.__name__] = stub
'''


@pytest.fixture
def stub_env(tmp_path):
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "sitecustomize.py").write_text(STUB_SITECUSTOMIZE)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(stub_dir), env.get("PYTHONPATH")])),
        TWVLM_STUB_OUT=str(tmp_path / "run.json"),
        NEMORUN_HOME=str(tmp_path / "nemo_run"),
        COLUMNS="2000",  # rich wraps the sbatch script at the terminal width
        USER="tester",
    )
    env.pop("TWVLM_CONF", None)
    return env


def nemo(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(NEMO), "twvlm", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def wide_console(monkeypatch) -> None:
    """Rich wraps the sbatch script and cuts long factory names at the console's width, which NeMo-Run's
    console took from the terminal at import (COLUMNS set later changes nothing): make it wide."""
    from nemo_run.core.frontend.console.api import CONSOLE

    monkeypatch.setattr(CONSOLE, "width", 2000)


def recorded_run(env: dict) -> dict:
    return json.loads(Path(env["TWVLM_STUB_OUT"]).read_text())


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """Run `main` in this process with a recording run_pretrain; returns the recorded calls."""
    calls = []
    stub = types.ModuleType("nemo_twvlm.training.pretrain")
    stub.run_pretrain = lambda cfg, nproc=1, **hooks: calls.append((cfg, nproc))
    monkeypatch.setitem(sys.modules, stub.__name__, stub)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path / "nemo_run"))
    monkeypatch.chdir(REPO)
    return calls


# --- through the `nemo` entry point -----------------------------------------------------------------

def test_nemo_twvlm_pretrain_runs_the_recipe_in_process_with_overrides(stub_env):
    proc = subprocess.Popen(
        [str(NEMO), "twvlm", "pretrain", "--factory", "twvlm_debug", "trainer.max_steps=20",
         "data.seq_length=512", "model.freeze_plan=align", "--yes"],
        cwd=REPO, env=stub_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    run = recorded_run(stub_env)
    assert run["pid"] == proc.pid  # no executor: the CLI process itself trains
    assert run["cfg"]["name"] == "twvlm_debug"
    assert run["cfg"]["trainer"]["max_steps"] == 20
    assert run["cfg"]["data"]["seq_length"] == 512
    assert run["cfg"]["model"]["freeze_plan"] == "align"
    assert run["cfg"]["data"]["path"] == "runs/demo_data/blend.yaml"


def test_local_executor_runs_a_subprocess_of_the_venv_python(stub_env):
    stub_env["PATH"] = "/usr/bin:/bin"  # the venv is not activated: `python` on PATH is not the venv's
    proc = nemo("pretrain", "--factory", "twvlm_debug_align", "trainer.max_steps=3", "run.executor=local",
                "--yes", env=stub_env)
    assert "SUCCEEDED" in proc.stdout
    run = recorded_run(stub_env)
    assert Path(run["python"]).parent.resolve() == Path(sys.executable).parent.resolve()  # a venv may be a symlink
    assert run["cfg"]["name"] == "twvlm_debug_align" and run["cfg"]["trainer"]["max_steps"] == 3


def test_slurm_dryrun_prints_an_sbatch_script_matching_yaml_and_recipe(stub_env):
    spec = yaml.safe_load(SLURM_YAML.read_text())
    proc = nemo("pretrain", "--factory", "twvlm_70b_cpt", "run.executor=slurm_h100", "run.executor.nodes=8",
                "--dryrun", env=stub_env)
    assert not Path(stub_env["TWVLM_STUB_OUT"]).exists()
    lines = [line.strip() for line in proc.stdout.splitlines()]
    sbatch = {line for line in lines if line.startswith("#SBATCH")}
    assert "#SBATCH --nodes=8" in sbatch
    assert f"#SBATCH --gpus-per-node={spec['gpus_per_node']}" in sbatch
    assert f"#SBATCH --account={spec['account']}" in sbatch
    assert f"#SBATCH --partition={spec['partition']}" in sbatch
    assert f"#SBATCH --time={spec['time']}" in sbatch
    assert "#SBATCH --job-name=tester-twvlm_70b_cpt" in sbatch

    (srun,) = [line for line in lines if line.startswith("srun") and "--container-image" in line]
    assert f"--container-image {spec['container_image']}" in srun
    for mount in spec["container_mounts"]:
        assert mount in srun
    assert "torchrun --rdzv-backend c10d" in srun
    assert f"--nnodes 8 --nproc-per-node {spec['ntasks_per_node']}" in srun
    assert srun.endswith("-m nemo_run.core.runners.fdl_runner -n twvlm_70b_cpt /nemo_run/configs/twvlm_70b_cpt_fn_or_script")
    assert "tensor_parallel=8" in proc.stdout and "pipeline_parallel=4" in proc.stdout


# --- in this process --------------------------------------------------------------------------------

def test_overrides_reach_the_config_handed_to_run_pretrain(in_process):
    assert cli.main(["pretrain", "--factory", "twvlm_70b_cpt", "data.seq_length=4096", "trainer.lr=3e-5",
                     "parallel.recompute=full", "model.init_from=None", "nproc=2", "--yes"]) == 0
    ((cfg, nproc),) = in_process
    assert isinstance(cfg, PretrainConfig)
    assert (cfg.name, cfg.data.seq_length, cfg.trainer.lr) == ("twvlm_70b_cpt", 4096, 3e-5)
    assert (cfg.parallel.recompute, cfg.model.init_from, nproc) == ("full", None, 2)


def test_cfg_prefixed_overrides_work_too(in_process):
    assert cli.main(["pretrain", "--factory", "twvlm_debug", "cfg.trainer.max_steps=7", "--yes"]) == 0
    ((cfg, _),) = in_process
    assert cfg.trainer.max_steps == 7


def test_dryrun_prints_the_plan_and_does_not_run(in_process, capsys, tmp_path):
    # A local dry run checks that the data is there (tests/adversarial/test_training_config.py).
    assert cli.main(["pretrain", "--factory", "twvlm_debug", "data.seq_length=384", f"data.path={tmp_path}",
                     "--dryrun"]) == 0
    assert in_process == []
    out = capsys.readouterr().out
    assert "Dry run for task nemo_twvlm.launch.commands:pretrain" in out and "seq_length=384" in out


def test_to_yaml_exports_the_overridden_config(in_process, tmp_path):
    path = tmp_path / "pretrain.yaml"
    assert cli.main(["pretrain", "--factory", "twvlm_debug", "data.seq_length=512", "model.freeze_plan=align",
                     "--to-yaml", str(path)]) == 0
    assert in_process == []
    exported = yaml.safe_load(path.read_text())
    assert exported["_target_"] == "nemo_twvlm.launch.commands.pretrain"
    assert exported["cfg"]["data"]["seq_length"] == 512
    assert exported["cfg"]["model"]["freeze_plan"] == "align"
    assert exported["cfg"]["trainer"]["max_steps"] == get_recipe("twvlm_debug").trainer.max_steps


@pytest.mark.parametrize("args, message", [
    (["--factory", "twvlm_nope"], "No matching factory found for: twvlm_nope"),
    (["--factory", "twvlm_debug", "run.executor=nowhere"], "run.executor='nowhere' is not an executor"),
    # 2 nodes x 8 GPUs cannot hold TP 8 x PP 4: refused before anything is submitted.
    (["--factory", "twvlm_70b_cpt", "run.executor=slurm_h100", "run.executor.nodes=2"], "world_size=16"),
    (["--factory", "twvlm_70b_cpt_cp2", "run.executor=slurm_h100", "data.seq_length=8190"], "data.seq_length=8190"),
    (["--factory", "twvlm_70b_cpt", "run.executor=slurm_h100", "trainer.fp8_recipe=mx"], "trainer.fp8_recipe='mx'"),
])
def test_errors_are_reported_before_launch(in_process, capsys, args, message):
    assert cli.main(["pretrain", *args, "--dryrun"]) == 1
    assert message in capsys.readouterr().err
    assert in_process == []


@pytest.mark.parametrize("option, message", [
    ("--dryrn", "pretrain: no option --dryrn; did you mean --dryrun?"),
    ("--max-steps=3", "pretrain: no option --max-steps=3; the options are --detach, "),
])
def test_an_unknown_option_is_refused_not_dropped(in_process, capsys, option, message):
    """NeMo-Run would drop it and launch: a misspelt --dryrun must not start the run."""
    assert cli.main(["pretrain", "--factory", "twvlm_debug", option, "--yes"]) == 1
    err = capsys.readouterr().err
    assert message in err and "(overrides are written field=value)" in err
    assert in_process == []


def test_curate_suggests_its_plan_flag(in_process, capsys):
    assert cli.main(["curate", "--factory", "pairs_zh_tw", "input_dir=a", "output_dir=b", "--pln", "--yes"]) == 1
    assert "curate: no option --pln; did you mean --plan?" in capsys.readouterr().err


def test_help_lists_recipes_and_executors(in_process, capsys, monkeypatch):
    wide_console(monkeypatch)
    cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for name in [*find_recipes("pretrain"), "local", "slurm_h100"]:
        assert name in out
    cli.main(["curate", "--help"])
    out = capsys.readouterr().out
    for name in find_recipes("curate"):
        assert name in out


def test_every_recipe_is_a_factory():
    from nemo_run.cli.api import resolve_factory

    for name in find_recipes("pretrain"):
        task = resolve_factory(commands.pretrain, name)()
        assert fdl.build(task.cfg) == find_recipes("pretrain")[name]()


# --- executors from cluster files -------------------------------------------------------------------

CLUSTER_RECIPES = sorted(name for name, recipe in find_recipes("pretrain").items() if recipe().parallel.num_gpus)


def test_every_gpu_recipe_says_its_cluster_size():
    assert {n for n in find_recipes("pretrain") if not n.startswith("twvlm_debug")} == set(CLUSTER_RECIPES)
    sizes = {get_recipe(n).parallel.num_gpus for n in CLUSTER_RECIPES if n.startswith("twvlm_70b")}
    assert {32, 64, 128, 256} <= sizes


@pytest.mark.parametrize("name", CLUSTER_RECIPES)
def test_slurm_dryrun_sbatch_matches_the_recipe(in_process, capsys, monkeypatch, name):
    """The job is sized from the recipe: nodes x GPUs per node = parallel.num_gpus, one torchrun per node."""
    wide_console(monkeypatch)
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # NeMo-Run's experiment reads it from a thread
    spec = yaml.safe_load(SLURM_YAML.read_text())
    cfg = get_recipe(name)
    nodes = cfg.parallel.num_gpus // spec["gpus_per_node"]
    assert cli.main(["pretrain", "--factory", name, "run.executor=slurm_h100", "--dryrun", "--yes"]) == 0
    assert in_process == []
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    sbatch = {line for line in lines if line.startswith("#SBATCH")}
    assert f"#SBATCH --nodes={nodes}" in sbatch
    assert f"#SBATCH --gpus-per-node={spec['gpus_per_node']}" in sbatch
    assert f"#SBATCH --job-name=tester-{name}" in sbatch
    (srun,) = [line for line in lines if line.startswith("srun") and "--container-image" in line]
    assert f"--container-image {spec['container_image']}" in srun
    assert f"--nnodes {nodes} --nproc-per-node {spec['gpus_per_node']}" in srun
    assert srun.endswith(f"fdl_runner -n {name} /nemo_run/configs/{name}_fn_or_script")


def test_slurm_dryrun_shows_preemption_requeue_and_resume(in_process, capsys, monkeypatch):
    """SIGTERM 5 minutes before the limit, which training answers by saving and exiting; a requeued job
    resumes from the stage's own save (megatron's --load), that is, its newest complete checkpoint."""
    from nemo_twvlm.training.arguments import megatron_args

    wide_console(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["pretrain", "--factory", "twvlm_70b_cpt_128gpu", "run.executor=slurm_h100", "--dryrun",
                     "--yes"]) == 0
    out = capsys.readouterr().out
    sbatch = {line.strip() for line in out.splitlines() if line.strip().startswith("#SBATCH")}
    assert {"#SBATCH --signal=TERM@300", "#SBATCH --requeue"} <= sbatch
    assert "exit_signal='SIGTERM'" in out and "save='checkpoints/twvlm_70b_cpt'" in out
    args = megatron_args(get_recipe("twvlm_70b_cpt_128gpu"))
    assert args[args.index("--exit-signal") - 1:args.index("--exit-signal") + 2] == \
        ["--exit-signal-handler", "--exit-signal", "SIGTERM"]
    assert args[args.index("--load") + 1] == "checkpoints/twvlm_70b_cpt"  # a requeued job resumes its own save


def test_nodes_on_the_command_line_win_over_the_recipe(in_process, capsys, monkeypatch):
    wide_console(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["pretrain", "--factory", "twvlm_70b_cpt", "run.executor=slurm_h100", "run.executor.nodes=16",
                     "--dryrun", "--yes"]) == 0
    assert "#SBATCH --nodes=16" in capsys.readouterr().out


def test_a_recipe_size_that_is_not_whole_nodes_is_refused(in_process, capsys):
    assert cli.main(["pretrain", "--factory", "twvlm_70b_cpt", "run.executor=slurm_h100", "parallel.num_gpus=36",
                     "--dryrun"]) == 1
    assert "parallel.num_gpus=36" in capsys.readouterr().err


def test_conf_dir_follows_TWVLM_CONF(monkeypatch, tmp_path):
    monkeypatch.setenv("TWVLM_CONF", str(tmp_path))
    assert cli.conf_dir() == tmp_path


def test_cluster_file_errors_name_the_field():
    with pytest.raises(ClusterSpecError, match=r"\['nodez'\] are not fields of SlurmExecutor"):
        executor_from_spec({"executor": "slurm", "account": "a", "nodez": 2,
                            "tunnel": {"type": "local", "job_dir": "/tmp/jobs"}})
    with pytest.raises(ClusterSpecError, match="executor='k8s' is not supported"):
        executor_from_spec({"executor": "k8s"})
    with pytest.raises(ClusterSpecError, match="tunnel=None"):
        executor_from_spec({"executor": "slurm", "account": "a"})


def test_plan_prints_the_70b_cpt_budget_and_memory_margin(in_process, capsys):
    assert cli.main(["plan", "--factory", "twvlm_70b_cpt", "num_gpus=64", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "TP8 PP4 VP5 CP1 DP2 on 64 GPUs" in out
    assert "language 70.55 B" in out
    assert "fits" in out
    assert in_process == []  # planning never trains


def test_plan_refuses_a_world_the_layout_does_not_divide(in_process, capsys):
    cli.main(["plan", "--factory", "twvlm_70b_cpt", "num_gpus=48", "--yes"])
    assert "world_size=48" in capsys.readouterr().err


# --- curate: recipes and YAMLs by name ----------------------------------------------------------------

LANGID_MODEL = REPO / ".venv" / "share" / "nemo_twvlm" / "lid.176.ftz"  # the recipes' default


@pytest.fixture(scope="module")
def raw_pairs(tmp_path_factory):
    if not LANGID_MODEL.is_file():
        pytest.skip(f"{LANGID_MODEL} is missing: run scripts/fetch_langid_model.sh (setup does)")
    from nemo_twvlm.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("raw")
    write_dataset(root, train_pairs=12, val_pairs=1, interleaved_docs=1, instructions=1, samples_per_shard=6)
    return root / "pairs"


def curated_stats(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    assert stats["input"] == stats["kept"] + sum(stats["dropped"].values()) + sum(stats["quarantined"].values())
    return stats


def test_curate_runs_a_recipe_with_overrides(in_process, raw_pairs, tmp_path, capsys):
    assert cli.main(["curate", "--factory", "curate_pairs_zh_tw", f"input_dir={raw_pairs}", f"output_dir={tmp_path}",
                     "executor.name=in_process", "shards.samples_per_shard=4", "--yes"]) == 0
    stats = curated_stats(tmp_path)
    assert stats["input"] == 12 and stats["kept"] >= 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kept"] == stats["kept"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())["shards"]
    assert max(s["samples"] for s in manifest) <= 4


def test_curate_takes_a_conf_curation_yaml_by_name(in_process, raw_pairs, tmp_path):
    assert cli.main(["curate", "--factory", "pairs_zh_tw", f"input_dir={raw_pairs}", f"output_dir={tmp_path}",
                     "executor.name=in_process", "shards.samples_per_shard=4", "--yes"]) == 0
    assert curated_stats(tmp_path)["input"] == 12


def test_curate_has_one_form(in_process, capsys):
    """The pipeline is --factory's; the second form (config=NAME overrides="...") is gone, and named."""
    assert cli.main(["curate", "--factory", "curate_pairs_zh_tw", "config=interleaved_zh_tw", "input_dir=a",
                     "output_dir=b", "--yes"]) == 1
    assert "curate: config: no such field or argument of curate" in capsys.readouterr().err
    assert cli.main(["curate", "input_dir=a", "output_dir=b", "--yes"]) == 1
    assert "curate: no cfg; give --factory with one of ['conversations_zh_tw'," in capsys.readouterr().err


def test_every_curate_recipe_is_a_factory():
    from nemo_run.cli.api import resolve_factory

    for name, recipe in find_recipes("curate").items():
        task = resolve_factory(commands.curate, name)()
        assert fdl.build(task.cfg) == recipe()


def test_curate_cluster_recipe_dry_runs_on_slurm(in_process, capsys, monkeypatch):
    wide_console(monkeypatch)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # the git packager's subprocesses read it
    assert cli.main(["curate", "--factory", "curate_pairs_zh_tw_cluster", "input_dir=/workspace/raw",
                     "output_dir=/workspace/curated", "run.executor=slurm_cpu", "--dryrun"]) == 0
    out = capsys.readouterr().out
    spec = yaml.safe_load((REPO / "conf" / "cluster" / "slurm_cpu.yaml").read_text())
    assert "#SBATCH --nodes=1" in out and f"#SBATCH --cpus-per-task={spec['cpus_per_task']}" in out
    # One Ray cluster of the job's nodes, and the pipeline once, on its head (tests/launch/test_ray_cluster.py).
    (command,) = [line.strip() for line in out.splitlines() if "fdl_runner" in line]
    assert command.startswith('COMMAND="${COMMAND:-RAY_ADDRESS=$ip_head python') and "torchrun " not in out
    assert "name='xenna'" in out and "preset='70b'" in out and "'/workspace/raw'" in out


def test_docker_ngc_executor_runs_single_node_recipes_and_refuses_cluster_ones(in_process, capsys, monkeypatch):
    wide_console(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    executor = fdl.build(load_executor(REPO / "conf" / "cluster" / "docker_ngc.yaml"))
    assert isinstance(executor, run.DockerExecutor) and executor.nproc_per_node() == 8
    assert cli.main(["pretrain", "--factory", "twvlm_8b_cpt", "run.executor=docker_ngc", "--dryrun", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "container_image: nemo_twvlm:latest" in out and "runtime: nvidia" in out
    # TP 8 x PP 4 cannot fit one 8-GPU machine: refused before docker is asked for anything.
    assert cli.main(["pretrain", "--factory", "twvlm_70b_cpt", "run.executor=docker_ngc", "--dryrun", "--yes"]) == 1
    assert "world_size=8" in capsys.readouterr().err
