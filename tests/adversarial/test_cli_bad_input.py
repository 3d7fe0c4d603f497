"""Every `nemo twvlm` verb (and each `python -m` form that forwards to it) given bad input: a non-zero exit,
one message naming the bad argument or field, no Python traceback and no empty "Unexpected error:".

One interpreter per invocation, all started at once; none gets as far as building a model or reading data.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NEMO = Path(sys.executable).with_name("nemo")
MISSING = "/nonexistent/twvlm"

# verb -> (arguments, what the message must name)
VERBS = {
    "pretrain": (["--factory", "twvlm_debug", "trainer.lr=-1", "trainer.weight_decay=-0.1", "--dryrun"],
                 "trainer.lr=-1.0: expected a number >= 0"),
    "plan": (["--factory", "twvlm_debug", "num_gpus=-1", "--yes"], "num_gpus=-1"),
    "import_hf": ([f"src={MISSING}", "dst=OUT", "--yes"], f"src='{MISSING}': no such file or directory"),
    "export_hf": ([f"src={MISSING}", "dst=OUT", "--yes"], f"src='{MISSING}': no such checkpoint directory"),
    "export_trtllm": ([f"hf_dir={MISSING}", "engine_dir=OUT", "--yes"], f"hf_dir='{MISSING}'"),
    "curate": (["--factory", "pairs_zh_tw", f"input_dir={MISSING}", "output_dir=OUT", "--yes"],
               f"input_dir='{MISSING}'"),
    "chat": ([f"ckpt={MISSING}", "image=cup.png", "prompt=hi", "--yes"], f"ckpt='{MISSING}'"),
    "evaluate": ([f"ckpt={MISSING}", "tasks=mcq:x.jsonl", "--yes"], f"ckpt='{MISSING}'"),
    "demo": ([f"out_dir=/proc/twvlm/demo", "--yes"], "out_dir='/proc/twvlm/demo': cannot be created"),
    "finding": (["seeds=0,x", "--yes"], "seeds='0,x': expected positive integers"),
    "curate_plan": (["--factory", "pairs_zh_tw", "samples=1000", "nodes=0", "cores_per_node=4", "--yes"],
                    "nodes=0: expected >= 1"),
}
FORWARDED = {  # the `python -m` forms: the same command line, reached by exec
    "conversion": (["-m", "nemo_twvlm.conversion", "export_hf", f"src={MISSING}", "dst=OUT"],
                   f"src='{MISSING}': no such checkpoint directory"),
    "curation": (["-m", "nemo_twvlm.curation", "--config-name", "pairs_zh_tw", f"input_dir={MISSING}",
                  "output_dir=OUT"], f"input_dir='{MISSING}'"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """(exit code, stdout + stderr) of every invocation, run in parallel."""
    tmp = tmp_path_factory.mktemp("cli_bad_input")
    env = {**os.environ, "NEMORUN_HOME": str(tmp / "nemo_run"), "COLUMNS": "200"}
    env.pop("TWVLM_CONF", None)
    commands = {verb: [str(NEMO), "twvlm", verb, *args] for verb, (args, _) in VERBS.items()}
    commands.update({name: [sys.executable, *args] for name, (args, _) in FORWARDED.items()})
    procs = {name: subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, cmd in commands.items()}
    return {name: (proc.wait(timeout=300), proc.stdout.read()) for name, proc in procs.items()}


@pytest.mark.parametrize("name", [*VERBS, *FORWARDED])
def test_bad_input_is_one_named_error(outcomes, name):
    code, output = outcomes[name]
    expected = {**VERBS, **FORWARDED}[name][1]
    assert code != 0, output[-2000:]
    assert "Traceback" not in output and "Unexpected error" not in output, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("Error: ")]
    command = name if name in VERBS else {"conversion": "export_hf", "curation": "curate"}[name]
    assert line.startswith(f"Error: {command}: ")
    assert expected in output[output.index(line):], output[-2000:]  # a config error lists its problems below


def test_pretrain_reports_every_problem_at_once(outcomes):
    output = outcomes["pretrain"][1]
    assert "trainer.weight_decay=-0.1: expected a number >= 0" in output
    assert "data.path='runs/demo_data/blend.yaml': no such file or directory" in output  # run from elsewhere


def test_a_schema_mismatch_is_a_message_and_a_non_zero_exit(tmp_path, langid_model, monkeypatch, capsys):
    """Curation's SchemaMismatchError (LAION's URL / TEXT under the default columns), through the CLI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nemo_twvlm.launch import cli

    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"URL": ["http://127.0.0.1:9/a.png"] * 3, "TEXT": ["紅色的圓形在左上。"] * 3}),
                   tmp_path / "in" / "part-00000.parquet")
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path / "nemo_run"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    assert cli.main(["curate", "--factory", "pairs_zh_tw", f"input_dir={tmp_path / 'in'}",
                     f"output_dir={tmp_path / 'out'}", "input.format=table", "executor.name=in_process",
                     f"lang.model_path={langid_model}", "--yes"]) == 1
    err = capsys.readouterr().err
    assert any(line.startswith("Error: curate: 3 of 3 input samples do not have the layout input.format='table'")
               for line in err.splitlines())
    assert "has no column 'url' (input.url_column)" in err and "Traceback" not in err
    assert (tmp_path / "out" / "stats.json").is_file()  # the counts are still written
