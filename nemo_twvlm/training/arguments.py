"""PretrainConfig -> Megatron-LM command-line arguments (the loop is megatron.training's, unchanged)."""
from __future__ import annotations

import os

from nemo_twvlm.compat import cuda_available, te_available
from nemo_twvlm.presets import get_preset
from nemo_twvlm.rundir import loader_state_dir
from nemo_twvlm.training.config import PretrainConfig

# Kernels that need CUDA (apex / TE / custom fusions): off on a CPU machine.
_CPU_ONLY_FLAGS = [
    "--use-cpu-initialization", "--no-gradient-accumulation-fusion", "--no-masked-softmax-fusion",
    "--no-bias-gelu-fusion", "--no-bias-swiglu-fusion", "--no-bias-dropout-fusion", "--no-rope-fusion",
    "--no-persist-layer-norm", "--distributed-backend", "gloo",
]


def megatron_args(cfg: PretrainConfig) -> list[str]:
    preset = get_preset(cfg.model.preset)
    lm, t, d, p, c = preset.language, cfg.trainer, cfg.data, cfg.parallel, cfg.checkpoint
    args = [
        # Language-model shape: megatron.training uses it for logging FLOPs and checkpoint metadata; the
        # model itself is built from the preset by our model provider.
        "--num-layers", str(lm.num_layers), "--hidden-size", str(lm.hidden_size),
        "--ffn-hidden-size", str(lm.ffn_hidden_size), "--num-attention-heads", str(lm.num_attention_heads),
        "--group-query-attention", "--num-query-groups", str(lm.num_query_groups),
        "--seq-length", str(d.seq_length), "--max-position-embeddings", str(lm.max_position_embeddings),
        "--position-embedding-type", "rope", "--rotary-base", str(int(lm.rotary_base)),
        "--normalization", "RMSNorm", "--norm-epsilon", str(lm.norm_epsilon), "--swiglu",
        "--disable-bias-linear", "--untie-embeddings-and-output-weights",
        "--tokenizer-type", "NullTokenizer", "--vocab-size", str(lm.vocab_size - 1),
        "--make-vocab-size-divisible-by", "1",
        "--attention-dropout", "0.0", "--hidden-dropout", "0.0",
        # Optimisation.
        "--micro-batch-size", str(d.micro_batch_size), "--global-batch-size", str(d.global_batch_size),
        "--train-iters", str(t.max_steps), "--lr", str(t.lr), "--min-lr", str(t.min_lr),
        "--lr-decay-style", t.lr_decay_style, "--lr-warmup-iters", str(t.warmup_steps),
        "--weight-decay", str(t.weight_decay), "--clip-grad", str(t.clip_grad), "--adam-beta2", str(t.adam_beta2),
        "--seed", str(t.seed),
        # Data comes from our Energon loaders.
        "--dataloader-type", "external",
        "--log-interval", str(t.log_interval),
        "--eval-interval", str(t.eval_interval or max(t.max_steps, 1)), "--eval-iters", str(t.eval_iters),
        # Parallelism.
        "--tensor-model-parallel-size", str(p.tensor_parallel),
        "--pipeline-model-parallel-size", str(p.pipeline_parallel),
        "--context-parallel-size", str(p.context_parallel),
    ]
    if p.virtual_pipeline_parallel:
        args += ["--num-virtual-stages-per-pipeline-rank", str(p.virtual_pipeline_parallel)]
    if p.sequence_parallel:
        args.append("--sequence-parallel")
    if p.distributed_optimizer:
        args.append("--use-distributed-optimizer")
    if p.recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    elif p.recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    if t.precision in ("bf16", "fp8"):
        args.append("--bf16")
    if t.precision == "fp8":
        args += ["--fp8-format", "hybrid", "--fp8-recipe", t.fp8_recipe]
    args += ["--transformer-impl", "transformer_engine" if te_available() else "local"]
    if not cuda_available():
        args += _CPU_ONLY_FLAGS
    if t.exit_interval:
        args += ["--exit-interval", str(t.exit_interval)]
    if t.exit_signal:
        args += ["--exit-signal-handler", "--exit-signal", t.exit_signal]
    if t.exit_duration_in_mins:
        args += ["--exit-duration-in-mins", str(t.exit_duration_in_mins)]
    if c.save:
        args += ["--save", c.save, "--save-interval", str(c.save_interval or t.max_steps), "--ckpt-format",
                 "torch_dist", "--dataloader-save", str(loader_state_dir(c.save))]
        if async_save(cfg):
            # Megatron turns --async-save off again without the persistent worker.
            args += ["--async-save", "--use-persistent-ckpt-worker"]
    args += telemetry_args(cfg)
    if c.load:
        args += ["--load", c.load]
    if c.step is not None:
        args += ["--ckpt-step", str(c.step)]
    if cfg.model.init_from:
        args += ["--pretrained-checkpoint", cfg.model.init_from]
        if not c.load:
            # Megatron falls back to the pretrained checkpoint only when --load holds none.
            args += ["--load", c.save or cfg.model.init_from]
    return args


def async_save(cfg: PretrainConfig) -> bool:
    """checkpoint.async_save, with None meaning: where megatron's async writer works (FIELD_NOTES: it
    calls torch.cuda.synchronize(), so not on CPU)."""
    return cuda_available() if cfg.checkpoint.async_save is None else cfg.checkpoint.async_save


def telemetry_args(cfg: PretrainConfig) -> list[str]:
    """megatron.training's TensorBoard and W&B writers; every training step is logged to them."""
    t, args = cfg.trainer, []
    if t.tensorboard_dir:
        args += ["--tensorboard-dir", t.tensorboard_dir, "--tensorboard-log-interval", "1",
                 "--log-validation-ppl-to-tensorboard"]
    if t.wandb_project:
        # Megatron puts W&B files under --save by default, and has no default without one.
        save_dir = t.tensorboard_dir or cfg.checkpoint.save or os.path.join("runs", cfg.name)
        args += ["--wandb-project", t.wandb_project, "--wandb-exp-name", t.wandb_exp_name or cfg.name,
                 "--wandb-save-dir", os.path.join(save_dir, "wandb")]
    return args


def add_twvlm_arguments(parser):
    group = parser.add_argument_group("nemo_twvlm")
    # Megatron-LM's own multimodal example defines this flag; megatron.training reads it when saving.
    group.add_argument("--dataloader-save", type=str, default=None, help="directory for loader state")
    return parser
