"""The retention gate's arithmetic and decisions, without a training loop."""
from types import SimpleNamespace

import pytest

from nemo_twvlm.training import in_training_eval
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.in_training_eval import InTrainingEval, relative_drop


def test_relative_drop_of_accuracy_and_of_perplexity():
    assert relative_drop("mcq_accuracy", 0.8, 0.6) == pytest.approx(0.25)
    assert relative_drop("mcq_accuracy", 0.8, 0.9) < 0
    # 1 / perplexity is the text's mean probability per token: doubling perplexity halves it.
    assert relative_drop("perplexity", 20.0, 40.0) == pytest.approx(0.5)
    assert relative_drop("perplexity", 20.0, 10.0) < 0


def _hook(action, metric="perplexity", gate=0.3):
    cfg = PretrainConfig()
    cfg.trainer.retention_gate, cfg.trainer.retention_gate_action, cfg.trainer.retention_gate_metric = \
        gate, action, metric
    cfg.checkpoint.save = "runs/x"
    hook = InTrainingEval(cfg, scorer=lambda model: {})
    hook.baseline = {"retention/perplexity": 20.0, "retention/mcq_accuracy": 0.8}
    return hook


@pytest.fixture
def printed(monkeypatch):
    lines = []
    monkeypatch.setattr(in_training_eval, "_print", lines.append)
    return lines


def test_stop_sets_megatrons_exit_interval_and_names_the_drop(printed):
    hook, args = _hook("stop"), SimpleNamespace(exit_interval=None)
    hook._gate({"retention/perplexity": 25.0}, 10, args)  # a 20 % drop: inside the gate
    assert args.exit_interval is None and hook.tripped is None and printed == []
    hook._gate({"retention/perplexity": 100.0}, 20, args)
    assert args.exit_interval == 20
    assert hook.tripped == printed[-1]
    assert "retention/perplexity went from 20 " in hook.tripped and "to 100 at iteration 20" in hook.tripped
    assert "a drop of 80.0%" in hook.tripped and "checkpoint iteration 20 kept in runs/x" in hook.tripped


def test_warn_only_warns(printed):
    hook, args = _hook("warn", metric="mcq_accuracy"), SimpleNamespace(exit_interval=None)
    hook._gate({"retention/mcq_accuracy": 0.2}, 20, args)
    assert args.exit_interval is None and hook.tripped is None
    assert printed[-1].startswith("WARNING retention gate: retention/mcq_accuracy went from 0.8 ")


def test_tensor_or_pipeline_parallel_runs_skip_the_suites_with_a_reason():
    cfg = PretrainConfig()
    cfg.parallel.tensor_parallel = 2
    assert "tensor_parallel=1" in in_training_eval._unsupported_layout(cfg)
    assert in_training_eval._unsupported_layout(PretrainConfig()) is None


def test_training_without_the_evaluation_layer_refuses_suites_it_cannot_score():
    from nemo_twvlm.training.pretrain import run_pretrain

    cfg = PretrainConfig()
    cfg.data.retention_path = "data/retention"
    with pytest.raises(SystemExit, match="python -m nemo_twvlm.launch.train"):
        run_pretrain(cfg)
