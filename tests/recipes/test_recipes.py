"""Every registered recipe builds offline, without a GPU, into a config that could launch."""
import dataclasses
import re

import pytest

from nemo_twvlm.presets import PRESETS, get_preset
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.validate import validate
from nemo_twvlm.launch.recipes import find_recipes, get_recipe

RECIPE_NAMES = sorted(find_recipes("pretrain"))
NAME_PATTERN = re.compile(r"twvlm_(?P<size>[a-z0-9]+)(?:_(?P<stage>align|cpt|sft))?(?:_(?P<variant>\w+))?")


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_builds_a_consistent_config(name):
    cfg = find_recipes("pretrain")[name]()
    assert isinstance(cfg, PretrainConfig)
    assert cfg.name == name

    preset = get_preset(cfg.model.preset)
    assert cfg.data.seq_length > preset.num_image_tokens
    assert cfg.data.global_batch_size % cfg.data.micro_batch_size == 0

    # The smallest world the layout fits: one data-parallel rank. fp8 is checked as if on a TE box.
    par = cfg.parallel
    validate(cfg, world_size=par.tensor_parallel * par.pipeline_parallel * par.context_parallel,
             te_available=True)


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_name_says_what_it_is(name):
    match = NAME_PATTERN.fullmatch(name)
    assert match, f"{name} does not read twvlm_<size>_<stage>[_variant]"
    cfg = get_recipe(name)
    assert match["size"] in PRESETS and cfg.model.preset == match["size"]
    if match["stage"]:
        assert cfg.model.freeze_plan == match["stage"]


def test_registry_holds_the_required_recipes():
    required = {"twvlm_debug", "twvlm_debug_align", "twvlm_debug_cpt", "twvlm_8b_align",
                "twvlm_70b_align", "twvlm_70b_cpt", "twvlm_70b_cpt_fp8"}
    assert required <= set(RECIPE_NAMES)
    with pytest.raises(ValueError, match="twvlm_nope.*expected one of"):
        get_recipe("twvlm_nope")


def test_each_call_returns_a_fresh_config():
    first = get_recipe("twvlm_debug")
    first.trainer.max_steps = 1
    assert get_recipe("twvlm_debug").trainer.max_steps == 300


def test_debug_recipe():
    cfg = get_recipe("twvlm_debug")
    assert (cfg.model.preset, cfg.model.freeze_plan, cfg.model.train_vision) == ("debug", "cpt", True)
    assert (cfg.data.path, cfg.data.tokenizer) == ("runs/demo_data/blend.yaml", "data/tokenizer")
    assert (cfg.data.seq_length, cfg.data.micro_batch_size, cfg.data.global_batch_size) == (256, 8, 8)
    assert (cfg.trainer.lr, cfg.trainer.max_steps, cfg.trainer.precision) == (1e-3, 300, "fp32")


def test_debug_cpt_starts_from_debug_align_which_trains_the_projector_only():
    cpt, align = get_recipe("twvlm_debug_cpt"), get_recipe("twvlm_debug_align")
    assert cpt.model.init_from == align.checkpoint.save
    assert cpt.checkpoint.save != align.checkpoint.save
    base = get_recipe("twvlm_debug")
    # CPT adds its evaluation (validation, text retention) and the retention gate, nothing else.
    assert (cpt.data.val_path, cpt.data.retention_path) == ("runs/demo_data/pairs_val", "runs/demo_data/retention")
    assert (cpt.trainer.eval_interval, cpt.trainer.eval_iters, cpt.trainer.retention_gate) == (300, 2, 0.5)
    evaluation = dict(eval_interval=base.trainer.eval_interval, eval_iters=base.trainer.eval_iters,
                      retention_gate=base.trainer.retention_gate)
    assert dataclasses.replace(cpt.data, val_path="", retention_path="") == base.data
    assert dataclasses.replace(cpt.trainer, **evaluation) == base.trainer
    assert cpt.parallel == base.parallel
    assert (align.model.freeze_plan, align.model.train_vision, align.trainer.lr) == ("align", False, 1e-3)


def test_70b_align_recipe():
    cfg = get_recipe("twvlm_70b_align")
    assert (cfg.model.freeze_plan, cfg.model.train_vision) == ("align", False)
    assert (cfg.trainer.lr, cfg.trainer.precision) == (1e-3, "bf16")
    assert (cfg.data.seq_length, cfg.data.global_batch_size) == (4096, 256)


def test_70b_cpt_recipe_starts_from_the_align_checkpoint():
    cfg = get_recipe("twvlm_70b_cpt")
    assert (cfg.model.freeze_plan, cfg.model.train_vision) == ("cpt", False)
    assert cfg.model.init_from == get_recipe("twvlm_70b_align").checkpoint.save
    assert (cfg.trainer.lr, cfg.trainer.min_lr, cfg.trainer.precision) == (2e-5, 2e-6, "bf16")
    assert (cfg.data.seq_length, cfg.data.global_batch_size) == (8192, 128)
    par = cfg.parallel
    assert par.tensor_parallel == 8 and par.pipeline_parallel >= 4 and par.virtual_pipeline_parallel
    assert par.sequence_parallel and par.distributed_optimizer and par.recompute == "selective"


def test_fp8_variant_changes_precision_only():
    fp8, bf16 = get_recipe("twvlm_70b_cpt_fp8"), get_recipe("twvlm_70b_cpt")
    assert fp8.trainer.precision == "fp8"
    same = dataclasses.replace(
        fp8, name=bf16.name, trainer=dataclasses.replace(fp8.trainer, precision="bf16"),
        checkpoint=dataclasses.replace(fp8.checkpoint, save=bf16.checkpoint.save),
    )
    assert same == bf16
