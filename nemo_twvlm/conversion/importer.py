"""HF -> our distributed checkpoint, at any TP/PP split.

Everything that can be wrong with the source (architecture, tensor names, shapes, tokenizer) is checked
before a model is built. Each rank then builds its shard of the model (megatron decides the shapes), fills
it tensor by tensor from the source, reading only the slice it owns, and the ranks save together with
dist_checkpointing. Peak memory per rank is its model shard plus one source tensor.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from nemo_twvlm.compat.distributed import free_port
from nemo_twvlm.conversion import megatron_io
from nemo_twvlm.conversion.hf_config import check_against, infer_preset, llava_config
from nemo_twvlm.conversion.hf_io import dtype_name
from nemo_twvlm.conversion.layout import FILES_DIR, HF_DIR, SIDECAR_FILE, SOURCE_FILE, prepare_destination
from nemo_twvlm.conversion.mapping import ConversionError, expected_hf_names, match, tp_slice
from nemo_twvlm.conversion.sources import HUB_NAMING, HFSource, SourceSpec, llava_canonical_name, open_source, reopen
from nemo_twvlm.conversion.vocab import ADDED_ROWS_FILE, VocabPlan, load_added_rows, plan_vocab, write_added_rows
from nemo_twvlm.data.tokenizer import (
    GENERATION_CONFIG, TokenizerError, add_image_token, check_chat_template, copy_tokenizer, load_tokenizer,
)
from nemo_twvlm.presets import PRESETS, ModelPreset, save_preset
from nemo_twvlm.rundir import TOKENIZER_DIR, TRACKER_FILE, iteration_dir, write_run_record

# Buffers some checkpoints carry (older transformers saved them); the model recomputes them.
_BUFFER_SUFFIXES = (".position_ids", ".rotary_emb.inv_freq")


def import_hf(src, dst, *, tp: int = 1, pp: int = 1, preset: ModelPreset | str | None = None,
              tokenizer: str | Path | None = None, image_token: str = "reserved", seed: int = 1234) -> ModelPreset:
    """Convert a llava-hf directory, or a (CLIP vision dir, Llama dir) pair, into a checkpoint at `dst`
    split `tp` x `pp` ways. Returns the preset the checkpoint records (inferred from the HF configs, or
    `preset` if given and matching field for field).

    `image_token` says how `<image>` enters a tokenizer that lacks it (the published Llama-3 ones):
    "reserved" (a reserved special token, the vocabulary keeps its size) or "append" (a new id; the
    embedding and output rows grow, see conversion.vocab). A tokenizer that has one keeps it."""
    source = open_source(src, seed=seed)
    chosen = _choose_preset(source, src, preset)
    megatron_io.check_parallel(chosen, tp, pp)
    dtype = source.dtype()
    if dtype not in megatron_io.DTYPES.values():
        raise ConversionError(f"language_model.embed_tokens.weight has dtype {dtype}; expected float32, bfloat16 "
                              f"or float16")
    with tempfile.TemporaryDirectory(prefix="twvlm_import_") as staging:
        staged_tokenizer = Path(staging, TOKENIZER_DIR)
        vocab = _prepare_tokenizer(source, tokenizer, image_token, tp, staged_tokenizer)
        if vocab.grows:
            added_rows = Path(staging, ADDED_ROWS_FILE)
            write_added_rows(source, vocab, added_rows, seed)
            source.spec = dataclasses.replace(source.spec, added_rows=str(added_rows))
            source.grow_vocab(load_added_rows(str(added_rows)))
            chosen = dataclasses.replace(chosen.with_vocab_size(vocab.model_rows), name="imported")
        sidecar = plan_tensors(source, chosen)
        megatron_io.check_parallel(chosen, tp, pp)
        dst = prepare_destination(dst)
        job = RankJob(source.spec, chosen, tp, pp, dtype_name(dtype), vocab.record.id,
                      str(iteration_dir(dst, 0)), free_port(), seed)
        if tp * pp == 1:
            megatron_io.init_single()
            convert_rank(job, source)
        else:
            megatron_io.spawn(_rank_main, tp * pp, job)
        _write_hf_record(source, dst, sidecar, vocab.record.id, dtype)
        _write_run_files(chosen, dst, staged_tokenizer, tp, pp, dtype, seed)
    (dst / TRACKER_FILE).write_text("0")  # last: a checkpoint without it is incomplete
    return chosen


def _choose_preset(source: HFSource, src, preset) -> ModelPreset:
    processor = source.side_files.get("preprocessor_config.json")
    mean = std = None
    if processor is not None:
        raw = json.loads(processor.read_text(encoding="utf-8"))
        mean, std = raw.get("image_mean"), raw.get("image_std")
    reference = " + ".join(map(str, src)) if isinstance(src, (tuple, list)) else str(src)
    inferred = infer_preset(source.config, image_mean=mean, image_std=std, hf_reference=reference)
    return check_against(inferred, preset) if preset is not None else inferred


def _prepare_tokenizer(source: HFSource, tokenizer, image_token: str, tp: int, staged: Path) -> VocabPlan:
    """The checkpoint's tokenizer, with `<image>`, written to `staged`; the vocabulary the model gets."""
    directory = Path(tokenizer) if tokenizer is not None else source.tokenizer_dir
    if directory is None:
        raise ConversionError(f"no tokenizer files in {', '.join(source.spec.paths)}; pass tokenizer=DIR")
    config_where = str(Path(source.spec.paths[-1]) / "config.json")
    try:
        record = add_image_token(directory, staged, image_token)
        if source.spec.kind == "llava":
            configured = source.config.get("image_token_index", source.config.get("image_token_id"))
            if configured != record.id:
                raise ConversionError(f"config.json image_token_index={configured} but tokenizer {directory} has "
                                      f"<image>={record.id}")
        check_chat_template(load_tokenizer(staged), str(directory), required=False)
    except TokenizerError as error:
        raise ConversionError(str(error)) from None
    for name, path in source.side_files.items():
        if name == GENERATION_CONFIG and not (staged / name).exists():
            shutil.copyfile(path, staged / name)  # beside the tokenizer: inference reads its stop tokens there
    rows = source.tensors["language_model.embed_tokens.weight"].shape[0] \
        if "language_model.embed_tokens.weight" in source.tensors else source.config["text_config"]["vocab_size"]
    return plan_vocab(record, rows, tp, tokenizer_dir=directory, config_where=config_where)


def _hf_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every parameter transformers builds for this config (on the meta device)."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config(config))
    return {llava_canonical_name(name): tuple(t.shape) for name, t in model.state_dict().items()}


def plan_tensors(source: HFSource, preset: ModelPreset) -> list[str]:
    """Check every source tensor against the config; return the ones the model leaves to the sidecar."""
    shapes = _hf_shapes(source.config)
    used = expected_hf_names(preset)
    where = " + ".join(source.spec.paths)
    missing = [name for name in used if name not in source.tensors]
    if missing:
        details = ", ".join(f"{name} (expected shape {shapes.get(name)})" for name in missing[:5])
        raise ConversionError(f"{where}: missing {len(missing)} tensor(s): {details}")
    for name, info in source.tensors.items():
        if name in shapes:
            if info.shape != shapes[name]:
                raise ConversionError(f"{where}: tensor {info.name!r} has shape {info.shape}; the config "
                                      f"expects {shapes[name]}")
        elif not name.endswith(_BUFFER_SUFFIXES):
            raise ConversionError(f"{where}: unexpected tensor {info.name!r} with shape {info.shape} "
                                  f"(not part of a LlavaForConditionalGeneration with this config)")
    if source.dropped:
        warnings.warn(f"{where}: {len(source.dropped)} CLIP text-tower tensors are not part of LLaVA and are "
                      f"not carried over (e.g. {source.dropped[0]!r})", stacklevel=3)
    used_set = set(used)
    return [name for name in source.tensors if name not in used_set]


@dataclass(frozen=True)
class RankJob:
    spec: SourceSpec
    preset: ModelPreset
    tp: int
    pp: int
    dtype: str
    image_token_index: int
    checkpoint_dir: str
    port: int
    seed: int


def _rank_main(rank: int, world_size: int, job: RankJob) -> None:
    megatron_io.init_ranks(rank, world_size, job.port, job.tp, job.pp, job.seed)
    try:
        convert_rank(job, reopen(job.spec))
    finally:
        torch.distributed.destroy_process_group()


def convert_rank(job: RankJob, source: HFSource) -> None:
    from megatron.core import parallel_state

    model = megatron_io.build_model(job.preset, dtype=megatron_io.DTYPES[job.dtype],
                                    image_token_index=job.image_token_index, tp=job.tp, pp=job.pp)
    fill_model(model, source, job.preset, parallel_state.get_tensor_model_parallel_rank(), job.tp)
    megatron_io.save_checkpoint(model, Path(job.checkpoint_dir))


@torch.no_grad()
def fill_model(model, source: HFSource, preset: ModelPreset, tp_rank: int, tp_size: int) -> None:
    lossy, nonfinite = [], []
    for name, param in megatron_io.parameters(model):
        rule, layer = match(name)
        sources = rule.hf_names(layer, preset)
        parts = []
        for hf_name in sources:
            bounds = tp_slice(source.tensors[hf_name].shape, rule.tp_dim, tp_rank, tp_size)
            parts.append(source.read(hf_name, rule.tp_dim, *bounds) if bounds else source.read(hf_name))
        value = rule.hf_to_megatron(parts, preset)
        if tuple(value.shape) != tuple(param.shape):
            shapes = ", ".join(f"{n} {tuple(source.tensors[n].shape)}" for n in sources)
            raise ConversionError(f"megatron tensor {name!r}: expected shape {tuple(param.shape)} on TP rank "
                                  f"{tp_rank}/{tp_size}, got {tuple(value.shape)} from {shapes}")
        if value.dtype != param.dtype and not torch.equal(value.to(param.dtype).to(value.dtype), value):
            lossy.append(name)
        if value.is_floating_point() and (bad := value.numel() - int(torch.isfinite(value).sum())):
            nonfinite.append(f"{' + '.join(sources)} ({bad} of {value.numel()} values)")
        param.copy_(value)
        del parts, value
    if nonfinite:
        rank = f" (TP rank {tp_rank}/{tp_size}'s slices)" if tp_size > 1 else ""
        warnings.warn(f"{len(nonfinite)} tensors hold NaN or Inf{rank}, imported as they are: "
                      f"{'; '.join(nonfinite)}", stacklevel=2)
    if lossy:
        warnings.warn(f"{len(lossy)} tensors lose precision in the model dtype (e.g. {lossy[0]}); an export "
                      f"will not reproduce them bit for bit", stacklevel=2)


def _write_hf_record(source: HFSource, dst: Path, sidecar: list[str], image_token_index: int,
                     dtype: torch.dtype) -> None:
    """What export needs to give back the HF checkpoint exactly: unused tensors, names, dtypes, configs."""
    record_dir = dst / HF_DIR
    (record_dir / FILES_DIR).mkdir(parents=True)
    if sidecar:
        save_file({name: source.read(name) for name in sidecar}, str(record_dir / SIDECAR_FILE),
                  metadata={"format": "pt"})
    for name, path in source.side_files.items():
        shutil.copyfile(path, record_dir / FILES_DIR / name)
    record = {
        "kind": source.spec.kind,
        "paths": list(source.spec.paths),
        "config": source.config,
        "image_token_index": image_token_index,
        "dtype": dtype_name(dtype),
        "naming": {**HUB_NAMING, **source.naming},
        "dtypes": {name: dtype_name(info.dtype) for name, info in source.tensors.items()},
        "sidecar": sidecar,
    }
    (record_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _write_run_files(preset: ModelPreset, dst: Path, tokenizer_dir: Path, tp: int, pp: int, dtype, seed: int) -> None:
    """The run directory's files, so the checkpoint reads as a trained one: the run record holds what the
    import decided (rundir: the rest of a training config takes its defaults when read)."""
    copy_tokenizer(tokenizer_dir, dst / TOKENIZER_DIR)
    preset_path = save_preset(preset, dst)
    write_run_record(dst, {
        "name": f"import_{preset.name}",
        # A registered size by name; anything else by its preset file, so training can build it too.
        "model": {"preset": preset.name if PRESETS.get(preset.name) == preset else str(preset_path.resolve())},
        "data": {"tokenizer": str((dst / TOKENIZER_DIR).resolve())},
        "parallel": {"tensor_parallel": tp, "pipeline_parallel": pp},
        "trainer": {"precision": "fp32" if dtype == torch.float32 else "bf16", "seed": seed},
    })
