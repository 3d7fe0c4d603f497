"""Where a run starts, and what it inherits from there.

A stage starts from a checkpoint: `model.init_from` (an import of the published weights, or the stage
before), or, when it resumes, its own `checkpoint.save`. That checkpoint's tokenizer is the run's tokenizer
(`data.tokenizer` unset means exactly that), and its vocabulary size the model's: an import with
`image_token=append` has grown rows that the named preset (128,256 for Llama-3) does not. Everything
else about the architecture must match `model.preset`, and a `data.tokenizer` that is given must be the
checkpoint's tokenizer, compared by content (`data.tokenizer.fingerprint`), not by path. Each problem is
a `ConfigError` naming both sides, raised before a job is launched.

A run starts from the newest *complete* iteration of its start checkpoint: one whose dist-checkpoint
metadata reads and whose data files hold every byte the metadata points at. An iteration left half
written (a job killed while saving, a full disk) is named in a message and the run loads the one before
it (`checkpoint.step`, megatron's `--ckpt-step`); when the run resumes its own save, the training
process moves the incomplete ones aside (`set_aside_incomplete`) so that it can save those iterations
again.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from nemo_twvlm import rundir
from nemo_twvlm.presets import PRESET_FILE, architecture_diff, get_preset
from nemo_twvlm.training.config import PretrainConfig
from nemo_twvlm.training.validate import ConfigError, validate


def start_checkpoint(cfg: PretrainConfig) -> str | None:
    """The checkpoint the run loads: its own save (a resume) if one is there, else checkpoint.load,
    else model.init_from, as megatron.training picks (training.arguments)."""
    for path in (cfg.checkpoint.save if cfg.model.init_from and not cfg.checkpoint.load else None,
                 cfg.checkpoint.load, cfg.model.init_from):
        if path and rundir.is_checkpoint(path):
            return path
    return None


def check_run(cfg: PretrainConfig, *, world_size: int, local: bool = True,
              te_available: bool | None = None) -> PretrainConfig:
    """The one check before a model is built (a launch, a local run, a dry run): `cfg` resolved from
    the checkpoint it starts from and validated, paths included when the run starts on this machine.
    Raises one `ConfigError` with every problem of both."""
    try:
        resolved = resolve_start(cfg, local=local)
    except ConfigError as error:
        try:
            validate(cfg, world_size=world_size, te_available=te_available, paths=local)
        except ConfigError as more:
            raise ConfigError([*error.errors, *more.errors]) from None
        raise
    validate(resolved, world_size=world_size, te_available=te_available, paths=local)
    return resolved


def resolve_start(cfg: PretrainConfig, *, local: bool = True) -> PretrainConfig:
    """`cfg` with the tokenizer and vocabulary of the checkpoint it starts from.

    `local` False (a job checked on a login node before it queues): a start checkpoint that is not on
    this machine is left for the job to resolve when it starts."""
    parent = start_checkpoint(cfg)
    if parent is None:
        errors = []
        if cfg.model.init_from and local:
            errors.append(f"model.init_from={cfg.model.init_from!r}: no checkpoint there (no "
                          f"{rundir.TRACKER_FILE}); import the published weights with `nemo twvlm import_hf` or "
                          f"train the stage before first")
        if cfg.checkpoint.load and local:
            errors.append(f"checkpoint.load={cfg.checkpoint.load!r}: no checkpoint there (no {rundir.TRACKER_FILE})")
        if not cfg.data.tokenizer and not cfg.model.init_from:
            errors.append("data.tokenizer='': no tokenizer, and no model.init_from checkpoint to take it from")
        if errors:
            raise ConfigError(errors)
        return cfg
    try:
        model = _model_preset(cfg, parent)
        tokenizer = _tokenizer(cfg, parent)
        step = cfg.checkpoint.step if cfg.checkpoint.step is not None else _resume_step(parent)
    except rundir.RunDirError as error:
        raise ConfigError([f"model.init_from={parent!r}: {error}"]) from None
    resolved = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, preset=model),
                                   data=dataclasses.replace(cfg.data, tokenizer=tokenizer),
                                   checkpoint=dataclasses.replace(cfg.checkpoint, step=step))
    _check_vocabulary(resolved)
    return resolved


def _model_preset(cfg: PretrainConfig, parent: str) -> str:
    """cfg's preset, or the parent's preset file where the two differ only in vocabulary size."""
    try:
        wanted = get_preset(cfg.model.preset)
    except ValueError as error:
        raise ConfigError([str(error)]) from None
    have = rundir.checkpoint_preset(parent)
    diffs = [d for d in architecture_diff(have, wanted) if not d.startswith("language.vocab_size:")]
    if diffs:
        raise ConfigError([f"model.preset={cfg.model.preset!r} does not match the checkpoint {parent} it starts "
                           f"from (checkpoint vs preset): {'; '.join(diffs)}"])
    if have.language.vocab_size == wanted.language.vocab_size:
        return cfg.model.preset
    preset_file = Path(parent, PRESET_FILE)
    return str(preset_file.resolve()) if preset_file.is_file() else rundir.read_run_record(parent)["model"]["preset"]


def _tokenizer(cfg: PretrainConfig, parent: str) -> str:
    from nemo_twvlm.data.tokenizer import fingerprint, load_tokenizer

    theirs = rundir.checkpoint_tokenizer(parent)
    if not cfg.data.tokenizer:
        return theirs
    given = rundir.resolve_local(cfg.data.tokenizer)
    if Path(given).resolve() == Path(theirs).resolve():
        return given
    loaded = {}
    for field, path in (("data.tokenizer", given), (f"the tokenizer of {parent}", theirs)):
        try:
            loaded[field] = load_tokenizer(path)
        except (OSError, ValueError) as error:
            raise ConfigError([f"{field}={path!r} cannot be loaded: {str(error).splitlines()[0]}"]) from None
    ours, checkpoint = loaded.values()
    if fingerprint(ours) != fingerprint(checkpoint):
        raise ConfigError([f"data.tokenizer={cfg.data.tokenizer!r} ({len(ours)} tokens, fingerprint {fingerprint(ours)}) "
                           f"is not the tokenizer of the checkpoint {parent} ({theirs}: {len(checkpoint)} tokens, "
                           f"fingerprint {fingerprint(checkpoint)}); leave data.tokenizer unset to train with the "
                           f"checkpoint's tokenizer"])
    return given


def _check_vocabulary(cfg: PretrainConfig) -> None:
    from nemo_twvlm.data.tokenizer import TokenizerError, image_token_id, load_tokenizer

    vocab = get_preset(cfg.model.preset).language.vocab_size
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    try:
        image_id = image_token_id(tokenizer)
    except TokenizerError as error:
        raise ConfigError([f"data.tokenizer={cfg.data.tokenizer!r}: {error}"]) from None
    if image_id >= vocab or len(tokenizer) > vocab:
        raise ConfigError([f"data.tokenizer={cfg.data.tokenizer!r}: {len(tokenizer)} tokens with <image>={image_id} "
                           f"do not fit the model's vocabulary of {vocab} rows (model.preset={cfg.model.preset!r})"])


def is_complete(iteration_dir: Path) -> str | None:
    """None if the dist checkpoint at `iteration_dir` is whole, else what is wrong with it."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(str(iteration_dir)).read_metadata()
    except Exception as error:  # a missing or cut-off .metadata: torch raises whatever unpickling raised
        return f"its .metadata cannot be read ({type(error).__name__})"
    needed: dict[str, int] = {}
    for info in metadata.storage_data.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        path = iteration_dir / name
        have = path.stat().st_size if path.is_file() else -1
        if have < size:
            return f"{name} is {'missing' if have < 0 else f'{have} bytes of {size}'}"
    return None


def _saved_steps(directory: str) -> list[int]:
    return sorted((int(p.name[5:]) for p in Path(directory).glob("iter_*") if p.name[5:].isdigit()), reverse=True)


def _resume_step(parent: str) -> int | None:
    """None to load what the tracker names; else the newest complete iteration before it."""
    latest = rundir.latest_iteration(parent)
    steps = _saved_steps(parent)
    for step in [latest, *(s for s in steps if s < latest)]:
        directory = rundir.iteration_dir(parent, step)
        problem = "it does not exist" if not directory.is_dir() else is_complete(directory)
        if problem is None:
            return None if step == latest else step
        print(f"nemo_twvlm: WARNING checkpoint {directory} is incomplete ({problem}); "
              f"loading the iteration before it")
    raise rundir.RunDirError(f"no complete iteration in {parent} ({rundir.TRACKER_FILE} names {latest})")


def set_aside_incomplete(cfg: PretrainConfig) -> None:
    """Rename the incomplete iterations after `checkpoint.step` of a run resuming its own save to
    `iter_NNNNNNN.incomplete`: kept for a look, out of the way of the saves that redo them."""
    save, step = cfg.checkpoint.save, cfg.checkpoint.step
    if step is None or not save or start_checkpoint(cfg) != save:
        return
    for later in _saved_steps(save):
        directory = rundir.iteration_dir(save, later)
        if later > step and is_complete(directory) is not None:
            directory.rename(directory.with_name(directory.name + ".incomplete"))
