"""Pretraining recipes: no-argument functions that return a `PretrainConfig`.

Names read `twvlm_<size>_<stage>[_variant]`. Each variant calls its base and changes a few fields,
so a number is set once and every stage downstream inherits it. Architecture numbers (layers,
heads, image tokens) are not here: they come from `nemo_twvlm.presets` through `model.preset`.

Stages (LLaVA recipe): `align` trains the projector only on caption data, starting from the import
of the published weights (`nemo twvlm import_hf clip=... llama=... dst=checkpoints/twvlm_70b_base`);
`cpt` continues pre-training projector + LM on interleaved Traditional-Chinese data, starting from the
align checkpoint; `sft` tunes on visual instructions from the CPT checkpoint. The 8B/70B stages leave
`data.tokenizer` unset: each takes the tokenizer (with its `<image>`) of the checkpoint it starts from.

Scale: the 70B stage recipes are laid out for 64 H100s (8 nodes); `_32gpu`, `_128gpu` and `_256gpu`
variants keep every hyperparameter (global batch included, so the schedule does not depend on the
cluster) and change only the layout, chosen with `nemo twvlm plan`: tensor parallel 8 inside a node
(NVLink), pipeline stages where memory needs them, fewer stages as data parallelism grows so that
each rank still has enough micro-batches to hide the pipeline bubble. A stage's variants share its
checkpoint directory, so the next stage starts from it whatever sizes the two ran at; resume a run at
the size it started with (the data-loader state is per data-parallel rank).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from nemo_twvlm.rundir import TOKENIZER_DIR
from nemo_twvlm.training.config import PretrainConfig

# Where `nemo twvlm import_hf clip=... llama=... dst=...` puts the published weights (README, "Start from
# the published weights"); the align stages start there.
BASE_8B = "checkpoints/twvlm_8b_base"
BASE_70B = "checkpoints/twvlm_70b_base"


@dataclasses.dataclass(frozen=True)
class Layout:
    """A model-parallel layout; data parallelism is whatever num_gpus leaves."""

    tensor_parallel: int
    pipeline_parallel: int = 1
    virtual_pipeline_parallel: Optional[int] = None
    context_parallel: int = 1


def with_layout(cfg: PretrainConfig, num_gpus: int, layout: Optional[Layout] = None) -> PretrainConfig:
    """`cfg` on `num_gpus` GPUs (the layout kept when None); names it `<name>_<num_gpus>gpu`."""
    cfg.name = f"{cfg.name}_{num_gpus}gpu"
    cfg.parallel.num_gpus = num_gpus
    if layout is not None:
        for field in dataclasses.fields(layout):
            setattr(cfg.parallel, field.name, getattr(layout, field.name))
    return cfg


def cpt_stage(align: PretrainConfig, name: str) -> PretrainConfig:
    """The CPT stage after an `align` recipe, in its layout: projector + LM on interleaved data from the
    align checkpoint; seq 8192, GBS 128, lr 2e-5 -> 2e-6, distributed optimizer, selective recompute."""
    cfg = align
    cfg.name = name
    cfg.model.freeze_plan = "cpt"
    cfg.model.init_from = cfg.checkpoint.save  # where the align stage saves
    cfg.data.path = "data/cpt/blend.yaml"
    cfg.data.seq_length = 8192
    cfg.data.micro_batch_size = 1
    cfg.data.global_batch_size = 128
    cfg.parallel.distributed_optimizer = True
    cfg.parallel.recompute = "selective"
    cfg.trainer.lr = 2e-5
    cfg.trainer.min_lr = 2e-6
    cfg.trainer.warmup_steps = 200
    cfg.trainer.max_steps = 10000
    cfg.trainer.weight_decay = 0.1
    cfg.checkpoint.save = f"checkpoints/{name}"
    cfg.checkpoint.save_interval = 250
    return cfg


def sft_stage(cpt: PretrainConfig, name: str) -> PretrainConfig:
    """Visual instruction tuning after a `cpt` recipe, in its layout (LLaVA-1.5 stage 2: lr 2e-5, GBS
    128, seq 4096), loss on assistant turns; the blend mixes Taiwan visual QA with text-only
    instructions, which protects the LM's text ability (VILA)."""
    cfg = cpt
    cfg.name = name
    cfg.model.freeze_plan = "sft"
    cfg.model.init_from = cfg.checkpoint.save  # where the CPT stage saves
    cfg.data.path = "data/sft/blend.yaml"
    cfg.data.seq_length = 4096
    cfg.trainer.lr = 2e-5
    cfg.trainer.min_lr = 0.0
    cfg.trainer.warmup_steps = 100
    cfg.trainer.max_steps = 5000
    cfg.checkpoint.save = f"checkpoints/{name}"
    return cfg


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
    # Evaluated before the first step and after the last: validation loss, text retention, and the gate
    # on it (the align checkpoint's LM is the stage's baseline).
    cfg.data.val_path = "runs/demo_data/pairs_val"
    cfg.data.retention_path = "runs/demo_data/retention"
    cfg.trainer.eval_interval = cfg.trainer.max_steps
    cfg.trainer.eval_iters = 2
    cfg.trainer.retention_gate = 0.5
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


def twvlm_debug_text_sft() -> PretrainConfig:
    """Text-only instruction tuning of the debug LM from its initialisation (the demo's starting point),
    on nemo_twvlm.data.synthetic_text_instructions through the `conversations` curation kind: the
    finding experiment's stand-in for Llama-3-Taiwan-Instruct (nemo_twvlm.launch.finding)."""
    cfg = twvlm_debug_sft()
    cfg.name = "twvlm_debug_text_sft"
    cfg.model.init_from = None
    cfg.data.path = "runs/finding/data/text_instructions/shards"
    cfg.trainer.lr = 1e-3
    cfg.trainer.min_lr = 1e-4
    cfg.trainer.max_steps = 600
    cfg.checkpoint.save = "runs/twvlm_debug_text_sft"
    return cfg


def twvlm_debug_finding_cpt() -> PretrainConfig:
    """The finding experiment's CPT, for both arms: the demo's CPT at a third of its learning rate and
    two thirds of its steps. At the demo's rate (1e-3, 300 steps) the debug LM's text instruction tuning
    is mostly overwritten (seed 1: aligned_if 0.55 vs base 0.40); a 70B CPT's rate is small beside
    what its LM learnt, and this keeps that relation at debug size (README, "The finding in miniature")."""
    cfg = twvlm_debug_cpt()
    cfg.name = "twvlm_debug_finding_cpt"
    cfg.trainer.lr, cfg.trainer.min_lr = 3e-4, 3e-5
    cfg.trainer.max_steps = cfg.trainer.eval_interval = 200
    cfg.checkpoint.save = "runs/twvlm_debug_finding_cpt"
    return cfg


def twvlm_8b_align() -> PretrainConfig:
    """Projector alignment on Llama-3-8B (LLaVA-1.5 stage 1: lr 1e-3, GBS 256, cosine to 0)."""
    cfg = PretrainConfig(name="twvlm_8b_align")
    cfg.model.preset = "8b"
    cfg.model.freeze_plan = "align"
    cfg.model.train_vision = False
    cfg.model.init_from = BASE_8B  # CLIP ViT-L/14-336 + Meta-Llama-3-8B-Instruct
    cfg.data.path = "data/align/blend.yaml"
    cfg.data.tokenizer = ""  # the import's
    cfg.data.seq_length = 4096
    cfg.data.micro_batch_size = 4
    cfg.data.global_batch_size = 256
    cfg.data.num_workers = 4
    cfg.parallel.tensor_parallel = 2
    cfg.parallel.sequence_parallel = True
    # The frozen LM still keeps activations for the backward pass into the projector.
    cfg.parallel.recompute = "selective"
    cfg.parallel.num_gpus = 8
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
    micro-batch 1 fit beside it without pipeline parallelism, so larger clusters only add data
    parallelism.
    """
    cfg = twvlm_8b_align()
    cfg.name = "twvlm_70b_align"
    cfg.model.preset = "70b"
    cfg.model.init_from = BASE_70B  # CLIP ViT-L/14-336 + Llama-3-Taiwan-70B-Instruct
    cfg.data.micro_batch_size = 1
    cfg.parallel.tensor_parallel = 8
    cfg.parallel.num_gpus = 64
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    return cfg


def twvlm_70b_cpt() -> PretrainConfig:
    """Continual pre-training of projector + LM from the 70B align checkpoint, on 64 GPUs.

    TP 8 x PP 4 x VP 5 (4 of the 80 decoder layers per virtual stage, the vision tower and projector
    on the first stage), data parallel 2: 64 micro-batches per rank per step. Planned at 50 GiB per
    GPU with selective recompute; not yet measured on a cluster.
    """
    cfg = cpt_stage(twvlm_70b_align(), "twvlm_70b_cpt")
    cfg.parallel.pipeline_parallel = 4
    cfg.parallel.virtual_pipeline_parallel = 5
    return cfg


def twvlm_70b_sft() -> PretrainConfig:
    """Visual instruction tuning of the 70B CPT model in the CPT layout."""
    return sft_stage(twvlm_70b_cpt(), "twvlm_70b_sft")


def twvlm_70b_cpt_fp8() -> PretrainConfig:
    """`twvlm_70b_cpt` with FP8 GEMMs, delayed scaling (needs Transformer Engine and Hopper or newer)."""
    cfg = twvlm_70b_cpt()
    cfg.name = "twvlm_70b_cpt_fp8"
    cfg.trainer.precision = "fp8"
    cfg.trainer.fp8_recipe = "delayed"
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"
    return cfg


def twvlm_70b_cpt_fp8_current() -> PretrainConfig:
    """`twvlm_70b_cpt_fp8` with per-tensor current scaling: each GEMM scales by its own amax (no
    history to warm up or go stale), at the cost of an extra amax reduction per tensor."""
    cfg = twvlm_70b_cpt_fp8()
    cfg.name = "twvlm_70b_cpt_fp8_current"
    cfg.trainer.fp8_recipe = "tensorwise"
    cfg.checkpoint.save = f"checkpoints/{cfg.name}"  # FP8 scaling state differs between the recipes
    return cfg


def twvlm_70b_cpt_cp2() -> PretrainConfig:
    """`twvlm_70b_cpt` in NeMo 24.07's published Llama-3-70B layout: TP 4 x PP 4 x CP 2 x VP 5 on 64 GPUs.

    Context parallelism splits each 8192-position row over 2 GPUs, halving activations, so tensor
    parallelism can drop to 4 (fewer, larger GEMMs); every packed sample is padded to a multiple of
    2 x CP positions. Needs Transformer Engine (context-parallel attention).
    """
    cfg = twvlm_70b_cpt()
    cfg.name = "twvlm_70b_cpt_cp2"
    cfg.parallel.tensor_parallel = 4
    cfg.parallel.context_parallel = 2
    return cfg


def twvlm_70b_cpt_perf() -> PretrainConfig:
    """Throughput of the 70B CPT layout on mock data (FP8): no storage, no decoding, no checkpoints.

    Four images per 8192-position row (2,304 image + 5,888 text positions), like an interleaved
    document; compare tokens/s/GPU with the published text-only Llama-3-70B numbers.
    """
    cfg = twvlm_70b_cpt_fp8()
    cfg.name = "twvlm_70b_cpt_perf"
    cfg.model.init_from = None
    cfg.data.tokenizer = f"{BASE_70B}/{TOKENIZER_DIR}"  # the import's; only its <image> id is used
    cfg.data.mock = True
    cfg.data.mock_images_per_sample = 4
    cfg.trainer.max_steps = 50
    cfg.trainer.warmup_steps = 10
    cfg.trainer.log_interval = 1
    cfg.checkpoint.save = None
    cfg.checkpoint.save_interval = None
    return cfg


def twvlm_debug_perf() -> PretrainConfig:
    """The mock-data throughput run at debug size: what tests and a laptop run."""
    cfg = twvlm_debug()
    cfg.name = "twvlm_debug_perf"
    cfg.data.mock = True
    cfg.data.mock_images_per_sample = 2
    cfg.trainer.max_steps = 20
    cfg.trainer.warmup_steps = 2
    cfg.trainer.log_interval = 1
    cfg.checkpoint.save = None
    return cfg


def twvlm_8b_cpt() -> PretrainConfig:
    """Continual pre-training of Llama-3-8B + projector on one 8-GPU node: TP 2 x DP 4, sequence
    parallel, selective recompute (planned 53 GiB per GPU), from the 8B align checkpoint."""
    return cpt_stage(twvlm_8b_align(), "twvlm_8b_cpt")


def twvlm_8b_sft() -> PretrainConfig:
    """Visual instruction tuning of the 8B CPT model on one node."""
    return sft_stage(twvlm_8b_cpt(), "twvlm_8b_sft")


# GPUs -> layout of the 70B cpt/sft stages (align keeps TP 8 and only adds data parallelism). PP 4
# is what 32 GPUs need for memory; from 128 GPUs PP 2 x VP 10 fits (53 GiB planned) and its bubble,
# (PP-1)/(VP x micro-batches per rank), stays near 1% down to the 8 micro-batches per rank at 256.
LAYOUTS_70B: dict[int, Layout] = {
    32: Layout(tensor_parallel=8, pipeline_parallel=4, virtual_pipeline_parallel=5),
    128: Layout(tensor_parallel=8, pipeline_parallel=2, virtual_pipeline_parallel=10),
    256: Layout(tensor_parallel=8, pipeline_parallel=2, virtual_pipeline_parallel=10),
}


def _scale_variants() -> list[Callable[[], PretrainConfig]]:
    variants = []
    for base in (twvlm_70b_align, twvlm_70b_cpt, twvlm_70b_sft):
        for num_gpus, layout in LAYOUTS_70B.items():
            def variant(base=base, num_gpus=num_gpus, layout=layout) -> PretrainConfig:
                return with_layout(base(), num_gpus, None if base is twvlm_70b_align else layout)

            variant.__name__ = variant.__qualname__ = f"{base.__name__}_{num_gpus}gpu"
            variant.__doc__ = f"`{base.__name__}` on {num_gpus} GPUs ({num_gpus // 8} nodes)."
            variants.append(variant)
    return variants


RECIPES = {
    fn.__name__: fn
    for fn in (
        twvlm_debug,
        twvlm_debug_align,
        twvlm_debug_cpt,
        twvlm_debug_sft,
        twvlm_debug_text_sft,
        twvlm_debug_finding_cpt,
        twvlm_8b_align,
        twvlm_70b_align,
        twvlm_70b_cpt,
        twvlm_70b_sft,
        twvlm_70b_cpt_fp8,
        twvlm_70b_cpt_fp8_current,
        twvlm_70b_cpt_cp2,
        twvlm_70b_cpt_perf,
        twvlm_debug_perf,
        twvlm_8b_cpt,
        twvlm_8b_sft,
        *_scale_variants(),
    )
}
