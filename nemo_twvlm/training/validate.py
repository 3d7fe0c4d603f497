"""Pre-launch checks of a `PretrainConfig`: fail in a second on the login node, not after the job queued.

`validate(cfg, world_size=...)` raises one `ConfigError` listing every problem found, each naming the
field path, its value and what is expected; `paths=True` (the entry points, where the run starts on this
machine) also checks that the files the run reads exist. It imports neither torch nor megatron.
"""
from __future__ import annotations

from numbers import Real
from pathlib import Path
from typing import Callable, Optional

from nemo_twvlm.compat import te_available as transformer_engine_available
from nemo_twvlm import rundir
from nemo_twvlm.model.freeze import FREEZE_PLANS
from nemo_twvlm.presets import PRESETS, ModelPreset, get_preset
from nemo_twvlm.training.config import (
    EXIT_SIGNALS, FP8_RECIPES, LR_DECAY_STYLES, PRECISIONS, RECOMPUTE_MODES, RETENTION_GATE_ACTIONS,
    RETENTION_GATE_METRICS, PretrainConfig,
)


class ConfigError(ValueError):
    """An invalid training configuration. ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        if len(self.errors) == 1:
            msg = self.errors[0]
        else:
            msg = f"{len(self.errors)} configuration errors:\n" + "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(msg)


Err = Callable[[str, object, str], None]


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value == value  # NaN is no number


def validate(cfg: PretrainConfig, *, world_size: int = 1, te_available: Optional[bool] = None,
             paths: bool = False) -> None:
    """Raise `ConfigError` if ``cfg`` cannot run on ``world_size`` ranks; return None if it can.

    ``te_available`` None detects Transformer Engine (only needed for ``trainer.precision='fp8'``).
    Sequence parallelism with tensor_parallel=1 is allowed (it is a no-op). ``paths`` also checks that
    data.path, data.val_path and data.tokenizer exist here (a tokenizer may be a hub id).
    """
    errors: list[str] = []

    def err(field: str, value, expected: str) -> None:
        errors.append(f"{field}={value!r}: {expected}")

    preset = _check_names(cfg, err)
    _check_optimizer(cfg, err)
    if _check_sizes(cfg, world_size, err):
        _check_layout(cfg, world_size, err)
        if preset is not None:
            _check_model_fit(cfg, preset, err)
    _check_transformer_engine(cfg, te_available, err)
    _check_monitoring(cfg, err)
    if paths:
        _check_paths(cfg, err)
    if errors:
        raise ConfigError(errors)


def _check_names(cfg: PretrainConfig, err: Err) -> ModelPreset | None:
    """Fields that name one of a fixed set; returns the preset, or None if it has no such name."""
    m, tr, par = cfg.model, cfg.trainer, cfg.parallel
    try:
        preset = get_preset(m.preset)
    except ValueError:
        preset = None
        err("model.preset", m.preset, f"expected one of {sorted(PRESETS)} or the path of a preset file")
    for field, value, choices in (
        ("model.freeze_plan", m.freeze_plan, list(FREEZE_PLANS)),
        ("trainer.precision", tr.precision, list(PRECISIONS)),
        ("trainer.fp8_recipe", tr.fp8_recipe, list(FP8_RECIPES)),
        ("trainer.lr_decay_style", tr.lr_decay_style, list(LR_DECAY_STYLES)),
        ("parallel.recompute", par.recompute, list(RECOMPUTE_MODES)),
        ("trainer.exit_signal", tr.exit_signal, list(EXIT_SIGNALS)),
    ):
        if value not in choices:
            err(field, value, f"expected one of {choices}")
    return preset


def _check_optimizer(cfg: PretrainConfig, err: Err) -> None:
    """Learning rates and regularisers, which megatron would otherwise take as given (or assert on)."""
    tr = cfg.trainer
    for field, value, ok, expected in (
        # 0 is allowed: a step that must leave every weight as it was (conversion's interop test).
        ("trainer.lr", tr.lr, lambda v: v >= 0, "expected a number >= 0"),
        ("trainer.min_lr", tr.min_lr, lambda v: v >= 0, "expected a number >= 0"),
        ("trainer.weight_decay", tr.weight_decay, lambda v: v >= 0, "expected a number >= 0"),
        ("trainer.clip_grad", tr.clip_grad, lambda v: v >= 0, "expected a number >= 0 (0 turns clipping off)"),
        ("trainer.adam_beta2", tr.adam_beta2, lambda v: 0 <= v < 1, "expected a number in [0, 1)"),
    ):
        if not _number(value) or not ok(value):
            err(field, value, expected)
    if _number(tr.lr) and _number(tr.min_lr) and tr.min_lr > tr.lr >= 0:
        err("trainer.min_lr", tr.min_lr, f"expected <= trainer.lr={tr.lr!r} (the schedule decays to it)")


def _check_sizes(cfg: PretrainConfig, world_size: int, err: Err) -> bool:
    """Counts that must be positive integers; True if every one the layout checks divide by is."""
    d, par, tr = cfg.data, cfg.parallel, cfg.trainer
    sizes_ok = True
    for field, value in (
        ("parallel.tensor_parallel", par.tensor_parallel),
        ("parallel.pipeline_parallel", par.pipeline_parallel),
        ("parallel.context_parallel", par.context_parallel),
        ("data.micro_batch_size", d.micro_batch_size),
        ("data.global_batch_size", d.global_batch_size),
        ("data.seq_length", d.seq_length),
        ("trainer.max_steps", tr.max_steps),
        ("world_size", world_size),
        *((("data.mock_images_per_sample", d.mock_images_per_sample),) if d.mock else ()),
    ):
        if not _positive_int(value):
            err(field, value, "expected a positive integer")
            sizes_ok = False
    for field, value in (
        ("parallel.num_gpus", par.num_gpus),
        ("parallel.virtual_pipeline_parallel", par.virtual_pipeline_parallel),
    ):
        if value is not None and not _positive_int(value):
            err(field, value, "expected None or a positive integer")
            sizes_ok = False
    if tr.exit_duration_in_mins is not None and not _positive_int(tr.exit_duration_in_mins):
        err("trainer.exit_duration_in_mins", tr.exit_duration_in_mins, "expected None or a positive integer")
    if sizes_ok and not (isinstance(tr.warmup_steps, int) and 0 <= tr.warmup_steps < tr.max_steps):
        # megatron's scheduler asserts this with no message.
        err("trainer.warmup_steps", tr.warmup_steps, f"expected 0 <= warmup_steps < trainer.max_steps={tr.max_steps}")
    return sizes_ok


def _check_layout(cfg: PretrainConfig, world_size: int, err: Err) -> None:
    """The parallel layout against the world and the batch."""
    d, par = cfg.data, cfg.parallel
    tp, pp, cp, vp = par.tensor_parallel, par.pipeline_parallel, par.context_parallel, par.virtual_pipeline_parallel
    if vp is not None and pp == 1:
        err("parallel.virtual_pipeline_parallel", vp,
            "the interleaved schedule needs parallel.pipeline_parallel > 1 (got 1); leave it None")
    model_parallel = tp * pp * cp
    layout = f"tensor_parallel*pipeline_parallel*context_parallel = {tp}*{pp}*{cp} = {model_parallel}"
    if par.num_gpus is not None and par.num_gpus % model_parallel:
        err("parallel.num_gpus", par.num_gpus, f"expected a multiple of {layout}")
    if world_size % model_parallel:
        err("world_size", world_size, f"expected a multiple of {layout}")
    else:
        dp = world_size // model_parallel
        if d.global_batch_size % (d.micro_batch_size * dp):
            err("data.global_batch_size", d.global_batch_size,
                f"expected a multiple of data.micro_batch_size*data_parallel = {d.micro_batch_size}*{dp} = "
                f"{d.micro_batch_size * dp} (data_parallel = world_size {world_size} / (tp*pp*cp) "
                f"{model_parallel})")
    if cp > 1 and d.seq_length % (2 * cp):
        err("data.seq_length", d.seq_length,
            f"with parallel.context_parallel={cp} it must be divisible by 2*context_parallel = {2 * cp} "
            f"(load-balanced causal chunks)")
    if cp > 1 and d.micro_batch_size != 1:
        err("data.micro_batch_size", d.micro_batch_size,
            f"context parallelism splits packed (THD) rows, one per micro-batch; expected 1 with "
            f"parallel.context_parallel={cp}")


def _check_model_fit(cfg: PretrainConfig, preset: ModelPreset, err: Err) -> None:
    """The parallel layout and the sequence against the model's heads, layers and image tokens."""
    m, d, par = cfg.model, cfg.data, cfg.parallel
    tp, pp, vp = par.tensor_parallel, par.pipeline_parallel, par.virtual_pipeline_parallel
    lm, vision = preset.language, preset.vision
    named = f"model.preset={m.preset!r}"
    for what, count, note in (
        ("language model's num_attention_heads", lm.num_attention_heads, ""),
        ("language model's num_query_groups", lm.num_query_groups, ""),
        ("vision model's num_attention_heads", vision.num_attention_heads, "; the ViT shares the tensor-parallel group"),
    ):
        if count % tp:
            err("parallel.tensor_parallel", tp, f"must divide the {what}={count} ({named}{note})")
    chunks = pp * (vp or 1)
    if lm.num_layers % chunks:
        field = "parallel.virtual_pipeline_parallel" if vp else "parallel.pipeline_parallel"
        err(field, vp if vp else pp,
            f"pipeline_parallel*(virtual_pipeline_parallel or 1) = {pp}*{vp or 1} = {chunks} must divide "
            f"the language model's num_layers={lm.num_layers} ({named})")
    if d.seq_length <= preset.num_image_tokens:
        err("data.seq_length", d.seq_length,
            f"must exceed the {preset.num_image_tokens} image tokens of {named} so a sequence holds an image plus text")
    if d.mock and d.seq_length <= d.mock_images_per_sample * preset.num_image_tokens:
        err("data.mock_images_per_sample", d.mock_images_per_sample,
            f"{d.mock_images_per_sample} x {preset.num_image_tokens} image tokens leave no text in "
            f"data.seq_length={d.seq_length}")
    if d.seq_length > lm.max_position_embeddings:
        err("data.seq_length", d.seq_length, f"must be <= max_position_embeddings={lm.max_position_embeddings} of {named}")


def _check_transformer_engine(cfg: PretrainConfig, te_available: Optional[bool], err: Err) -> None:
    tr, par = cfg.trainer, cfg.parallel
    needs_te = []
    if tr.precision == "fp8":
        needs_te.append(("trainer.precision", tr.precision, "fp8 needs Transformer Engine"))
    if _positive_int(par.context_parallel) and par.context_parallel > 1:
        needs_te.append(("parallel.context_parallel", par.context_parallel,
                         "context parallelism needs Transformer Engine's attention"))
    if needs_te:
        if te_available is None:
            te_available = transformer_engine_available()
        if not te_available:
            for field, value, why in needs_te:
                err(field, value, f"{why}, which is not importable here; run in a TE container")


def _check_paths(cfg: PretrainConfig, err: Err) -> None:
    """What the run reads must exist before a model is built (checkpoints: training.lineage)."""
    d = cfg.data
    if not d.mock:
        if not d.path:
            err("data.path", d.path, "expected an Energon dataset directory or metadataset YAML (or data.mock=True)")
        elif not Path(d.path).exists():
            err("data.path", d.path, "no such file or directory")
    if d.val_path and not d.mock and not Path(d.val_path).exists():
        err("data.val_path", d.val_path, "no such file or directory")
    problem = rundir.missing_local_path(d.tokenizer)
    if problem:
        err("data.tokenizer", d.tokenizer, problem)


def _check_monitoring(cfg: PretrainConfig, err: Err) -> None:
    """Telemetry, in-training evaluation and the retention gate."""
    d, tr = cfg.data, cfg.trainer
    suites = [name for name in ("data.retention_path", "data.probe_path") if getattr(d, name.split(".")[1])]
    if suites and not _positive_int(tr.eval_interval):
        err("trainer.eval_interval", tr.eval_interval,
            f"{' and '.join(suites)} are scored at each evaluation; expected a positive interval")
    # Megatron evaluates (and calls the hook that scores the suites) only with a validation set.
    if suites and not (d.val_path and _positive_int(tr.eval_iters)):
        err(f"data.val_path={d.val_path!r}, trainer.eval_iters", tr.eval_iters,
            f"{' and '.join(suites)} are scored inside megatron's evaluation, which runs only with a "
            f"validation set; expected both")
    if tr.retention_gate is not None:
        if not (_number(tr.retention_gate) and 0 < tr.retention_gate < 1):
            err("trainer.retention_gate", tr.retention_gate, "expected a relative drop in (0, 1), e.g. 0.2 for 20 %")
        if not d.retention_path:
            err("trainer.retention_gate", tr.retention_gate, "needs data.retention_path, the text set it scores")
    if tr.retention_gate_action not in RETENTION_GATE_ACTIONS:
        err("trainer.retention_gate_action", tr.retention_gate_action, f"expected one of {list(RETENTION_GATE_ACTIONS)}")
    if tr.retention_gate_metric not in RETENTION_GATE_METRICS:
        err("trainer.retention_gate_metric", tr.retention_gate_metric, f"expected one of {list(RETENTION_GATE_METRICS)}")
    if not _positive_int(d.probe_images):
        err("data.probe_images", d.probe_images, "expected a positive number of images")
