"""Our checkpoint (any TP/PP split) -> a `LlavaForConditionalGeneration` directory plain transformers loads.

The checkpoint, whatever TP/PP split it was saved with, is read a layer at a time into the tensors of a
TP=1 model (`megatron_io.stream_checkpoint`); each goes through the mapping table in reverse straight
into its place in the output files, planned up front, and is released: memory holds one layer, not the
model and not an output shard. An imported checkpoint gives back its HF source exactly: the sidecar
supplies the tensors the model never used, the import record the names, dtypes and config.

Without a sidecar (a model that never came from HF) the exported vision tower has `num_built_layers`
layers and `vision_feature_layer=-1`: its last layer's output is exactly the feature layer of the
preset's deeper tower, and the layers after it never influenced the model. Its post_layernorm (unused by
LLaVA, present in every CLIP) is written as the identity so that loading reports no missing weights.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from nemo_twvlm.conversion import megatron_io
from nemo_twvlm.conversion.hf_config import export_llava_config
from nemo_twvlm.conversion.hf_io import PlannedSafetensorsWriter, dtype_from_name, dtype_name, parse_size
from nemo_twvlm.conversion.layout import (
    FILES_DIR, HF_DIR, SIDECAR_FILE, prepare_destination, read_source_record, run_dir_errors,
)
from nemo_twvlm.conversion.mapping import ConversionError, match
from nemo_twvlm.conversion.sources import HUB_NAMING, output_name
from nemo_twvlm.data.tokenizer import (
    GENERATION_CONFIG, IMAGE_TOKEN, TOKENIZER_FILES, image_token_id, load_tokenizer,
)
from nemo_twvlm.presets import ModelPreset
from nemo_twvlm.rundir import (
    checkpoint_preset, checkpoint_tokenizer, iteration_dir, latest_iteration, read_run_record,
)

# Llama-3 turns; a message's content is a string or a list of {"type": "image"} / {"type": "text"} parts,
# and an image part becomes the `<image>` placeholder the processor expands.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def export_hf(src, dst, *, max_shard_size: str | int = "5GB") -> Path:
    src = Path(src)
    with run_dir_errors():
        iteration = latest_iteration(src)
        preset = checkpoint_preset(src)
        tokenizer_dir = Path(checkpoint_tokenizer(src))
    tokenizer = load_tokenizer(tokenizer_dir)
    image_token_index = image_token_id(tokenizer)
    record = read_source_record(src)
    if record is not None and record["image_token_index"] != image_token_index:
        raise ConversionError(f"tokenizer {tokenizer_dir} has <image>={image_token_index} but the checkpoint was "
                              f"imported with image_token_index={record['image_token_index']}")
    dtype = dtype_from_name(record["dtype"]) if record else _training_dtype(src)
    dst = prepare_destination(dst)

    megatron_io.init_single()
    model = megatron_io.build_model(preset, dtype=dtype, image_token_index=image_token_index)
    sidecar = src / HF_DIR / SIDECAR_FILE
    _write_tensors(model, iteration_dir(src, iteration), preset, dst, record, sidecar if sidecar.exists() else None,
                   dtype, parse_size(max_shard_size))
    del model

    source_config = record["config"] if record else None
    config = export_llava_config(preset, image_token_index=image_token_index, dtype=dtype_name(dtype),
                                 tokenizer=tokenizer, source=source_config, full_vision_tower=sidecar.exists())
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _write_processor(preset, tokenizer, tokenizer_dir, dst)
    if record is not None:
        for path in sorted((src / HF_DIR / FILES_DIR).iterdir()):
            shutil.copyfile(path, dst / path.name)  # the source's own processor/generation configs win
    _write_generation_config(tokenizer, dst)
    return dst


def _write_generation_config(tokenizer, dst: Path) -> None:
    """generation_config.json stops where chat and evaluation stop (inference.prompt.stop_ids); the
    source's other settings (sampling defaults) are kept."""
    from nemo_twvlm.inference.prompt import read_generation_config, stop_ids

    path = dst / GENERATION_CONFIG
    config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else read_generation_config(tokenizer)
    stops = list(stop_ids(tokenizer))
    config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=stops if len(stops) > 1 else stops[0])
    if tokenizer.pad_token_id is not None:
        config["pad_token_id"] = tokenizer.pad_token_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _training_dtype(src: Path) -> torch.dtype:
    return torch.bfloat16 if read_run_record(src)["trainer"]["precision"] in ("bf16", "fp8") else torch.float32


def _plan(model, preset: ModelPreset, record: dict | None, sidecar: Path | None, dtype: torch.dtype):
    """Every output tensor as (canonical name, shape, dtype), before any is read: shapes come from running
    the mapping on meta tensors of the model's shapes, and from the sidecar's header."""
    dtypes = {name: dtype_from_name(d) for name, d in record["dtypes"].items()} if record else {}
    plan = []
    for megatron_name, tensor in megatron_io.parameters(model):
        rule, layer = match(megatron_name)
        meta = torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
        for name, value in zip(rule.hf_names(layer, preset), rule.megatron_to_hf(meta, preset)):
            plan.append((name, tuple(value.shape), dtypes.get(name, dtype)))
    if sidecar is not None:
        with safe_open(str(sidecar), framework="pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                plan.append((name, tuple(piece.get_shape()), dtypes[name]))
    else:
        hidden = preset.vision.hidden_size
        plan += [("vision_tower.post_layernorm.weight", (hidden,), dtype),
                 ("vision_tower.post_layernorm.bias", (hidden,), dtype)]
    if record is not None and {name for name, _, _ in plan} != set(record["dtypes"]):
        planned = {name for name, _, _ in plan}
        missing, extra = sorted(set(record["dtypes"]) - planned), sorted(planned - set(record["dtypes"]))
        raise ConversionError(f"export would not reproduce the imported tensors: missing {missing[:5]}, "
                              f"extra {extra[:5]}")
    return sorted(plan)


@torch.no_grad()
def _write_tensors(model, checkpoint_dir: Path, preset: ModelPreset, dst: Path, record: dict | None,
                   sidecar: Path | None, dtype: torch.dtype, max_shard_bytes: int) -> None:
    naming = record["naming"] if record else HUB_NAMING
    plan = _plan(model, preset, record, sidecar, dtype)
    dtypes = {name: d for name, _, d in plan}
    writer = PlannedSafetensorsWriter(dst, [(output_name(n, naming), s, d) for n, s, d in plan], max_shard_bytes)

    def write(name: str, tensor: torch.Tensor) -> None:
        writer.write(output_name(name, naming), tensor.to(dtypes[name]))

    for megatron_name, tensor in megatron_io.stream_checkpoint(model, checkpoint_dir):
        rule, layer = match(megatron_name)
        for name, value in zip(rule.hf_names(layer, preset), rule.megatron_to_hf(tensor, preset)):
            write(name, value)
    if sidecar is not None:
        with safe_open(str(sidecar), framework="pt") as f:
            for name in f.keys():
                write(name, f.get_tensor(name))
    else:
        write("vision_tower.post_layernorm.weight", torch.ones(preset.vision.hidden_size))
        write("vision_tower.post_layernorm.bias", torch.zeros(preset.vision.hidden_size))
    writer.close()


def processor_chat_template(tokenizer) -> str:
    """CHAT_TEMPLATE (images as content parts) where it renders text conversations exactly as the
    tokenizer's own template does, which is what the model was trained on; else the tokenizer's own
    (`<image>` then goes into the text)."""
    from nemo_twvlm.data.conversation import render

    if tokenizer.chat_template is None:
        return CHAT_TEMPLATE
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": f"{IMAGE_TOKEN}\nq"},
                {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]
    ours = render(tokenizer, messages, generation_prompt=True)
    theirs = tokenizer.apply_chat_template(messages, chat_template=CHAT_TEMPLATE, tokenize=True,
                                           add_generation_prompt=True)
    theirs = list(theirs["input_ids"] if hasattr(theirs, "keys") else theirs)
    return CHAT_TEMPLATE if ours == theirs else tokenizer.chat_template


def _write_processor(preset: ModelPreset, tokenizer, tokenizer_dir: Path, dst: Path) -> None:
    """A LlavaProcessor: CLIP image processing at the preset's size and statistics, the tokenizer, and a
    chat template that places images (`processor_chat_template`); then the tokenizer's own files,
    verbatim (except a text-only chat_template.jinja, which would replace the processor's)."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    vision = preset.vision
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": vision.image_size}, crop_size={"height": vision.image_size, "width": vision.image_size},
        image_mean=list(vision.mean), image_std=list(vision.std), do_center_crop=True, resample=3,
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vision.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=processor_chat_template(tokenizer), image_token=IMAGE_TOKEN)
    processor.save_pretrained(str(dst))
    image_processor.save_pretrained(str(dst))  # preprocessor_config.json, for transformers 4.x readers
    for name in TOKENIZER_FILES:
        if name != "chat_template.jinja" and (tokenizer_dir / name).exists():
            shutil.copyfile(tokenizer_dir / name, dst / name)
