"""Pre-launch checks of a `PretrainConfig`: fail in a second on the login node, not after the job queued.

`validate(cfg, world_size=...)` raises one `ConfigError` listing every problem found, each naming the
field path, its value and what is expected. It imports neither torch nor megatron.
"""
from __future__ import annotations

from typing import Optional

from nemo_twvlm.compat import te_available as transformer_engine_available
from nemo_twvlm.presets import PRESETS, get_preset
from nemo_twvlm.training.config import (
    EXIT_SIGNALS, FP8_RECIPES, FREEZE_PLANS, PRECISIONS, RECOMPUTE_MODES, RETENTION_GATE_ACTIONS,
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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate(cfg: PretrainConfig, *, world_size: int = 1, te_available: Optional[bool] = None) -> None:
    """Raise `ConfigError` if ``cfg`` cannot run on ``world_size`` ranks; return None if it can.

    ``te_available`` None detects Transformer Engine (only needed for ``trainer.precision='fp8'``).
    Sequence parallelism with tensor_parallel=1 is allowed (it is a no-op).
    """
    errors: list[str] = []

    def err(field: str, value, expected: str) -> None:
        errors.append(f"{field}={value!r}: {expected}")

    m, d, par, tr = cfg.model, cfg.data, cfg.parallel, cfg.trainer

    # --- names --------------------------------------------------------------------------------------
    try:
        preset = get_preset(m.preset)
    except ValueError:
        preset = None
        err("model.preset", m.preset, f"expected one of {sorted(PRESETS)} or the path of a preset file")
    if m.freeze_plan not in FREEZE_PLANS:
        err("model.freeze_plan", m.freeze_plan, f"expected one of {list(FREEZE_PLANS)}")
    if tr.precision not in PRECISIONS:
        err("trainer.precision", tr.precision, f"expected one of {list(PRECISIONS)}")
    if tr.fp8_recipe not in FP8_RECIPES:
        err("trainer.fp8_recipe", tr.fp8_recipe, f"expected one of {list(FP8_RECIPES)}")
    if par.recompute not in RECOMPUTE_MODES:
        err("parallel.recompute", par.recompute, f"expected one of {list(RECOMPUTE_MODES)}")
    if tr.exit_signal not in EXIT_SIGNALS:
        err("trainer.exit_signal", tr.exit_signal, f"expected one of {list(EXIT_SIGNALS)}")

    # --- sizes are positive integers ------------------------------------------------------------------
    sizes_ok = True
    for field, value in (
        ("parallel.tensor_parallel", par.tensor_parallel),
        ("parallel.pipeline_parallel", par.pipeline_parallel),
        ("parallel.context_parallel", par.context_parallel),
        ("data.micro_batch_size", d.micro_batch_size),
        ("data.global_batch_size", d.global_batch_size),
        ("data.seq_length", d.seq_length),
        ("trainer.max_steps", tr.max_steps),
    ):
        if not _positive_int(value):
            err(field, value, "expected a positive integer")
            sizes_ok = False
    vp = par.virtual_pipeline_parallel
    if d.mock and not _positive_int(d.mock_images_per_sample):
        err("data.mock_images_per_sample", d.mock_images_per_sample, "expected a positive integer")
        sizes_ok = False
    if tr.exit_duration_in_mins is not None and not _positive_int(tr.exit_duration_in_mins):
        err("trainer.exit_duration_in_mins", tr.exit_duration_in_mins, "expected None or a positive integer")
    if par.num_gpus is not None and not _positive_int(par.num_gpus):
        err("parallel.num_gpus", par.num_gpus, "expected None or a positive integer")
        sizes_ok = False
    if vp is not None and not _positive_int(vp):
        err("parallel.virtual_pipeline_parallel", vp, "expected None or a positive integer")
        sizes_ok = False
    if not _positive_int(world_size):
        err("world_size", world_size, "expected a positive integer")
        sizes_ok = False

    if sizes_ok and not 0 <= tr.warmup_steps < tr.max_steps:
        # megatron's scheduler asserts this with no message.
        err("trainer.warmup_steps", tr.warmup_steps, f"expected 0 <= warmup_steps < trainer.max_steps={tr.max_steps}")

    if sizes_ok:
        tp, pp, cp = par.tensor_parallel, par.pipeline_parallel, par.context_parallel
        if vp is not None and pp == 1:
            err("parallel.virtual_pipeline_parallel", vp,
                "the interleaved schedule needs parallel.pipeline_parallel > 1 (got 1); leave it None")

        # --- parallel layout vs the world -----------------------------------------------------------
        model_parallel = tp * pp * cp
        if par.num_gpus is not None and par.num_gpus % model_parallel:
            err("parallel.num_gpus", par.num_gpus,
                f"expected a multiple of tensor_parallel*pipeline_parallel*context_parallel = {tp}*{pp}*{cp} = "
                f"{model_parallel}")
        if world_size % model_parallel:
            err("world_size", world_size,
                f"expected a multiple of tensor_parallel*pipeline_parallel*context_parallel = "
                f"{tp}*{pp}*{cp} = {model_parallel}")
        else:
            dp = world_size // model_parallel
            if d.global_batch_size % (d.micro_batch_size * dp):
                err("data.global_batch_size", d.global_batch_size,
                    f"expected a multiple of data.micro_batch_size*data_parallel = {d.micro_batch_size}*{dp} = "
                    f"{d.micro_batch_size * dp} (data_parallel = world_size {world_size} / (tp*pp*cp) "
                    f"{model_parallel})")

        # --- parallel layout vs the model -----------------------------------------------------------
        if preset is not None:
            lm, vision = preset.language, preset.vision
            if lm.num_attention_heads % tp:
                err("parallel.tensor_parallel", tp,
                    f"must divide the language model's num_attention_heads={lm.num_attention_heads} "
                    f"(model.preset={m.preset!r})")
            if lm.num_query_groups % tp:
                err("parallel.tensor_parallel", tp,
                    f"must divide the language model's num_query_groups={lm.num_query_groups} "
                    f"(model.preset={m.preset!r})")
            if vision.num_attention_heads % tp:
                err("parallel.tensor_parallel", tp,
                    f"must divide the vision model's num_attention_heads={vision.num_attention_heads} "
                    f"(model.preset={m.preset!r}; the ViT shares the tensor-parallel group)")
            chunks = pp * (vp or 1)
            if lm.num_layers % chunks:
                field = "parallel.virtual_pipeline_parallel" if vp else "parallel.pipeline_parallel"
                err(field, vp if vp else pp,
                    f"pipeline_parallel*(virtual_pipeline_parallel or 1) = {pp}*{vp or 1} = {chunks} must divide "
                    f"the language model's num_layers={lm.num_layers} (model.preset={m.preset!r})")

            # --- sequence ---------------------------------------------------------------------------
            if d.seq_length <= preset.num_image_tokens:
                err("data.seq_length", d.seq_length,
                    f"must exceed the {preset.num_image_tokens} image tokens of model.preset={m.preset!r} "
                    f"so a sequence holds an image plus text")
            if d.mock and d.seq_length <= d.mock_images_per_sample * preset.num_image_tokens:
                err("data.mock_images_per_sample", d.mock_images_per_sample,
                    f"{d.mock_images_per_sample} x {preset.num_image_tokens} image tokens leave no text in "
                    f"data.seq_length={d.seq_length}")
            if d.seq_length > lm.max_position_embeddings:
                err("data.seq_length", d.seq_length,
                    f"must be <= max_position_embeddings={lm.max_position_embeddings} "
                    f"of model.preset={m.preset!r}")
        if cp > 1 and d.seq_length % (2 * cp):
            err("data.seq_length", d.seq_length,
                f"with parallel.context_parallel={cp} it must be divisible by 2*context_parallel = {2 * cp} "
                f"(load-balanced causal chunks)")

        if cp > 1 and d.micro_batch_size != 1:
            err("data.micro_batch_size", d.micro_batch_size,
                f"context parallelism splits packed (THD) rows, one per micro-batch; expected 1 with "
                f"parallel.context_parallel={cp}")

    # --- Transformer Engine needs ---------------------------------------------------------------------
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

    errors += monitoring_errors(cfg)
    if errors:
        raise ConfigError(errors)


def monitoring_errors(cfg: PretrainConfig) -> list[str]:
    """Telemetry, in-training evaluation and the retention gate: one message per problem."""
    d, tr, errors = cfg.data, cfg.trainer, []
    suites = [name for name in ("data.retention_path", "data.probe_path") if getattr(d, name.split(".")[1])]
    if suites and not (isinstance(tr.eval_interval, int) and tr.eval_interval > 0):
        errors.append(f"trainer.eval_interval={tr.eval_interval!r}: {' and '.join(suites)} are scored at each "
                      f"evaluation; expected a positive interval")
    # Megatron evaluates (and calls the hook that scores the suites) only with a validation set.
    if suites and not (d.val_path and isinstance(tr.eval_iters, int) and tr.eval_iters > 0):
        errors.append(f"data.val_path={d.val_path!r}, trainer.eval_iters={tr.eval_iters!r}: "
                      f"{' and '.join(suites)} are scored inside megatron's evaluation, which runs only with a "
                      f"validation set; expected both")
    if tr.retention_gate is not None:
        if not (isinstance(tr.retention_gate, (int, float)) and 0 < tr.retention_gate < 1):
            errors.append(f"trainer.retention_gate={tr.retention_gate!r}: expected a relative drop in (0, 1), "
                          f"e.g. 0.2 for 20 %")
        if not d.retention_path:
            errors.append(f"trainer.retention_gate={tr.retention_gate!r}: needs data.retention_path, the text "
                          f"set it scores")
    if tr.retention_gate_action not in RETENTION_GATE_ACTIONS:
        errors.append(f"trainer.retention_gate_action={tr.retention_gate_action!r}: expected one of "
                      f"{list(RETENTION_GATE_ACTIONS)}")
    if tr.retention_gate_metric not in RETENTION_GATE_METRICS:
        errors.append(f"trainer.retention_gate_metric={tr.retention_gate_metric!r}: expected one of "
                      f"{list(RETENTION_GATE_METRICS)}")
    if not (isinstance(d.probe_images, int) and d.probe_images >= 1):
        errors.append(f"data.probe_images={d.probe_images!r}: expected a positive number of images")
    return errors
