"""Evaluation while training: one hook on the model being trained, and the text-retention gate.

megatron.training.pretrain calls its `non_loss_data_func(model)` inside every evaluation (each
`trainer.eval_interval` and once after the last step), after its own validation loss on
`data.val_path`, with the model in eval mode. `InTrainingEval` is that function. What it scores is a
`Scorer` handed in from above (training never imports evaluation; `nemo_twvlm.launch.train` builds
it from `nemo_twvlm.evaluation.in_training`), so this module owns only the when and the what-then:
scores to megatron's TensorBoard/W&B writers, the retention baseline and the gate.

The baseline is the score of the checkpoint the stage started from, taken before the first step
(the forward step calls `before_first_step`) and kept in the save directory, so a resumed run gates
against the stage's start and not against its own resume point.

The gate stops a run by setting megatron's `exit_interval` to the current iteration: the loop then
saves a checkpoint and exits as it does for `trainer.exit_interval`, and `RetentionGateStop` carries
the message out of the process (exit status 1, no traceback).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from nemo_twvlm.rundir import RETENTION_BASELINE_FILE
from nemo_twvlm.training.config import PretrainConfig

# What a scorer returns: score name -> value; these two names are the ones the gate can watch.
Scorer = Callable[[Any], dict[str, float]]
GATED_SCORES = {"perplexity": "retention/perplexity", "mcq_accuracy": "retention/mcq_accuracy"}


class RetentionGateStop(SystemExit):
    """The retention gate stopped training; the message says which score fell, how far, and where the
    checkpoint is."""


def relative_drop(metric: str, baseline: float, score: float) -> float:
    """How much of the baseline's text ability is gone: accuracy by its ratio, perplexity through
    1 / perplexity (the geometric-mean probability of the text). Negative when it improved."""
    if metric == "perplexity":
        return 1.0 - baseline / score
    return 1.0 - score / baseline if baseline > 0 else 0.0


class InTrainingEval:
    def __init__(self, cfg: PretrainConfig, scorer: Scorer, *, on_time_spent: Callable[[float], None] | None = None):
        self.cfg = cfg
        self.scorer = scorer
        self.on_time_spent = on_time_spent
        self.baseline: dict[str, float] | None = None
        self.tripped: str | None = None
        self._last: tuple[int, dict[str, float]] | None = None
        self._skip_reason = _unsupported_layout(cfg)

    # --- megatron's non_loss_data_func ---------------------------------------------------------------
    def __call__(self, model) -> dict[str, float]:
        from megatron.training import get_args

        args = get_args()
        iteration = args.curr_iteration + 1 if args.curr_iteration is not None else args.iteration
        if self._last and self._last[0] == iteration:  # megatron evaluates again after the last step
            return self._last[1]
        scores = self._score(model[0], iteration, "evaluation")
        if scores and self.cfg.trainer.retention_gate is not None:
            self._gate(scores, iteration, args)
        self._last = (iteration, scores)
        return scores

    def before_first_step(self, model_chunk) -> None:
        """Score the start checkpoint (or read the stage's baseline back when resuming)."""
        from megatron.training import get_args

        args = get_args()
        saved = Path(self.cfg.checkpoint.save, RETENTION_BASELINE_FILE) if self.cfg.checkpoint.save else None
        if args.iteration > 0 and saved is not None and saved.is_file():
            self.baseline = json.loads(saved.read_text(encoding="utf-8"))["scores"]
            _print(f"retention baseline of this stage's start, from {saved}: {_format(self.baseline)}")
            return
        was_training = model_chunk.training
        self.baseline = self._score(model_chunk, args.iteration, "start checkpoint")
        model_chunk.train(was_training)
        if saved is not None and self.baseline and args.rank == 0:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps({"iteration": args.iteration, "scores": self.baseline}, indent=2) + "\n",
                             encoding="utf-8")

    # --- internals -----------------------------------------------------------------------------------
    def _score(self, model_chunk, iteration: int, what: str) -> dict[str, float]:
        from nemo_twvlm.training.telemetry import log_scalars

        if self._skip_reason:
            _print(f"in-training evaluation skipped at iteration {iteration}: {self._skip_reason}")
            log_scalars({"eval/skipped": 1.0}, iteration)
            return {}
        start = time.perf_counter()
        scores = self.scorer(model_chunk)
        spent = time.perf_counter() - start
        if self.on_time_spent is not None:
            self.on_time_spent(spent)
        log_scalars({**scores, "eval/seconds": spent}, iteration)
        _print(f"eval at iteration {iteration} ({what}): {_format(scores)}")
        return scores

    def _gate(self, scores: dict[str, float], iteration: int, args) -> None:
        import torch

        t = self.cfg.trainer
        key = GATED_SCORES[t.retention_gate_metric]
        if self.baseline is None or key not in self.baseline or key not in scores:
            return
        drop = relative_drop(t.retention_gate_metric, self.baseline[key], scores[key])
        tripped = torch.tensor([int(drop > t.retention_gate)], dtype=torch.int,
                               device="cuda" if torch.cuda.is_available() else "cpu")
        if torch.distributed.is_initialized():  # every rank stops, or none does
            torch.distributed.all_reduce(tripped, op=torch.distributed.ReduceOp.MAX)
        if not tripped.item():
            return
        save = self.cfg.checkpoint.save
        message = (f"retention gate: {key} went from {self.baseline[key]:.4g} (the checkpoint this stage "
                   f"started from) to {scores[key]:.4g} at iteration {iteration}, a drop of {drop:.1%} of the "
                   f"text score, beyond trainer.retention_gate={t.retention_gate}")
        if t.retention_gate_action == "warn":
            _print(f"WARNING {message}; training goes on (trainer.retention_gate_action=warn)")
            return
        kept = f"checkpoint iteration {iteration} kept in {save}" if save else "no checkpoint.save, nothing kept"
        self.tripped = f"{message}; training stopped, {kept}"
        _print(self.tripped)
        args.exit_interval = iteration  # megatron saves and exits at this step boundary


def _unsupported_layout(cfg: PretrainConfig) -> str | None:
    # The suites run whole-model forwards and generation on one rank's model; tensor- or
    # pipeline-parallel shards would each need their peers in every call.
    p = cfg.parallel
    if p.tensor_parallel > 1 or p.pipeline_parallel > 1:
        return (f"the retention and probe suites need parallel.tensor_parallel=1 and pipeline_parallel=1 "
                f"(this run: {p.tensor_parallel} and {p.pipeline_parallel}); validation loss still runs")
    return None


def _format(scores: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in scores.items())


def _print(message: str) -> None:
    from megatron.training import print_rank_0

    print_rank_0(f"nemo_twvlm: {message}")
