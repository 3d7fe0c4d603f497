"""Back-of-the-envelope planning for a run: parameters, FLOPs, memory per GPU and wall-clock days.

Pure arithmetic on the presets in `nemo_twvlm.presets`: nothing is allocated and neither torch nor
megatron is imported, so `nemo twvlm plan` answers instantly on a laptop.

FLOPs (and their two attention conventions) are `nemo_twvlm.model.flops`'s, shared with the training log.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from nemo_twvlm.presets import LanguagePreset, ModelPreset, VisionPreset, get_preset
from nemo_twvlm.model.flops import (
    CAUSAL_HALVED, language_flops_per_token, projector_flops_per_image, training_flops, vit_flops_per_image,
)
from nemo_twvlm.model.freeze import FREEZE_PLANS
from nemo_twvlm.training.config import PRECISIONS, RECOMPUTE_MODES

if TYPE_CHECKING:  # pragma: no cover
    from nemo_twvlm.training.config import PretrainConfig

# --- Hardware and defaults ---------------------------------------------------------------------------
H100_BF16_PEAK_FLOPS = 989e12   # H100 SXM dense BF16
H100_FP8_PEAK_FLOPS = 1979e12   # H100 SXM dense FP8
H100_MEMORY_BYTES = 80 * 2**30  # "80 GB" H100 (~79.6 GiB usable after the CUDA context)
DEFAULT_IMAGES = 50_000_000        # the seed's data budget: 50M image-text pairs ...
DEFAULT_TEXT_TOKENS = 3_000_000_000  # ... plus 3B text tokens
DEFAULT_MFU = 0.4


# =====================================================================================================
# Parameters
# =====================================================================================================
def language_layer_parameters(lm: LanguagePreset) -> int:
    """One Llama decoder layer as megatron-core builds it (no biases)."""
    h = lm.hidden_size
    qkv = h * (lm.num_attention_heads + 2 * lm.num_query_groups) * lm.kv_channels
    proj = lm.num_attention_heads * lm.kv_channels * h
    fc1 = h * 2 * lm.ffn_hidden_size  # gate + up, fused
    fc2 = lm.ffn_hidden_size * h
    norms = 2 * h  # input RMSNorm + pre-MLP RMSNorm (weights only)
    return qkv + proj + fc1 + fc2 + norms


def vision_layer_parameters(v: VisionPreset) -> int:
    """One CLIP ViT layer as megatron-core builds it (LayerNorms and linears all with biases)."""
    h, f = v.hidden_size, v.ffn_hidden_size
    norms = 2 * (2 * h)
    qkv = 3 * h * h + 3 * h
    proj = h * h + h
    fc1 = h * f + f
    fc2 = f * h + h
    return norms + qkv + proj + fc1 + fc2


def count_parameters(preset: Union[ModelPreset, str]) -> dict[str, int]:
    """Parameter counts of what megatron-core's `LLaVAModel` allocates for a preset (TP-independent).

    Keys: ``language``, ``vision``, ``projector``, ``total`` and the breakdown
    ``language_embedding``, ``language_output`` (0 when tied), ``language_layers``, ``language_final_norm``,
    ``vision_embeddings`` (class token, position embeddings, patch conv, ln_pre), ``vision_layers``.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    lm, v = p.language, p.vision
    if p.projector_type != "mlp2x_gelu":
        raise ValueError(f"projector_type={p.projector_type!r}: only 'mlp2x_gelu' is counted")

    embedding = lm.vocab_size * lm.hidden_size
    output = lm.vocab_size * lm.hidden_size if lm.untie_embeddings else 0
    layers = lm.num_layers * language_layer_parameters(lm)
    final_norm = lm.hidden_size
    language = embedding + layers + final_norm + output

    vh = v.hidden_size
    vision_embeddings = (
        vh  # class token (1 x 1 x h)
        + (v.num_image_tokens + 1) * vh  # position embeddings
        + vh * 3 * v.patch_size**2  # conv1, no bias
        + 2 * vh  # ln_pre weight + bias
    )
    vision_layers = v.num_built_layers * vision_layer_parameters(v)
    vision = vision_embeddings + vision_layers  # no ln_post for "clip"

    lh = lm.hidden_size
    projector = (vh * lh + lh) + (lh * lh + lh)

    return {
        "language": language,
        "vision": vision,
        "projector": projector,
        "total": language + vision + projector,
        "language_embedding": embedding,
        "language_output": output,
        "language_layers": layers,
        "language_final_norm": final_norm,
        "vision_embeddings": vision_embeddings,
        "vision_layers": vision_layers,
    }


def _check_freeze_plan(freeze_plan: str) -> None:
    if freeze_plan not in FREEZE_PLANS:
        raise ValueError(f"model.freeze_plan={freeze_plan!r}; expected one of {list(FREEZE_PLANS)}")


def trainable_parameters(preset: Union[ModelPreset, str], freeze_plan: str, train_vision: bool = False) -> int:
    """Trainable parameters of a freeze plan.

    "align": projector; "cpt" and "sft": projector + language model. ``train_vision`` adds the ViT
    (to any plan: it is an independent switch in `ModelConfig`).
    """
    _check_freeze_plan(freeze_plan)
    c = count_parameters(preset)
    n = c["projector"]
    if freeze_plan in ("cpt", "sft"):
        n += c["language"]
    if train_vision:
        n += c["vision"]
    return n


# =====================================================================================================
# Memory
# =====================================================================================================
def _activation_bytes_per_layer(
    s: int, s_full: int, b: int, h: int, a: int, tp: int, sequence_parallel: bool, recompute: Optional[str]
) -> float:
    """Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models"), bytes
    stored per transformer layer and microbatch with 16-bit activations.

    ``s`` is the local sequence (seq / cp); ``s_full`` the sequence a query attends over (the score
    term is a s_local s_full b). With sequence parallelism everything is divided by tp; without it only
    the tensor-parallel regions are (10 + 24/tp).
    """
    if recompute == "full":
        return 2 * s * b * h / (tp if sequence_parallel else 1)
    linear = 34 * s * b * h / tp if sequence_parallel else s * b * h * (10 + 24 / tp)
    if recompute == "selective":
        return linear
    return linear + 5 * a * s * s_full * b / tp


def _in_flight_layers(num_layers: int, pp: int, vp: int, rank: int, num_microbatches: Optional[int]) -> float:
    """Layers' worth of microbatch activations pipeline rank ``rank`` holds at its peak (1F1B).

    Non-interleaved: pp - rank microbatches of L/pp layers (the first stage holds L layers' worth).
    Interleaved (vp chunks): 2 (pp - rank - 1) + (vp - 1) pp + 1 chunk-microbatches of L/(pp vp) layers,
    i.e. L (1 + (pp - 1)/(pp vp)) on the first stage, as in Korthikanti et al. section 4.2.3.
    """
    if vp > 1:
        chunks = 2 * (pp - rank - 1) + (vp - 1) * pp + 1
        if num_microbatches is not None:
            chunks = min(chunks, num_microbatches * vp)
        return chunks * num_layers / (pp * vp)
    mbs_in_flight = pp - rank
    if num_microbatches is not None:
        mbs_in_flight = min(mbs_in_flight, num_microbatches)
    return mbs_in_flight * num_layers / pp


def memory_per_gpu(
    preset: Union[ModelPreset, str],
    *,
    tp: int,
    pp: int,
    dp: int,
    cp: int = 1,
    vp: Optional[int] = None,
    micro_batch_size: int,
    seq_length: int,
    precision: str = "bf16",
    distributed_optimizer: bool = True,
    recompute: Optional[str] = None,
    freeze_plan: str = "cpt",
    train_vision: bool = False,
    sequence_parallel: bool = True,
    num_microbatches: Optional[int] = None,
    images_per_sample: int = 1,
) -> dict:
    """Approximate peak memory per GPU in bytes on the worst pipeline stage (first or last).

    Returns ``weights``, ``gradients``, ``optimizer``, ``activations``, ``total`` (ints, bytes) for the
    worst stage, its name in ``stage``, and both stages in ``stages``.

    Model states
      * weights: 2 B/param (bf16 and fp8 keep bf16 weights; fp8 transposes are ignored), 4 B for fp32.
        The first stage holds the ViT, projector, embedding and its L/pp layers; the last stage its
        L/pp layers, final norm and output layer. Everything is divided by tp (norm weights are in fact
        replicated: negligible).
      * gradients: 4 B per *trainable* param (fp32 main-grad buffer); frozen params get none.
      * optimizer: Adam, 12 B per trainable param for bf16/fp8 (fp32 master copy + 2 moments), 8 B for
        fp32; with the distributed optimizer divided by dp * cp (megatron shards over the
        data-parallel-with-context-parallel group).
    Activations (16-bit)
      * language layers: Korthikanti et al. s b h (34 + 5 a s / h) bytes per layer and microbatch,
        / tp with sequence parallelism; selective recompute drops the 5 a s / h (score) term, which is
        also what flash attention stores; full recompute keeps 2 s b h (the layer input). The
        sequence is seq_length / cp per GPU. The formula is for a GPT with dropout and a 4h GeLU MLP;
        Llama (no dropout, GQA, SwiGLU 3.5h) stores about the same, so read it as a conservative estimate.
      * pipeline: with 1F1B the first stage holds pp microbatches in flight (L layers' worth), times
        1 + (pp - 1)/(pp vp) when interleaved; fewer if there are fewer microbatches per step.
      * first stage: projector activations (and the ViT's when it trains; a frozen ViT stores none);
        last stage: fp32 logits for the loss, 4 s b vocab / tp.
    Not counted: CUDA context and NCCL buffers (~1-3 GB), allocator fragmentation, communication
    buckets, pipeline send/receive buffers. Keep a margin.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    _check_memory_arguments(freeze_plan, precision, recompute, tp=tp, pp=pp, dp=dp, cp=cp,
                            micro_batch_size=micro_batch_size)
    params = _stage_parameters(p, pp, train_lm=freeze_plan in ("cpt", "sft"), train_vision=train_vision)
    activations = _stage_activations(
        p, tp=tp, pp=pp, vp=vp or 1, cp=cp, micro_batch_size=micro_batch_size, seq_length=seq_length,
        sequence_parallel=sequence_parallel and tp > 1, recompute=recompute, train_vision=train_vision,
        num_microbatches=num_microbatches, images_per_sample=images_per_sample)
    weight_bytes = 4 if precision == "fp32" else 2
    optim_bytes = 8 if precision == "fp32" else 12
    optim_shards = dp * cp if distributed_optimizer else 1
    stages = {}
    for name, (all_params, train_params) in params.items():
        stage = {
            "weights": int(weight_bytes * all_params / tp),
            "gradients": int(4 * train_params / tp),
            "optimizer": int(optim_bytes * train_params / tp / optim_shards),
            "activations": int(activations[name]),
        }
        stages[name] = {**stage, "total": sum(stage.values())}
    worst = max(stages, key=lambda k: stages[k]["total"])
    return {**stages[worst], "stage": worst, "stages": stages}


def _check_memory_arguments(freeze_plan: str, precision: str, recompute: Optional[str], **sizes: int) -> None:
    _check_freeze_plan(freeze_plan)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute={recompute!r}; expected one of {RECOMPUTE_MODES}")
    for name, val in sizes.items():
        if val < 1:
            raise ValueError(f"{name}={val}; expected >= 1")


def _stage_parameters(p: ModelPreset, pp: int, *, train_lm: bool, train_vision: bool) -> dict[str, tuple[int, int]]:
    """(all, trainable) parameters of the first and, with pp > 1, the last pipeline stage, before TP
    sharding; with pp == 1 the first stage is the whole model."""
    c = count_parameters(p)
    stage_layers = math.ceil(p.language.num_layers / pp) * language_layer_parameters(p.language)
    first_all = c["language_embedding"] + stage_layers + c["vision"] + c["projector"]
    first_train = c["projector"] + (c["vision"] if train_vision else 0)
    if train_lm:
        first_train += c["language_embedding"] + stage_layers
    last_all = stage_layers + c["language_final_norm"] + c["language_output"]
    last_train = last_all if train_lm else 0
    if pp > 1:
        return {"first": (first_all, first_train), "last": (last_all, last_train)}
    first_all += last_all - stage_layers
    first_train += (last_train - stage_layers) if train_lm else 0
    return {"first": (first_all, first_train)}


def _stage_activations(
    p: ModelPreset, *, tp: int, pp: int, vp: int, cp: int, micro_batch_size: int, seq_length: int,
    sequence_parallel: bool, recompute: Optional[str], train_vision: bool, num_microbatches: Optional[int],
    images_per_sample: int,
) -> dict[str, float]:
    """Peak activation bytes of the first and, with pp > 1, the last pipeline stage: the LM layers in
    flight, plus the projector (and a training ViT) per in-flight microbatch on the first, fp32 logits on
    the last."""
    lm, v = p.language, p.vision
    s_local = math.ceil(seq_length / cp)
    b = micro_batch_size
    per_layer = _activation_bytes_per_layer(
        s_local, seq_length, b, lm.hidden_size, lm.num_attention_heads, tp, sequence_parallel, recompute)
    logits = 4 * s_local * b * lm.vocab_size / tp

    # projector: input, fc1 out, GELU out
    n_img = p.num_image_tokens * b * images_per_sample
    projector_act = 2 * n_img * (v.hidden_size + 2 * lm.hidden_size) / tp
    vit_act = 0.0
    if train_vision:
        n_vit = p.num_image_tokens + 1
        vit_act = v.num_built_layers * _activation_bytes_per_layer(
            n_vit, n_vit, b * images_per_sample, v.hidden_size, v.num_attention_heads, tp, False, recompute)
    first_mbs_in_flight = pp if num_microbatches is None else min(pp, num_microbatches)

    def stage(rank: int) -> float:
        acts = per_layer * _in_flight_layers(lm.num_layers, pp, vp, rank, num_microbatches)
        if rank == 0:
            acts += (projector_act + vit_act) * first_mbs_in_flight
        if rank == pp - 1:
            acts += logits
        return acts

    return {"first": stage(0), "last": stage(pp - 1)} if pp > 1 else {"first": stage(0)}


# =====================================================================================================
# Plan: everything above for one run configuration, and a printable table
# =====================================================================================================
@dataclass(frozen=True)
class Plan:
    preset: str
    freeze_plan: str
    train_vision: bool
    num_gpus: int
    tp: int
    pp: int
    vp: Optional[int]
    cp: int
    dp: int
    micro_batch_size: int
    global_batch_size: int
    seq_length: int
    precision: str
    recompute: Optional[str]
    distributed_optimizer: bool
    params: dict
    trainable: int
    lm_flops_per_token: float
    vit_flops_per_image: float
    projector_flops_per_image: float
    memory: dict
    gpu_memory_bytes: int
    tokens_per_step: int
    images: int
    image_tokens: int
    text_tokens: int
    total_flops: float
    mfu: float
    peak_flops: float
    days: float

    @property
    def memory_margin_bytes(self) -> int:
        return self.gpu_memory_bytes - self.memory["total"]

    @property
    def fits(self) -> bool:
        return self.memory_margin_bytes > 0

    @property
    def steps(self) -> int:
        lm_tokens = self.images * self.image_tokens + self.text_tokens
        return math.ceil(lm_tokens / self.tokens_per_step)

    @property
    def microbatches_per_rank(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.dp)

    @property
    def pipeline_bubble(self) -> float:
        """Idle share of a step relative to its compute: (pp - 1) / (vp x micro-batches per rank) for the
        (interleaved) 1F1B schedule (Narayanan et al. 2021)."""
        return (self.pp - 1) / ((self.vp or 1) * self.microbatches_per_rank)

    @property
    def step_seconds(self) -> float:
        """One step's model FLOPs (this data mix) at `mfu` of the peak; the bubble is part of what MFU loses."""
        return self.total_flops / self.steps / (self.num_gpus * self.peak_flops * self.mfu)

    @property
    def tokens_per_second_per_gpu(self) -> float:
        return self.tokens_per_step / self.step_seconds / self.num_gpus


def make_plan(
    preset: Union[ModelPreset, str],
    *,
    num_gpus: int,
    tp: int = 1,
    pp: int = 1,
    vp: Optional[int] = None,
    cp: int = 1,
    micro_batch_size: int = 1,
    global_batch_size: int = 1,
    seq_length: int = 4096,
    precision: str = "bf16",
    distributed_optimizer: bool = True,
    recompute: Optional[str] = None,
    sequence_parallel: bool = True,
    freeze_plan: str = "cpt",
    train_vision: bool = False,
    images: int = DEFAULT_IMAGES,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    mfu: float = DEFAULT_MFU,
    peak_flops: float = H100_BF16_PEAK_FLOPS,
    gpu_memory_bytes: int = H100_MEMORY_BYTES,
) -> Plan:
    """A `Plan` for one run.

    Compute budget: every image puts `num_image_tokens` tokens through the LM, and ``text_tokens``
    counts all text (captions included). The LM is always counted at 3 x forward (even for "align":
    gradients still flow back through it to the projector), the ViT at 3 x forward only when it
    trains, else 1 x. Days = total FLOPs / (num_gpus x peak_flops x mfu); MFU is relative to
    ``peak_flops`` (default H100 dense BF16, as in the published tables, also for fp8 runs).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    model_parallel = tp * pp * cp
    if num_gpus % model_parallel:
        raise ValueError(f"num_gpus={num_gpus} is not divisible by tp*pp*cp={model_parallel}")
    dp = num_gpus // model_parallel
    if global_batch_size % (micro_batch_size * dp):
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by micro_batch_size*dp={micro_batch_size * dp}")
    num_microbatches = global_batch_size // (micro_batch_size * dp)

    params = count_parameters(p)
    lm_fpt = language_flops_per_token(p, seq_length, causal=CAUSAL_HALVED)
    vit_fpi = vit_flops_per_image(p.vision, backward=train_vision)
    proj_fpi = projector_flops_per_image(p)
    total_flops = training_flops(p, images=images, text_tokens=text_tokens, seq_length=seq_length,
                                 train_vision=train_vision)
    memory = memory_per_gpu(
        p, tp=tp, pp=pp, dp=dp, cp=cp, vp=vp, micro_batch_size=micro_batch_size, seq_length=seq_length,
        precision=precision, distributed_optimizer=distributed_optimizer, recompute=recompute,
        freeze_plan=freeze_plan, train_vision=train_vision, sequence_parallel=sequence_parallel,
        num_microbatches=num_microbatches,
    )
    days = total_flops / (num_gpus * peak_flops * mfu) / 86400
    return Plan(
        preset=p.name, freeze_plan=freeze_plan, train_vision=train_vision, num_gpus=num_gpus,
        tp=tp, pp=pp, vp=vp, cp=cp, dp=dp, micro_batch_size=micro_batch_size,
        global_batch_size=global_batch_size, seq_length=seq_length, precision=precision,
        recompute=recompute, distributed_optimizer=distributed_optimizer, params=params,
        trainable=trainable_parameters(p, freeze_plan, train_vision), lm_flops_per_token=lm_fpt,
        vit_flops_per_image=vit_fpi, projector_flops_per_image=proj_fpi, memory=memory,
        gpu_memory_bytes=gpu_memory_bytes, tokens_per_step=global_batch_size * seq_length,
        images=images, image_tokens=p.num_image_tokens, text_tokens=text_tokens, total_flops=total_flops, mfu=mfu,
        peak_flops=peak_flops, days=days,
    )


def plan_from_config(cfg: "PretrainConfig", *, num_gpus: int, **kwargs) -> Plan:
    """`make_plan` for a `PretrainConfig` (data budget, MFU, peak and GPU memory via ``kwargs``)."""
    par = cfg.parallel
    return make_plan(
        cfg.model.preset, num_gpus=num_gpus, tp=par.tensor_parallel, pp=par.pipeline_parallel,
        vp=par.virtual_pipeline_parallel, cp=par.context_parallel, micro_batch_size=cfg.data.micro_batch_size,
        global_batch_size=cfg.data.global_batch_size, seq_length=cfg.data.seq_length,
        precision=cfg.trainer.precision, distributed_optimizer=par.distributed_optimizer,
        recompute=par.recompute, sequence_parallel=par.sequence_parallel,
        freeze_plan=cfg.model.freeze_plan, train_vision=cfg.model.train_vision, **kwargs,
    )


def _human(n: float, unit: str = "") -> str:
    """Counts with B for billions (params, tokens); FLOPs with SI prefixes (G, T, P)."""
    steps = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if unit else (
        (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))
    for div, suffix in steps:
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}".rstrip()
    return f"{n:.0f} {unit}".rstrip()


def _bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


def format_plan(plan: Plan) -> str:
    """A plain-text table of a `Plan` (print it directly, or inside a rich Panel)."""
    m = plan.memory
    par = f"TP{plan.tp} PP{plan.pp}" + (f" VP{plan.vp}" if plan.vp else "") + f" CP{plan.cp} DP{plan.dp}"
    margin = plan.memory_margin_bytes
    verdict = "fits" if margin > 0.1 * plan.gpu_memory_bytes else ("TIGHT" if margin > 0 else "DOES NOT FIT")
    rows: list[tuple[str, str]] = [
        ("preset", f"{plan.preset}   freeze plan {plan.freeze_plan}"
                   + ("  + vision" if plan.train_vision else "")),
        ("parallelism", f"{par} on {plan.num_gpus} GPU{'s' if plan.num_gpus != 1 else ''}; precision {plan.precision}, "
                        f"recompute {plan.recompute or 'none'}, "
                        f"{'distributed' if plan.distributed_optimizer else 'replicated'} optimizer"),
        ("params total", f"{_human(plan.params['total'])}  (language {_human(plan.params['language'])}, "
                         f"vision {_human(plan.params['vision'])}, projector {_human(plan.params['projector'])})"),
        ("params trainable", f"{_human(plan.trainable)}  ({100 * plan.trainable / plan.params['total']:.1f} %)"),
        ("LM FLOPs/token", f"{_human(plan.lm_flops_per_token, 'FLOP')}  (training, causal-halved, "
                           f"seq {plan.seq_length})"),
        ("ViT FLOPs/image", f"{_human(plan.vit_flops_per_image, 'FLOP')}"
                            + ("" if plan.train_vision else "  (forward only, frozen)")),
        ("projector FLOPs/image", _human(plan.projector_flops_per_image, "FLOP")),
        (f"memory/GPU ({m['stage']} stage)",
         f"{_bytes(m['total'])} = weights {_bytes(m['weights'])} + grads {_bytes(m['gradients'])} + "
         f"optimizer {_bytes(m['optimizer'])} + activations {_bytes(m['activations'])}"),
        ("margin vs GPU", f"{_bytes(margin)} of {_bytes(plan.gpu_memory_bytes)}: {verdict}"),
        ("tokens/step", f"{plan.tokens_per_step:,}  (GBS {plan.global_batch_size} x seq {plan.seq_length}; "
                        f"MBS {plan.micro_batch_size}; {plan.microbatches_per_rank} micro-batches per rank)"),
        ("step time", f"{plan.step_seconds:.1f} s at MFU {plan.mfu:.0%} = {plan.tokens_per_second_per_gpu:,.0f} "
                      f"tokens/s/GPU; pipeline bubble {plan.pipeline_bubble:.1%}"),
        ("data budget", f"{_human(plan.images)} images + {_human(plan.text_tokens)} text tokens "
                        f"= {plan.steps:,} steps"),
        ("total compute", f"{plan.total_flops:.3g} FLOP"),
        ("estimated time", (f"{plan.days:.1f} days" if plan.days >= 1 else f"{plan.days * 24:.2g} hours")
                           + f" on {plan.num_gpus} GPU{'s' if plan.num_gpus != 1 else ''} at MFU {plan.mfu:.0%} "
                           f"of {plan.peak_flops / 1e12:.0f} TFLOP/s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def plan_table(configs: dict[str, "PretrainConfig"], *, mfu: float = DEFAULT_MFU) -> str:
    """A Markdown table of each named config's plan at its `parallel.num_gpus` (BENCHMARKS.md)."""
    rows = ["| recipe | GPUs | layout | memory/GPU (worst stage) | margin of 80 GiB | bubble | step @ MFU "
            f"{mfu:.0%} | tokens/s/GPU | days for 50M images + 3B tokens |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, cfg in configs.items():
        plan = plan_from_config(cfg, num_gpus=cfg.parallel.num_gpus, mfu=mfu)
        layout = (f"TP{plan.tp} PP{plan.pp}" + (f" VP{plan.vp}" if plan.vp else "")
                  + (f" CP{plan.cp}" if plan.cp > 1 else "") + f" DP{plan.dp}")
        rows.append(
            f"| `{name}` | {plan.num_gpus} | {layout} | {_bytes(plan.memory['total'])} ({plan.memory['stage']}) | "
            f"{_bytes(plan.memory_margin_bytes)} | {plan.pipeline_bubble:.1%} | {plan.step_seconds:.1f} s | "
            f"{plan.tokens_per_second_per_gpu:,.0f} | {plan.days:.1f} |")
    return "\n".join(rows)
