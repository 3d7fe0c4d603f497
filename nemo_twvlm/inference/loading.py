"""A checkpoint's model with its tokenizer and preset, ready for generation and scoring: what chat,
evaluation (harness, attribute probe, model judge) and the demo load. Everything is read through
nemo_twvlm.rundir, so a training checkpoint and an imported one load alike."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm import rundir
from nemo_twvlm.compat.distributed import init_single_process
from nemo_twvlm.data.tokenizer import image_token_id, load_tokenizer
from nemo_twvlm.model.llava import build_llava
from nemo_twvlm.presets import ModelPreset


def load_model_weights(model, save_dir: str, iteration: int | None = None) -> int:
    """Load the model weights of a torch_dist checkpoint into `model` (any TP/PP split it was saved with
    is resharded by dist_checkpointing). Returns the iteration loaded."""
    from megatron.core import dist_checkpointing

    iteration = rundir.latest_iteration(save_dir) if iteration is None else iteration
    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()},
                                     str(rundir.iteration_dir(save_dir, iteration)))
    result = model.load_state_dict(loaded["model"], strict=False)
    # TE layers carry `_extra_state` (FP8 metadata) that a checkpoint may legitimately lack.
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {save_dir} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return iteration


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    preset: ModelPreset
    image_token_index: int
    record: dict  # the checkpoint's run record (rundir.read_run_record)


def load_for_inference(save_dir: str, iteration: int | None = None) -> LoadedModel:
    """The model of a checkpoint (its newest iteration unless told) in eval mode, in this process as a
    one-rank world."""
    record = rundir.read_run_record(save_dir)
    seed = record.get("trainer", {}).get("seed")  # the run's; a record that names none: the default one
    init_single_process() if seed is None else init_single_process(seed)
    tokenizer = load_tokenizer(rundir.checkpoint_tokenizer(save_dir))
    preset = rundir.checkpoint_preset(save_dir)
    image_id = image_token_id(tokenizer)
    model = build_llava(preset, image_token_index=image_id)
    load_model_weights(model, save_dir, iteration)
    model.eval()
    return LoadedModel(model, tokenizer, preset, image_id, record)
