"""Typed training configuration: what a recipe returns and what `nemo twvlm pretrain` runs.

Plain dataclasses so NeMo-Run can wrap them in `run.Config` and the CLI can override any field
(`trainer.max_steps=20`, `data.seq_length=512`). As JSON they are the run record a checkpoint carries
(nemo_twvlm.rundir owns the file) and the file `python -m nemo_twvlm.training.pretrain` runs.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Optional

# The values a field may take, kept beside the fields (validation and the planner read them here, so
# neither needs torch to know the names). The freeze plans are the model's (model/freeze.py).
PRECISIONS = ("fp32", "bf16", "fp8")
FP8_RECIPES = ("delayed", "tensorwise")
RECOMPUTE_MODES = (None, "selective", "full")
EXIT_SIGNALS = (None, "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
# megatron.training's choices for --lr-decay-style.
LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
RETENTION_GATE_ACTIONS = ("stop", "warn")
# Which text-retention score the gate watches. Perplexity by default: it moves smoothly on a small
# held-out set, where the accuracy of a few dozen questions jumps by whole answers.
RETENTION_GATE_METRICS = ("perplexity", "mcq_accuracy")


@dataclass
class ModelConfig:
    preset: str = "debug"
    # Which parameters train: "align" (projector), "cpt" (projector + LM), "sft" (projector + LM).
    freeze_plan: str = "align"
    train_vision: bool = False
    # Path of a checkpoint whose weights initialise this run (a previous stage); optimizer state is not loaded.
    init_from: Optional[str] = None

@dataclass
class DataConfig:
    # An Energon dataset directory or metadataset YAML (blends live there).
    path: str = ""
    # Held-out split for validation during training; empty = none.
    val_path: str = ""
    # Text-retention set scored at each evaluation: a folder with mcq.jsonl/.csv (TMMLU+/TMLU layout:
    # question, A-D, answer) and text.jsonl (held-out zh-TW text for perplexity); empty = none.
    retention_path: str = ""
    # Held-out image shards for the instruction-following probe at each evaluation; empty = none.
    probe_path: str = ""
    probe_images: int = 4
    # A tokenizer directory (or hub id). Empty: the tokenizer of the checkpoint the run starts from
    # (model.init_from), which every stage after an import uses (training.lineage).
    tokenizer: str = "data/tokenizer"
    seq_length: int = 256
    micro_batch_size: int = 4
    global_batch_size: int = 4
    packing: bool = True
    packing_buffer_size: int = 256
    num_workers: int = 0
    seed: int = 1234
    # Append one JSON line per micro-batch (iteration, sample keys, loss) here; empty = off.
    sample_log: str = ""
    # Random full-length rows instead of `path` (throughput runs: no storage, no decoding).
    mock: bool = False
    mock_images_per_sample: int = 1

@dataclass
class ParallelConfig:
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    virtual_pipeline_parallel: Optional[int] = None
    context_parallel: int = 1
    sequence_parallel: bool = False
    distributed_optimizer: bool = False
    recompute: Optional[str] = None  # None | "selective" | "full"
    # GPUs the layout and batch sizes were chosen for; launchers size the allocation from it
    # (Slurm nodes = num_gpus / gpus_per_node). None: whatever the launcher provides.
    num_gpus: Optional[int] = None

@dataclass
class TrainerConfig:
    max_steps: int = 100
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    lr_decay_style: str = "cosine"
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    adam_beta2: float = 0.95
    seed: int = 1234
    precision: str = "fp32"  # fp32 | bf16 | fp8 (fp8 needs Transformer Engine)
    # FP8 scaling (hybrid format: E4M3 forward, E5M2 gradients): "delayed" (amax history) or
    # "tensorwise" (per-tensor current scaling).
    fp8_recipe: str = "delayed"
    log_interval: int = 10
    eval_interval: int = 0
    eval_iters: int = 0
    # megatron.training's own writers; empty = off. W&B honours WANDB_MODE=offline.
    tensorboard_dir: str = ""
    wandb_project: str = ""
    wandb_exp_name: str = ""  # empty: the run's name
    # Stop (or warn) when the retention score drops by more than this fraction of the score of the
    # checkpoint the stage started from (scored before the first step); None = no gate.
    retention_gate: Optional[float] = None
    retention_gate_action: str = "stop"
    retention_gate_metric: str = "perplexity"
    # Stop after this many steps without shortening the LR schedule (for stop-and-resume).
    exit_interval: Optional[int] = None
    # On this signal, save a checkpoint at the next step boundary and exit (megatron's signal handler):
    # Slurm sends SIGTERM at preemption and at the time limit, or what `--signal` names ahead of it.
    # None: no handler.
    exit_signal: Optional[str] = "SIGTERM"
    # Save and exit after this many minutes of training (set it inside the job's time limit).
    exit_duration_in_mins: Optional[int] = None

@dataclass
class CheckpointConfig:
    save: Optional[str] = None
    load: Optional[str] = None
    save_interval: Optional[int] = None
    # The iteration to load; None: the newest complete one (an incomplete newest is set aside).
    step: Optional[int] = None
    # Write checkpoints in a background process (megatron's --async-save). None: on with a GPU, off on
    # CPU, where dist_checkpointing's async writer calls torch.cuda.synchronize().
    async_save: Optional[bool] = None

@dataclass
class PretrainConfig:
    name: str = "twvlm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


def config_to_json(cfg: PretrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)


def config_from_record(raw: dict) -> PretrainConfig:
    """A PretrainConfig from its dict form (a run record); a section or field the record leaves out
    (an import records only what it decided) takes its default here."""
    return PretrainConfig(
        name=raw.get("name", PretrainConfig.name), model=ModelConfig(**raw.get("model", {})),
        data=DataConfig(**raw.get("data", {})), parallel=ParallelConfig(**raw.get("parallel", {})),
        trainer=TrainerConfig(**raw.get("trainer", {})), checkpoint=CheckpointConfig(**raw.get("checkpoint", {})),
    )


def config_from_json(text: str) -> PretrainConfig:
    return config_from_record(json.loads(text))
