"""Pipeline parallelism through megatron.training on CPU: the vision encoder and projector on the first
stage, virtual stages (interleaved schedule), fixed-shape activations between stages.

From one checkpoint, PP 2 x VP 2 must train the same losses on the same samples as PP 1, and a PP run
stopped and resumed must continue exactly where it stopped (and refuse to resume at another
data-parallel size).
"""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from nemo_twvlm.data.synthetic import write_dataset
from nemo_twvlm.presets import PRESETS, save_preset
from nemo_twvlm.compat.distributed import free_port
from nemo_twvlm.training.config import PretrainConfig, config_to_json

STEPS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pp")
    write_dataset(root / "data", train_pairs=300, val_pairs=10, interleaved_docs=200)
    # Four decoder layers, so PP 2 x VP 2 gives every virtual stage one layer.
    debug = PRESETS["debug"]
    save_preset(dataclasses.replace(debug, name="debug_4_layers",
                                    language=dataclasses.replace(debug.language, num_layers=4)), root / "preset")
    init = _config(root, "init", steps=1)
    _train(init, root)
    return root


def _config(root, name, *, steps=STEPS, pp=1, vp=None, exit_interval=None, load=None) -> PretrainConfig:
    cfg = PretrainConfig(name=name)
    cfg.model.preset, cfg.model.freeze_plan, cfg.model.train_vision = str(root / "preset"), "cpt", True
    cfg.data.path, cfg.data.sample_log = str(root / "data" / "blend.yaml"), str(root / f"{name}.jsonl")
    cfg.data.micro_batch_size, cfg.data.global_batch_size, cfg.data.packing_buffer_size = 2, 8, 64
    cfg.parallel.pipeline_parallel, cfg.parallel.virtual_pipeline_parallel = pp, vp
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.exit_interval = steps, 0, exit_interval
    cfg.trainer.lr = 3e-4  # at the default 1e-3 three steps overshoot from this init: the loss rises by step 2
    cfg.checkpoint.save, cfg.checkpoint.save_interval, cfg.checkpoint.load = str(root / name), 2, load
    if name != "init":
        cfg.model.init_from = str(root / "init")
    return cfg


def _train(cfg: PretrainConfig, root, *, nproc=None, ok=True) -> str:
    path = root / f"{cfg.name}-{cfg.trainer.exit_interval}.json"
    path.write_text(config_to_json(cfg))
    nproc = nproc or cfg.parallel.pipeline_parallel
    command = [sys.executable, "-m", "nemo_twvlm.training.pretrain", str(path)]
    if nproc > 1:
        command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), f"--nproc_per_node={nproc}",
                   f"--master_port={free_port()}", *command[1:]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _log(root, name):
    return [json.loads(line) for line in (root / f"{name}.jsonl").read_text().splitlines()]


def test_pipeline_parallel_trains_like_one_stage_and_resumes(setup):
    root = setup
    _train(_config(root, "pp1"), root)
    _train(_config(root, "pp2", pp=2, vp=2, exit_interval=2), root)
    # Two data-parallel ranks cannot take over one rank's data-loader state: refused, by name.
    refused = _train(_config(root, "pp2", load=str(root / "pp2")), root, nproc=2, ok=False)
    assert "saved at data-parallel size 1 and this run has 2" in refused
    output = _train(_config(root, "pp2", pp=2, vp=2, load=str(root / "pp2")), root)
    assert "restored data loader state" in output

    one, two = _log(root, "pp1"), _log(root, "pp2")
    # 4 micro-batches of 2 per step; the last stage logs each one.
    assert [r["iteration"] for r in two] == [r["iteration"] for r in one] == [i for i in range(STEPS) for _ in range(4)]
    assert [r["keys"] for r in two] == [r["keys"] for r in one]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    assert one[-1]["loss"] < one[0]["loss"]
