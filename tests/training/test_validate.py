"""Pre-launch config validation: every rule fires and names its field; valid layouts pass."""
from __future__ import annotations

import pytest

from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.validate import ConfigError, transformer_engine_available, validate


def cfg_70b() -> PretrainConfig:
    """Llama-3-70B CPT on 64 GPUs: TP8 PP4 VP5 -> DP2, GBS 128, seq 8192."""
    cfg = PretrainConfig()
    cfg.model.preset, cfg.model.freeze_plan = "70b", "cpt"
    cfg.data.seq_length, cfg.data.micro_batch_size, cfg.data.global_batch_size = 8192, 1, 128
    p = cfg.parallel
    p.tensor_parallel, p.pipeline_parallel, p.virtual_pipeline_parallel = 8, 4, 5
    p.sequence_parallel, p.distributed_optimizer, p.recompute = True, True, "selective"
    cfg.trainer.precision = "bf16"
    return cfg


def test_valid_configs_pass():
    assert validate(PretrainConfig()) is None  # the debug default on one process
    assert validate(cfg_70b(), world_size=64) is None
    cfg = cfg_70b()
    cfg.trainer.precision = "fp8"
    validate(cfg, world_size=64, te_available=True)


def test_sequence_parallel_with_tp1_is_allowed():
    cfg = PretrainConfig()
    cfg.parallel.sequence_parallel = True
    validate(cfg)


def test_context_parallel_valid():
    cfg = cfg_70b()
    cfg.parallel.context_parallel = 2
    validate(cfg, world_size=128, te_available=True)


def _fails(cfg: PretrainConfig, *needles: str, world_size: int = 1, te_available=None) -> str:
    with pytest.raises(ConfigError) as info:
        validate(cfg, world_size=world_size, te_available=te_available)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def test_heads_not_divisible_by_tp():
    cfg = PretrainConfig()  # debug LM: 4 heads, 2 query groups; ViT 4 heads
    cfg.parallel.tensor_parallel = 3
    _fails(cfg, "parallel.tensor_parallel=3", "num_attention_heads=4", world_size=3)


def test_query_groups_not_divisible_by_tp():
    cfg = PretrainConfig()
    cfg.parallel.tensor_parallel = 4  # divides 4 heads but not 2 query groups
    msg = _fails(cfg, "parallel.tensor_parallel=4", "num_query_groups=2", world_size=4)
    assert "num_attention_heads" not in msg


def test_layers_not_divisible_by_pipeline():
    cfg = PretrainConfig()  # debug LM: 2 layers
    cfg.parallel.pipeline_parallel = 3
    _fails(cfg, "parallel.pipeline_parallel=3", "num_layers=2", world_size=3)


def test_layers_not_divisible_by_pipeline_times_virtual():
    cfg = cfg_70b()
    cfg.parallel.virtual_pipeline_parallel = 3  # 4*3 = 12 does not divide 80
    _fails(cfg, "parallel.virtual_pipeline_parallel=3", "num_layers=80", "12", world_size=64)


def test_virtual_pipeline_needs_pipeline():
    cfg = PretrainConfig()
    cfg.parallel.virtual_pipeline_parallel = 2
    _fails(cfg, "parallel.virtual_pipeline_parallel=2", "pipeline_parallel > 1")


def test_global_batch_not_divisible_by_micro_batch_times_dp():
    cfg = cfg_70b()
    cfg.data.global_batch_size = 127
    _fails(cfg, "data.global_batch_size=127", "data.micro_batch_size", "2", world_size=64)
    cfg = PretrainConfig()
    cfg.data.micro_batch_size, cfg.data.global_batch_size = 4, 12  # dp 2 -> multiples of 8
    _fails(cfg, "data.global_batch_size=12", "8", world_size=2)


def test_world_size_not_divisible_by_model_parallel():
    _fails(cfg_70b(), "world_size=48", "8*4*1 = 32", world_size=48)


def test_seq_length_must_hold_image_plus_text():
    cfg = PretrainConfig()  # debug: 16 image tokens
    cfg.data.seq_length = 16
    _fails(cfg, "data.seq_length=16", "16 image tokens")
    cfg = cfg_70b()  # 576 image tokens
    cfg.data.seq_length = 512
    _fails(cfg, "data.seq_length=512", "576 image tokens", world_size=64)


def test_seq_length_beyond_max_position_embeddings():
    cfg = PretrainConfig()
    cfg.data.seq_length = 2048  # debug max 1024
    _fails(cfg, "data.seq_length=2048", "max_position_embeddings=1024")


def test_context_parallel_needs_seq_divisible_by_2cp():
    cfg = PretrainConfig()
    cfg.parallel.context_parallel = 4
    cfg.data.seq_length = 260  # not a multiple of 8
    _fails(cfg, "data.seq_length=260", "context_parallel=4", "8", world_size=4)


def test_fp8_without_transformer_engine():
    cfg = PretrainConfig()
    cfg.trainer.precision = "fp8"
    _fails(cfg, "trainer.precision='fp8'", "Transformer Engine", te_available=False)


def test_fp8_detects_transformer_engine_when_not_told(monkeypatch):
    import nemo_twvlm.training.validate as v

    cfg = PretrainConfig()
    cfg.trainer.precision = "fp8"
    monkeypatch.setattr(v, "transformer_engine_available", lambda: False)
    _fails(cfg, "Transformer Engine")
    monkeypatch.setattr(v, "transformer_engine_available", lambda: True)
    validate(cfg)


def test_transformer_engine_available_is_a_bool():
    assert isinstance(transformer_engine_available(), bool)


@pytest.mark.parametrize("section,field,value", [
    ("trainer", "precision", "fp16"),
    ("model", "freeze_plan", "lora"),
    ("model", "preset", "405b"),
    ("parallel", "recompute", "everything"),
])
def test_unknown_names(section, field, value):
    cfg = PretrainConfig()
    setattr(getattr(cfg, section), field, value)
    _fails(cfg, f"{section}.{field}={value!r}", "expected one of")


@pytest.mark.parametrize("section,field", [
    ("parallel", "tensor_parallel"), ("parallel", "pipeline_parallel"), ("parallel", "context_parallel"),
    ("data", "micro_batch_size"), ("data", "global_batch_size"), ("data", "seq_length"),
])
def test_non_positive_sizes(section, field):
    cfg = PretrainConfig()
    setattr(getattr(cfg, section), field, 0)
    _fails(cfg, f"{section}.{field}=0", "positive integer")


def test_all_errors_are_reported_at_once_and_it_is_a_value_error():
    cfg = PretrainConfig()
    cfg.trainer.precision = "fp16"
    cfg.model.freeze_plan = "lora"
    cfg.data.seq_length = 4096
    with pytest.raises(ValueError) as info:
        validate(cfg)
    assert isinstance(info.value, ConfigError)
    assert len(info.value.errors) == 3
    for needle in ("trainer.precision", "model.freeze_plan", "data.seq_length"):
        assert needle in str(info.value)


def test_warmup_longer_than_training_names_the_field():
    cfg = PretrainConfig()
    cfg.trainer.max_steps, cfg.trainer.warmup_steps = 5, 10
    with pytest.raises(ConfigError, match=r"trainer\.warmup_steps=10"):
        validate(cfg)


# --- scale fields: FP8 scaling, cluster size, context parallelism, mock data -------------------------

def test_fp8_recipe_must_be_known():
    cfg = cfg_70b()
    cfg.trainer.precision, cfg.trainer.fp8_recipe = "fp8", "mxfp8"
    _fails(cfg, "trainer.fp8_recipe='mxfp8'", "delayed", "tensorwise", world_size=64, te_available=True)
    cfg.trainer.fp8_recipe = "tensorwise"
    validate(cfg, world_size=64, te_available=True)


def test_num_gpus_must_hold_whole_model_replicas():
    cfg = cfg_70b()
    cfg.parallel.num_gpus = 48  # TP8 x PP4 = 32 per replica
    _fails(cfg, "parallel.num_gpus=48", "8*4*1 = 32", world_size=64)
    cfg.parallel.num_gpus = 0
    _fails(cfg, "parallel.num_gpus=0", "positive integer", world_size=64)


def test_context_parallel_needs_transformer_engine_and_one_row_per_micro_batch():
    cfg = cfg_70b()
    cfg.parallel.tensor_parallel, cfg.parallel.context_parallel = 4, 2
    validate(cfg, world_size=64, te_available=True)
    _fails(cfg, "parallel.context_parallel=2", "Transformer Engine", world_size=64, te_available=False)
    cfg.data.micro_batch_size, cfg.data.global_batch_size = 2, 128
    _fails(cfg, "data.micro_batch_size=2", "context_parallel=2", world_size=64, te_available=True)


def test_mock_images_must_leave_room_for_text():
    cfg = PretrainConfig()  # debug: 16 image tokens, seq 256
    cfg.data.mock, cfg.data.mock_images_per_sample = True, 16
    _fails(cfg, "data.mock_images_per_sample=16", "data.seq_length=256")
    cfg.data.mock_images_per_sample = 0
    _fails(cfg, "data.mock_images_per_sample=0", "positive integer")
    cfg.data.mock_images_per_sample = 15
    validate(cfg)


def test_preemption_fields_are_checked_by_name():
    cfg = PretrainConfig()
    cfg.trainer.exit_signal = "SIGKILL"  # cannot be caught: a checkpoint could never be saved
    _fails(cfg, "trainer.exit_signal='SIGKILL'", "SIGTERM", "SIGUSR1")
    cfg.trainer.exit_signal, cfg.trainer.exit_duration_in_mins = "SIGUSR1", 0
    _fails(cfg, "trainer.exit_duration_in_mins=0", "positive integer")
    cfg.trainer.exit_duration_in_mins = 230
    validate(cfg)


def test_in_training_evaluation_and_retention_gate_fields_are_checked_by_name():
    cfg = PretrainConfig()
    cfg.data.retention_path = "data/retention"
    _fails(cfg, "trainer.eval_interval=0: data.retention_path are scored at each evaluation",
           "data.val_path='', trainer.eval_iters=0")
    cfg.trainer.eval_interval, cfg.trainer.eval_iters, cfg.data.val_path = 50, 2, "data/pairs_val"
    validate(cfg)
    cfg.trainer.retention_gate, cfg.trainer.retention_gate_action = 1.5, "pause"
    cfg.trainer.retention_gate_metric, cfg.data.probe_images = "bleu", 0
    msg = _fails(cfg, "trainer.retention_gate=1.5: expected a relative drop in (0, 1)",
                 "trainer.retention_gate_action='pause': expected one of ['stop', 'warn']",
                 "trainer.retention_gate_metric='bleu'", "data.probe_images=0")
    assert msg.startswith("4 configuration errors")
    cfg = PretrainConfig()
    cfg.trainer.retention_gate = 0.2
    _fails(cfg, "trainer.retention_gate=0.2: needs data.retention_path")
