"""Planner arithmetic: hand-computed toys, published anchors and the numbers megatron-core allocates."""
from __future__ import annotations

import dataclasses

import pytest

from nemo_twvlm.model.flops import vit_flops_per_image
from nemo_twvlm.planner import (
    H100_MEMORY_BYTES,
    count_parameters,
    format_plan,
    make_plan,
    memory_per_gpu,
    plan_from_config,
    trainable_parameters,
)
from nemo_twvlm.presets import PRESETS
from nemo_twvlm.training.config import PretrainConfig


# --- parameters -------------------------------------------------------------------------------------
def test_70b_language_is_70_55_billion():
    c = count_parameters("70b")
    assert c["language"] == 70_553_706_496
    assert c["language"] == pytest.approx(70.55e9, abs=0.01e9)
    assert c["language_embedding"] == c["language_output"] == 128256 * 8192


def test_8b_language_is_llama3_8b():
    assert count_parameters("8b")["language"] == 8_030_261_248  # Meta-Llama-3-8B's parameter count


def test_clip_l_336_vision_matches_the_hf_tower_when_fully_built():
    c = count_parameters("70b")
    per_layer = c["vision_layers"] // PRESETS["70b"].vision.num_built_layers
    assert PRESETS["70b"].vision.num_built_layers == 23
    # The full HF CLIPVisionModel (24 layers + post-LayerNorm) has 303,507,456 parameters.
    assert c["vision"] + per_layer + 2 * 1024 == 303_507_456
    assert c["vision"] == count_parameters("8b")["vision"] == 290_909_184


def test_debug_parameters_by_hand():
    # The exact shapes megatron-core's LLaVAModel allocates for the debug preset.
    lm = (1024 * 128  # embedding
          + 2 * (128 + 128 * 256 + 128 * 128 + 128 + 704 * 128 + 128 * 352)  # norm, qkv (4+2*2 heads of 32), proj, norm, fc1, fc2
          + 128  # final norm
          + 1024 * 128)  # output layer
    vision = (64 + 17 * 64 + 64 * 3 * 16 * 16 + 2 * 64  # class token, positions, conv1, ln_pre
              + 2 * (2 * 64 + 192 * 64 + 192 + 64 * 64 + 64 + 2 * 64 + 256 * 64 + 256 + 64 * 256 + 64))
    projector = 64 * 128 + 128 + 128 * 128 + 128
    c = count_parameters(PRESETS["debug"])
    assert (c["language"], c["vision"], c["projector"]) == (lm, vision, projector) == (631_424, 150_400, 24_832)
    assert c["total"] == lm + vision + projector == 806_656


def test_tied_embeddings_drop_the_output_layer():
    p = PRESETS["debug"]
    tied = dataclasses.replace(p, language=dataclasses.replace(p.language, untie_embeddings=False))
    assert count_parameters(p)["language"] - count_parameters(tied)["language"] == 1024 * 128


def test_trainable_parameters_per_freeze_plan():
    c = count_parameters("70b")
    assert trainable_parameters("70b", "align") == c["projector"]
    assert trainable_parameters("70b", "cpt") == trainable_parameters("70b", "sft") == c["projector"] + c["language"]
    assert trainable_parameters("70b", "cpt", train_vision=True) == c["total"]
    with pytest.raises(ValueError, match="freeze_plan"):
        trainable_parameters("70b", "lora")


# --- memory -----------------------------------------------------------------------------------------
MEM70 = dict(micro_batch_size=1, seq_length=8192, precision="bf16", freeze_plan="cpt")


def test_debug_memory_by_hand():
    c = count_parameters("debug")
    m = memory_per_gpu("debug", tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=256, precision="bf16",
                       distributed_optimizer=False, recompute="full", freeze_plan="cpt")
    trainable = c["language"] + c["projector"]
    assert m["stage"] == "first" and list(m["stages"]) == ["first"]
    assert m["weights"] == 2 * c["total"]
    assert m["gradients"] == 4 * trainable
    assert m["optimizer"] == 12 * trainable
    layers = 2 * (2 * 256 * 128)  # full recompute: the input of each of 2 layers, bf16
    logits = 4 * 256 * 1024
    projector = 2 * 16 * (64 + 2 * 128)
    assert m["activations"] == layers + logits + projector
    assert m["total"] == m["weights"] + m["gradients"] + m["optimizer"] + m["activations"]


def test_fp32_and_align_model_states():
    c = count_parameters("debug")
    m = memory_per_gpu("debug", tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=256, precision="fp32",
                       distributed_optimizer=False, freeze_plan="align")
    assert m["weights"] == 4 * c["total"]
    assert m["gradients"] == 4 * c["projector"]
    assert m["optimizer"] == 8 * c["projector"]  # fp32: two moments, no master copy


def test_more_tensor_parallel_means_less_memory_per_gpu():
    totals = [memory_per_gpu("70b", tp=tp, pp=8, dp=1, recompute="selective", **MEM70)["total"] for tp in (1, 2, 4, 8)]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == 4


def test_more_pipeline_parallel_means_less_model_state_per_gpu():
    a = memory_per_gpu("70b", tp=8, pp=2, dp=1, recompute="selective", **MEM70)
    b = memory_per_gpu("70b", tp=8, pp=8, dp=1, recompute="selective", **MEM70)
    assert b["weights"] < a["weights"] and b["optimizer"] < a["optimizer"]


def test_recompute_lowers_activations():
    acts = [memory_per_gpu("70b", tp=8, pp=4, dp=2, recompute=r, **MEM70)["activations"]
            for r in (None, "selective", "full")]
    assert acts[0] > acts[1] > acts[2]


def test_distributed_optimizer_shards_adam_over_dp_and_cp():
    base = dict(tp=8, pp=4, recompute="selective", **MEM70)
    replicated = memory_per_gpu("70b", dp=4, distributed_optimizer=False, **base)
    sharded = memory_per_gpu("70b", dp=4, distributed_optimizer=True, **base)
    assert sharded["optimizer"] == pytest.approx(replicated["optimizer"] / 4, rel=1e-6)
    with_cp = memory_per_gpu("70b", dp=2, cp=2, distributed_optimizer=True, **base)
    assert with_cp["optimizer"] == pytest.approx(replicated["optimizer"] / 4, rel=1e-6)
    assert with_cp["activations"] < sharded["activations"]  # half the sequence per GPU


def test_interleaving_costs_first_stage_activation_memory():
    plain = memory_per_gpu("70b", tp=8, pp=4, dp=2, recompute="selective", **MEM70)
    inter = memory_per_gpu("70b", tp=8, pp=4, dp=2, vp=5, recompute="selective", **MEM70)
    lm_plain = plain["stages"]["first"]["activations"]
    lm_inter = inter["stages"]["first"]["activations"]
    assert lm_inter > lm_plain
    assert lm_inter / lm_plain == pytest.approx(1 + 3 / 20, rel=0.01)  # Korthikanti: 1 + (p-1)/(p v)


def test_frozen_language_has_no_lm_gradients():
    align = memory_per_gpu("70b", tp=8, pp=4, dp=2, recompute="selective", **{**MEM70, "freeze_plan": "align"})
    assert align["stages"]["last"]["gradients"] == 0 and align["stages"]["last"]["optimizer"] == 0


def test_70b_cpt_fits_on_64_h100s_with_tp8_pp4_vp5_selective_recompute():
    m = memory_per_gpu("70b", tp=8, pp=4, vp=5, dp=2, recompute="selective", num_microbatches=64, **MEM70)
    assert m["total"] < 0.8 * H100_MEMORY_BYTES  # leaves > 16 GiB for CUDA context, buffers, fragmentation
    # ... and does not without any recompute (the 5as/h attention-score term alone is ~24 GiB per layer-set)
    m_none = memory_per_gpu("70b", tp=8, pp=4, vp=5, dp=2, recompute=None, **MEM70)
    assert m_none["total"] > H100_MEMORY_BYTES


def test_memory_rejects_unknown_names():
    with pytest.raises(ValueError, match="precision"):
        memory_per_gpu("debug", tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=256, precision="fp16")
    with pytest.raises(ValueError, match="recompute"):
        memory_per_gpu("debug", tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=256, recompute="some")


# --- plan -------------------------------------------------------------------------------------------
def test_plan_70b_numbers_and_table():
    plan = make_plan("70b", num_gpus=64, tp=8, pp=4, vp=5, micro_batch_size=1, global_batch_size=128,
                     seq_length=8192, recompute="selective", freeze_plan="cpt")
    assert plan.dp == 2 and plan.fits
    assert plan.tokens_per_step == 128 * 8192
    lm_tokens = 50_000_000 * 576 + 3_000_000_000
    assert plan.total_flops == pytest.approx(
        lm_tokens * plan.lm_flops_per_token
        + 50_000_000 * (plan.vit_flops_per_image + plan.projector_flops_per_image))
    assert plan.vit_flops_per_image == vit_flops_per_image(PRESETS["70b"].vision, backward=False)  # frozen ViT
    assert plan.days == pytest.approx(plan.total_flops / (64 * 989e12 * 0.4) / 86400)
    assert 5 < plan.days < 8  # ~1.4e22 FLOPs on 64 H100s at 40 % MFU
    table = format_plan(plan)
    for needle in ("70.55 B", "449.22 GFLOP", "TP8 PP4 VP5 CP1 DP2", "fits", "1,048,576", "days"):
        assert needle in table, needle


def test_plan_flags_configs_that_do_not_fit():
    plan = make_plan("70b", num_gpus=8, tp=8, micro_batch_size=1, global_batch_size=8, seq_length=8192)
    assert not plan.fits and "DOES NOT FIT" in format_plan(plan)


def test_plan_from_default_config_and_more_gpus_is_faster():
    cfg = PretrainConfig()
    small = plan_from_config(cfg, num_gpus=1, mfu=0.5)
    cfg.data.global_batch_size = 8
    big = plan_from_config(cfg, num_gpus=2, mfu=0.5)
    assert small.preset == "debug" and small.precision == "fp32" and small.trainable == count_parameters("debug")["projector"]
    assert big.days == pytest.approx(small.days / 2)
    assert "debug" in format_plan(small)
    with pytest.raises(ValueError, match="divisible"):
        plan_from_config(cfg, num_gpus=3)


def test_benchmarks_lists_the_current_prediction_for_every_70b_recipe():
    """BENCHMARKS.md section 6 is the output of scripts/plan_recipes.py: every row, as the planner says now."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    table = subprocess.run([sys.executable, str(repo / "scripts" / "plan_recipes.py")], capture_output=True,
                           text=True, check=True, timeout=120).stdout.strip().splitlines()
    names = {row.split("`")[1] for row in table[2:]}
    from nemo_twvlm.launch.recipes import find_recipes

    assert names == {n for n in find_recipes("pretrain") if n.startswith("twvlm_70b")}
    benchmarks = (repo / "BENCHMARKS.md").read_text()
    missing = [row for row in table if row not in benchmarks]
    assert not missing, f"BENCHMARKS.md section 6 is stale; rerun scripts/plan_recipes.py: {missing[:3]}"


def test_step_time_and_bubble_follow_the_layout():
    from nemo_twvlm.launch.recipes import get_recipe

    plan = plan_from_config(get_recipe("twvlm_70b_cpt"), num_gpus=64, mfu=0.4)
    assert plan.microbatches_per_rank == 64  # GBS 128 / (MBS 1 x DP 2)
    assert plan.pipeline_bubble == pytest.approx(3 / (5 * 64))
    flops_per_step = plan.total_flops / plan.steps
    assert plan.step_seconds == pytest.approx(flops_per_step / (64 * 989e12 * 0.4))
    assert plan.tokens_per_second_per_gpu * plan.step_seconds * 64 == pytest.approx(128 * 8192)
    # Twice the GPUs, same global batch: half the step time, same tokens/s/GPU.
    double = plan_from_config(get_recipe("twvlm_70b_cpt_128gpu"), num_gpus=128, mfu=0.4)
    assert double.step_seconds == pytest.approx(plan.step_seconds / 2)
    assert double.pipeline_bubble == pytest.approx(1 / (10 * 16))
