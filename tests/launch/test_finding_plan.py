"""The finding experiment's plan: the two arms are trained identically, on the same data files, and
differ only in the LM they start from (no training here: the full run is scripts/finding.sh)."""
import json
from pathlib import Path

from nemo_twvlm.launch.finding import SEEDS, finding_recipes, plan_seed
from nemo_twvlm.training.config import config_to_json


def _plan(out: Path, seed: int = 2):
    return plan_seed(*finding_recipes(), seed, out)


def _without_start(cfg) -> dict:
    raw = json.loads(config_to_json(cfg))
    raw["model"]["init_from"] = raw["checkpoint"]["save"] = None
    raw["trainer"]["tensorboard_dir"] = None  # where a stage logs, beside where it saves
    return raw


def test_arms_differ_only_in_where_they_start(tmp_path):
    stages = _plan(tmp_path)
    assert list(stages) == ["text_sft", "base/align", "base/cpt", "aligned/align", "aligned/cpt", "vsft"]
    for stage in ("align", "cpt"):
        assert _without_start(stages[f"base/{stage}"]) == _without_start(stages[f"aligned/{stage}"])
    assert stages["base/align"].model.init_from is None  # the debug LM as the demo starts it
    assert stages["aligned/align"].model.init_from == stages["text_sft"].checkpoint.save
    assert stages["text_sft"].model.init_from is None
    for arm in ("base", "aligned"):
        assert stages[f"{arm}/cpt"].model.init_from == stages[f"{arm}/align"].checkpoint.save
    assert stages["vsft"].model.init_from == stages["aligned/cpt"].checkpoint.save
    # One seed initialises both starts: text_sft begins from the very weights the base arm begins from.
    assert {cfg.trainer.seed for cfg in stages.values()} == {cfg.data.seed for cfg in stages.values()} == {2}
    assert len({cfg.checkpoint.save for cfg in stages.values()}) == len(stages)


def test_no_visual_instructions_before_vsft(tmp_path):
    stages = _plan(tmp_path)
    data = tmp_path / "data"
    assert Path(stages["text_sft"].data.path) == data / "text_instructions" / "shards"
    for name, cfg in stages.items():
        if name.endswith(("align", "cpt")):
            assert Path(cfg.data.path) == data / "blend.yaml"
            assert cfg.model.freeze_plan == name.split("/")[1]
    assert Path(stages["vsft"].data.path) == data / "sft_blend.yaml"


def test_the_arms_cpt_data_are_byte_identical(tmp_path):
    # Both arms read the one blend file of the seed (written once, before either arm trains), so every
    # byte they see is the same; tests/data/test_synthetic.py::test_same_seed_same_bytes shows a seed
    # always writes the same bytes.
    stages = _plan(tmp_path)
    for stage in ("align", "cpt"):
        assert stages[f"base/{stage}"].data.path == stages[f"aligned/{stage}"].data.path
        assert stages[f"base/{stage}"].data.seed == stages[f"aligned/{stage}"].data.seed


def test_three_fixed_seeds():
    assert len(SEEDS) == 3 and all(seed > 0 for seed in SEEDS)
