"""The three callbacks megatron.training.pretrain needs: model provider, datasets provider, forward step.

They read the run's PretrainConfig (set once per process by `set_run_config`) for what megatron's
argument namespace has no field for: the preset, the freeze plan, the Energon dataset and tokenizer.
"""
from __future__ import annotations

import functools

import torch
from megatron.core import parallel_state
from megatron.training import get_args, print_rank_0
from megatron.training.arguments import core_transformer_config_from_args

from nemo_twvlm.data.loader import train_loader, val_loader
from nemo_twvlm.data.loader_state import decode_state, encode_state
from nemo_twvlm.data.mock import MockBatches
from nemo_twvlm.data.task_encoder import LlavaTaskEncoder
from nemo_twvlm.data.tokenizer import image_token_id, load_tokenizer
from nemo_twvlm.model.freeze import apply_freeze_plan
from nemo_twvlm.model.llava import build_llava
from nemo_twvlm.presets import get_preset
from nemo_twvlm.rundir import iteration_dir, loader_state_dir, loader_state_files, loader_state_name, resolve_local
from nemo_twvlm.training import step
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.in_training_eval import InTrainingEval
from nemo_twvlm.training.telemetry import StepTelemetry

_RUN: PretrainConfig | None = None
_EVALUATION: InTrainingEval | None = None


def set_run_config(cfg: PretrainConfig) -> None:
    global _RUN
    _RUN = cfg


def set_evaluation(evaluation: InTrainingEval | None) -> None:
    """The in-training evaluation whose baseline the first training step takes (None: none)."""
    global _EVALUATION
    _EVALUATION = evaluation


def run_config() -> PretrainConfig:
    if _RUN is None:
        raise RuntimeError("set_run_config() must be called before megatron.training.pretrain")
    return _RUN


@functools.cache
def _tokenizer():
    return load_tokenizer(resolve_local(run_config().data.tokenizer))


def _preset():
    preset = get_preset(run_config().model.preset)
    if len(_tokenizer()) > preset.language.vocab_size:
        raise ValueError(f"tokenizer {run_config().data.tokenizer} has {len(_tokenizer())} tokens but preset "
                         f"{preset.name!r} has vocab_size={preset.language.vocab_size}")
    return preset


def model_provider(pre_process=True, post_process=True, vp_stage=None, config=None, pg_collection=None):
    args, cfg = get_args(), run_config()
    model = build_llava(
        _preset(),
        base_config=config if config is not None else core_transformer_config_from_args(args),
        image_token_index=image_token_id(_tokenizer()),
        use_te=args.transformer_impl == "transformer_engine",
        pre_process=pre_process,
        post_process=post_process,
        # The vision encoder and projector live on the first pipeline stage only.
        add_encoder=pre_process,
        pg_collection=pg_collection,
        vp_stage=vp_stage,
        max_sequence_length=cfg.data.seq_length,
    )
    apply_freeze_plan(model, cfg.model.freeze_plan, cfg.model.train_vision)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print_rank_0(f"nemo_twvlm: preset={cfg.model.preset} freeze_plan={cfg.model.freeze_plan} "
                 f"trainable={trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters")
    return model


class SavableIterator:
    """An Energon savable loader as the iterator megatron.training expects for --dataloader-type external;
    megatron saves its state through `save_state()` alongside each checkpoint."""

    def __init__(self, loader):
        self.loader = loader
        self._iterator = iter(loader)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iterator)

    def save_state(self):
        return encode_state(self.loader.save_state_rank())


def _load_loader_state(path: str):
    return decode_state(torch.load(path, weights_only=True)["dataloader_state_dict"])


def _restore_loader_state(loader, load_dir: str, iteration: int, dp_rank: int, dp_size: int) -> None:
    """Restore this DP rank's loader state from where megatron's maybe_save_dataloader_state wrote it
    (rundir.loader_state_files: one file per DP rank)."""
    saved = loader_state_files(load_dir, iteration)
    if not saved:
        state_dir = iteration_dir(loader_state_dir(load_dir), iteration)
        print_rank_0(f"nemo_twvlm: WARNING no loader state in {state_dir}; data restarts from the beginning")
        return
    if len(saved) != dp_size:
        raise RuntimeError(
            f"{load_dir} was saved at data-parallel size {len(saved)} and this run has {dp_size}: the data-loader "
            f"state is per data-parallel rank, so resume at the size the run started with, or start a new run "
            f"from it with model.init_from={load_dir}")
    (state_path,) = [p for p in saved if p.name == loader_state_name(dp_rank)]
    loader.restore_state_rank(_load_loader_state(state_path))
    print_rank_0(f"nemo_twvlm: restored data loader state from {state_path}")


def _encoder() -> LlavaTaskEncoder:
    cfg = run_config()
    cp = cfg.parallel.context_parallel
    # Context parallelism splits every packed segment into 2*cp chunks, so each must divide evenly.
    return LlavaTaskEncoder(_tokenizer(), _preset(), cfg.data.seq_length, segment_multiple=2 * cp if cp > 1 else 1)


def datasets_provider(train_val_test_num_samples, vp_stage=None):
    args, cfg = get_args(), run_config()
    if cfg.data.mock:
        # Every rank of a data-parallel replica must see the same rows: seed by the DP rank.
        return MockBatches(
            _preset(), seq_length=cfg.data.seq_length, micro_batch_size=cfg.data.micro_batch_size,
            images_per_sample=cfg.data.mock_images_per_sample, image_token_index=image_token_id(_tokenizer()),
            seed=cfg.data.seed + parallel_state.get_data_parallel_rank(),
        ), None, None
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    loader = train_loader(
        cfg.data.path, _encoder(), micro_batch_size=cfg.data.micro_batch_size, packing=cfg.data.packing,
        packing_buffer_size=cfg.data.packing_buffer_size, rank=dp_rank, world_size=dp_size,
        num_workers=cfg.data.num_workers, seed=cfg.data.seed,
    )
    if args.iteration > 0 and args.load and not args.finetune:
        _restore_loader_state(loader, args.load, args.iteration, dp_rank, dp_size)
    valid = None
    if cfg.data.val_path and args.eval_iters > 0:
        valid = SavableIterator(val_loader(cfg.data.val_path, _encoder(), micro_batch_size=cfg.data.micro_batch_size,
                                           rank=dp_rank, world_size=dp_size))
    return SavableIterator(loader), valid, None


datasets_provider.is_distributed = True


@functools.cache
def _telemetry() -> StepTelemetry | None:
    cfg = run_config()
    if not (cfg.trainer.tensorboard_dir or cfg.trainer.wandb_project):
        return None
    return StepTelemetry(_preset(), seq_length=cfg.data.seq_length, train_vision=cfg.model.train_vision,
                         data_parallel=parallel_state.get_data_parallel_world_size(),
                         world_size=torch.distributed.get_world_size())


def exclude_from_step_time(seconds: float) -> None:
    if _telemetry() is not None:
        _telemetry().exclude(seconds)


def flush_telemetry() -> None:
    """Write the last iteration's numbers (the next one would otherwise write them)."""
    if _RUN is not None and torch.distributed.is_initialized() and _telemetry() is not None:
        _telemetry().flush()


def _on_training_batch(iteration: int, model):
    """What the forward step does with a training batch: the baseline before the first step, telemetry."""
    if _EVALUATION is not None and _EVALUATION.baseline is None:
        _EVALUATION.before_first_step(model)
    telemetry = _telemetry()
    return None if telemetry is None else functools.partial(telemetry.record, iteration)


def forward_step(data_iterator, model, return_schedule_plan=False):
    cfg, args = run_config(), get_args()
    iteration = args.curr_iteration if hasattr(args, "curr_iteration") else 0
    # Megatron's validation runs this step too, in eval mode: only training batches are counted.
    on_batch = _on_training_batch(iteration, model) if model.training else None
    sample_log = step.SampleLog(cfg.data.sample_log) if cfg.data.sample_log and parallel_state.get_data_parallel_rank() == 0 \
        and parallel_state.get_tensor_model_parallel_rank() == 0 else None
    return step.forward_step(
        data_iterator, model, image_token_index=image_token_id(_tokenizer()),
        num_image_tokens=_preset().num_image_tokens, use_te=args.transformer_impl == "transformer_engine",
        seq_length=cfg.data.seq_length,
        # Pipeline stages exchange fixed-shape activations, so the model pads every row to seq_length.
        fixed_length=args.pipeline_model_parallel_size > 1,
        shard_factor=step.shard_factor(tensor_parallel=args.tensor_model_parallel_size,
                                       context_parallel=args.context_parallel_size,
                                       sequence_parallel=args.sequence_parallel),
        sample_log=sample_log, iteration=iteration, on_batch=on_batch,
    )
