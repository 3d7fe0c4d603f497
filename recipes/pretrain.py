"""Pretraining recipes: no-argument functions that return a `PretrainConfig`.

Names read `twvlm_<size>_<stage>[_variant]`. Each variant calls its base and changes a few fields,
so a number is set once and every stage downstream inherits it. Architecture numbers (layers,
heads, image tokens) are not here: they come from `nemo_twvlm.presets` through `model.preset`.

Stages (LLaVA recipe): `align` trains the projector only on caption data; `cpt` continues
pre-training projector + LM on interleaved Traditional-Chinese data, starting from the align
checkpoint.
"""
from __future__ import annotations

from nemo_twvlm.training.config import PretrainConfig


def twvlm_debug() -> PretrainConfig:
    """CPU-sized continual pre-training on the demo blend; what tests and the demo run."""
    cfg = PretrainConfig(name="twvlm_debug")
    cfg.model.preset = "debug"
    cfg.model.freeze_plan = "cpt"
    cfg.model.train_vision = True
    cfg.data.path = "runs/demo_data/blend.yaml"
    cfg.data.tokenizer = "data/tokenizer"
    cfg.data.seq_length = 256
    cfg.data.micro_batch_size = 8
    cfg.data.global_batch_size = 8
    cfg.data.packing_buffer_size = 256
    cfg.trainer.lr = 1e-3
    cfg.trainer.min_lr = 1e-4
    cfg.trainer.warmup_steps = 20
    cfg.trainer.max_steps = 300
    cfg.trainer.log_interval = 50
    cfg.trainer.precision = "fp32"
    cfg.checkpoint.save = "runs/twvlm_debug_cpt"
    return cfg


def twvlm_debug_cpt() -> PretrainConfig:
    """The debug CPT stage, initialised from the debug align checkpoint (the demo's second stage)."""
    cfg = twvlm_debug()
    cfg.name = "twvlm_debug_cpt"
    cfg.model.init_from = twvlm_debug_align().checkpoint.save
    return cfg


def twvlm_debug_align() -> PretrainConfig:
    cfg = twvlm_debug()
    cfg.name = "twvlm_debug_align"
    cfg.model.freeze_plan = "align"
    cfg.model.train_vision = False
    cfg.trainer.max_steps = 100
    cfg.checkpoint.save = "runs/twvlm_debug_align"
    return cfg


def twvlm_debug_sft() -> PretrainConfig:
    """Visual instruction tuning of the debug model from the debug CPT checkpoint (assistant turns only)."""
    cfg = twvlm_debug()
    cfg.name = "twvlm_debug_sft"
    cfg.model.freeze_plan = "sft"
    cfg.model.train_vision = False
    cfg.model.init_from = twvlm_debug_cpt().checkpoint.save
    cfg.data.path = "runs/demo_data/sft_blend.yaml"
    cfg.trainer.lr = 5e-4
    cfg.trainer.min_lr = 5e-5
    cfg.trainer.max_steps = 200
    cfg.checkpoint.save = "runs/twvlm_debug_sft"
    return cfg


def twvlm_8b_align() -> PretrainConfig:
    """Projector alignment on Llama-3-8B (LLaVA-1.5 stage 1: lr 1e-3, GBS 256, cosine to 0)."""
    cfg = PretrainConfig(name="twvlm_8b_align")
    cfg.model.preset = "8b"
    cfg.model.freeze_plan = "align"
    cfg.model.train_vision = False
    cfg.data.path = "data/align/blend.yaml"
    cfg.data.tokenizer = "meta-llama/Meta-Llama-3-8B"
    cfg.data.seq_length = 4096
    cfg.data.micro_batch_size = 4
    cfg.data.global_batch_size = 256
    cfg.data.num_workers = 4
    cfg.parallel.tensor_parallel = 2
    cfg.parallel.sequence_parallel = True
    cfg.trainer.lr = 1e-3
    cfg.trainer.min_lr = 0.0
    cfg.trainer.warmup_steps = 100
    cfg.trainer.max_steps = 2500
    cfg.trainer.precision = "bf16"
    cfg.trainer.log_interval = 10
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    cfg.checkpoint.save_interval = 500
    return cfg


def twvlm_70b_align() -> PretrainConfig:
    """Projector alignment on Llama-3-Taiwan-70B: the 8B schedule with the LM sharded 8 ways.

    The frozen 70B LM in bf16 is 140 GB, 17.5 GB per GPU at TP 8; activations at seq 4096 and
    micro-batch 1 fit beside it without pipeline parallelism.
    """
    cfg = twvlm_8b_align()
    cfg.name = "twvlm_70b_align"
    cfg.model.preset = "70b"
    cfg.data.tokenizer = "yentinglin/Llama-3-Taiwan-70B-Instruct"
    cfg.data.micro_batch_size = 1
    cfg.parallel.tensor_parallel = 8
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    return cfg


def twvlm_70b_cpt() -> PretrainConfig:
    """Continual pre-training of projector + LM from the 70B align checkpoint.

    PP 4 x VP 5 puts 4 of the 80 decoder layers in each virtual stage; the vision tower and
    projector sit on the first stage. The parallel layout is provisional until measured.
    """
    cfg = twvlm_70b_align()
    cfg.name = "twvlm_70b_cpt"
    cfg.model.freeze_plan = "cpt"
    cfg.model.init_from = cfg.checkpoint.save  # where the align base saves
    cfg.data.path = "data/cpt/blend.yaml"
    cfg.data.seq_length = 8192
    cfg.data.global_batch_size = 128
    cfg.parallel.pipeline_parallel = 4
    cfg.parallel.virtual_pipeline_parallel = 5
    cfg.parallel.distributed_optimizer = True
    cfg.parallel.recompute = "selective"
    cfg.trainer.lr = 2e-5
    cfg.trainer.min_lr = 2e-6
    cfg.trainer.warmup_steps = 200
    cfg.trainer.max_steps = 10000
    cfg.trainer.weight_decay = 0.1
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    cfg.checkpoint.save_interval = 250
    return cfg


def twvlm_70b_sft() -> PretrainConfig:
    """Visual instruction tuning of the 70B CPT model (LLaVA-1.5 stage 2: lr 2e-5, GBS 128), loss on
    assistant turns; the blend mixes Taiwan visual QA with text-only instructions, which protects the
    LM's text ability (VILA)."""
    cfg = twvlm_70b_cpt()
    cfg.name = "twvlm_70b_sft"
    cfg.model.freeze_plan = "sft"
    cfg.model.init_from = cfg.checkpoint.save  # where the CPT base saves
    cfg.data.path = "data/sft/blend.yaml"
    cfg.data.seq_length = 4096
    cfg.trainer.lr = 2e-5
    cfg.trainer.min_lr = 0.0
    cfg.trainer.warmup_steps = 100
    cfg.trainer.max_steps = 5000
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    return cfg


def twvlm_70b_cpt_fp8() -> PretrainConfig:
    """`twvlm_70b_cpt` with FP8 GEMMs (needs Transformer Engine and Hopper or newer)."""
    cfg = twvlm_70b_cpt()
    cfg.name = "twvlm_70b_cpt_fp8"
    cfg.trainer.precision = "fp8"
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    return cfg


RECIPES = {
    fn.__name__: fn
    for fn in (
        twvlm_debug,
        twvlm_debug_align,
        twvlm_debug_cpt,
        twvlm_debug_sft,
        twvlm_8b_align,
        twvlm_70b_align,
        twvlm_70b_cpt,
        twvlm_70b_sft,
        twvlm_70b_cpt_fp8,
    )
}
