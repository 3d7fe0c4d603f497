"""What `import_hf` converts from: a llava-hf directory, or a CLIP vision directory plus a Llama directory.

Either way the source presents the same face: a LLaVA config, and every tensor under its canonical
name (see `mapping`) with lazy reads. For a CLIP + Llama pair the projector does not exist yet; it is
generated on read, N(0, 0.02) weights (megatron's default init_method_std) and zero biases, from a seed
and the tensor name, so every tensor-parallel rank generates the same full tensor and keeps its slice.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nemo_twvlm.conversion.hf_config import llava_config
from nemo_twvlm.conversion.hf_io import TensorInfo, TensorReader, tensor_files
from nemo_twvlm.conversion.mapping import ConversionError

SUPPORTED_MODEL_TYPES = ("llava", "llama", "clip_vision_model", "clip")

# Files copied verbatim from a source directory into the import record, and from there into an export.
SIDE_FILES = ("preprocessor_config.json", "processor_config.json", "chat_template.json", "chat_template.jinja",
              "generation_config.json")

# Key prefixes in llava checkpoints written by different transformers versions -> canonical prefix.
_LLAVA_PREFIXES = (
    ("model.vision_tower.vision_model.", "vision_tower."),
    ("model.vision_tower.", "vision_tower."),
    ("vision_tower.vision_model.", "vision_tower."),
    ("vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model."),
    ("language_model.model.", "language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("lm_head.", "lm_head."),
)
# How an export names tensors when no llava source recorded its own style: the llava-hf hub layout,
# which transformers 4.x and 5.x both load.
HUB_NAMING = {"vision_tower.": "vision_tower.vision_model.", "multi_modal_projector.": "multi_modal_projector.",
              "language_model.": "language_model.model.", "lm_head.": "language_model.lm_head."}
_CLIP_PREFIXES = (("vision_model.", "vision_tower."), ("", "vision_tower."))
# Parts of a full CLIPModel checkpoint that a LLaVA model has no place for.
_CLIP_TEXT_PARTS = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")
_LLAMA_PREFIXES = (("model.", "language_model."), ("lm_head.", "lm_head."))


def llava_canonical_name(name: str) -> str:
    """The canonical name of a tensor as any transformers version names it inside a LLaVA model."""
    found = _canonical(name, _LLAVA_PREFIXES)
    if found is None:
        raise ConversionError(f"{name!r} is not a LLaVA tensor name")
    return found[0]


def output_name(canonical: str, naming: dict[str, str]) -> str:
    """A canonical name in a given naming (canonical prefix -> prefix), e.g. HUB_NAMING."""
    prefix = canonical[: canonical.index(".") + 1]
    return naming[prefix] + canonical[len(prefix):]


def read_config(directory: Path) -> dict:
    path = Path(directory) / "config.json"
    if not path.exists():
        raise ConversionError(f"{path} not found: {directory} is not a Hugging Face model directory")
    return json.loads(path.read_text(encoding="utf-8"))


def check_model_type(config: dict, where: str, expected: tuple[str, ...]) -> str:
    model_type = config.get("model_type")
    if model_type not in expected:
        raise ConversionError(f"{where}: model_type={model_type!r} is not supported; expected one of "
                              f"{list(expected)} (nemo_twvlm converts CLIP ViT + Llama LLaVA models only)")
    return model_type


def _canonical(name: str, prefixes) -> tuple[str, str] | None:
    for source, canonical in prefixes:
        if name.startswith(source):
            return canonical + name[len(source):], source
    return None


@dataclass(frozen=True)
class SourceSpec:
    """A picklable description of a source, so tensor-parallel ranks can reopen it."""

    kind: str  # "llava" | "pair"
    paths: tuple[str, ...]
    seed: int = 1234
    # A grown vocabulary (image_token=append): the file of the rows appended to the source's.
    added_rows: str = ""


@dataclass
class HFSource:
    spec: SourceSpec
    config: dict  # a llava config.json dict (assembled from the two configs for a pair)
    tensors: dict[str, TensorInfo]  # canonical name -> where it lives
    naming: dict[str, str]  # canonical prefix -> the source's prefix (llava sources only)
    tokenizer_dir: Path | None
    side_files: dict[str, Path]
    dropped: list[str] = field(default_factory=list)  # CLIPModel text-tower tensors, not part of LLaVA
    _readers: list[TensorReader] = field(default_factory=list, repr=False)
    # name -> (the source's tensor, the rows grown after it)
    _added: dict[str, tuple[TensorInfo, torch.Tensor]] = field(default_factory=dict, repr=False)

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int | None = None) -> torch.Tensor:
        if name in self._added:
            return self._read_grown(name, dim, start, stop)
        return self._read(name, self.tensors[name], dim, start, stop)

    def _read(self, name: str, info: TensorInfo, dim: int | None, start: int, stop: int | None) -> torch.Tensor:
        if info.file == "":
            return _fresh_projector_tensor(name, info, self.spec.seed, dim, start, stop)
        for reader in self._readers:
            if reader.tensors.get(info.name) is info:
                return reader.read(info.name, dim, start, stop)
        raise AssertionError(name)

    def grow_vocab(self, added: dict[str, torch.Tensor]) -> None:
        """Append rows to the vocabulary tensors (see conversion.vocab); the config follows."""
        for name, rows in added.items():
            info = self.tensors[name]
            self._added[name] = (info, rows)
            self.tensors[name] = TensorInfo(info.file, info.name, (info.shape[0] + rows.shape[0], *info.shape[1:]),
                                            info.dtype)
        self.config["text_config"]["vocab_size"] = self.tensors["language_model.embed_tokens.weight"].shape[0]

    def _read_grown(self, name: str, dim: int | None, start: int, stop: int | None) -> torch.Tensor:
        if dim not in (None, 0):
            raise AssertionError(f"{name} is split along rows only")
        original, added = self._added[name]
        old_rows = original.shape[0]
        start, stop = (0, self.tensors[name].shape[0]) if dim is None else (start, stop)
        parts = [self._read(name, original, 0, start, min(stop, old_rows))] if start < old_rows else []
        if stop > old_rows:
            parts.append(added[max(0, start - old_rows): stop - old_rows])
        return torch.cat(parts).contiguous()

    def dtype(self) -> torch.dtype:
        """The checkpoint's working dtype: that of the language model's embedding."""
        return self.tensors["language_model.embed_tokens.weight"].dtype


def _fresh_projector_tensor(name, info, seed, dim, start, stop) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    if name.endswith(".bias"):
        tensor = torch.zeros(info.shape)
    else:
        tensor = torch.randn(info.shape, generator=generator) * 0.02
    tensor = tensor.to(info.dtype)
    return tensor if dim is None else tensor.narrow(dim, start, stop - start).contiguous()


def _index(reader: TensorReader, prefixes, where: str, *, drop=()) -> tuple[dict, dict, list]:
    tensors, naming, dropped = {}, {}, []
    for name, info in reader.tensors.items():
        if name.startswith(drop):
            dropped.append(name)
            continue
        found = _canonical(name, prefixes)
        if found is None:
            raise ConversionError(f"{where}: unexpected tensor {name!r} {tuple(info.shape)} (no LLaVA part holds it)")
        canonical, prefix = found
        if canonical in tensors:
            raise ConversionError(f"{where}: tensors {tensors[canonical].name!r} and {name!r} both map to {canonical!r}")
        tensors[canonical] = info
        naming.setdefault(canonical[: canonical.index(".") + 1], prefix)
    return tensors, naming, dropped


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def _side_files(directory: Path) -> dict[str, Path]:
    return {name: directory / name for name in SIDE_FILES if (directory / name).exists()}


def open_source(src, *, seed: int = 1234) -> HFSource:
    """`src`: a llava-hf directory, or a (CLIP directory, Llama directory) pair."""
    if isinstance(src, (tuple, list)):
        if len(src) != 2:
            raise ConversionError(f"src={src!r}: expected a llava directory or a (clip_dir, llama_dir) pair")
        return _open_pair(SourceSpec("pair", (str(src[0]), str(src[1])), seed))
    return _open_llava(SourceSpec("llava", (str(src),), seed))


def reopen(spec: SourceSpec) -> HFSource:
    source = _open_llava(spec) if spec.kind == "llava" else _open_pair(spec)
    if spec.added_rows:
        from nemo_twvlm.conversion.vocab import load_added_rows

        source.grow_vocab(load_added_rows(spec.added_rows))
    return source


def _open_llava(spec: SourceSpec) -> HFSource:
    directory = Path(spec.paths[0])
    config = read_config(directory)
    model_type = check_model_type(config, str(directory), SUPPORTED_MODEL_TYPES)
    if model_type != "llava":
        raise ConversionError(f"{directory}: model_type={model_type!r} is one half of a LLaVA model; pass "
                              f"src=(clip_dir, llama_dir) to build one from a CLIP and a Llama checkpoint")
    check_model_type(config.get("text_config", {}), f"{directory} text_config", ("llama",))
    check_model_type(config.get("vision_config", {}), f"{directory} vision_config", ("clip_vision_model",))
    reader = TensorReader(tensor_files(directory))
    tensors, naming, _ = _index(reader, _LLAVA_PREFIXES, str(directory))
    return HFSource(spec, config, tensors, naming, directory if _has_tokenizer(directory) else None,
                    _side_files(directory), _readers=[reader])


def _open_pair(spec: SourceSpec) -> HFSource:
    clip_dir, llama_dir = Path(spec.paths[0]), Path(spec.paths[1])
    clip_config = read_config(clip_dir)
    clip_type = check_model_type(clip_config, str(clip_dir), ("clip_vision_model", "clip"))
    llama_config = read_config(llama_dir)
    check_model_type(llama_config, str(llama_dir), ("llama",))
    vision_config = clip_config if clip_type == "clip_vision_model" else {
        "model_type": "clip_vision_model", **clip_config.get("vision_config", {})}

    clip_reader = TensorReader(tensor_files(clip_dir))
    prefixes = _CLIP_PREFIXES if clip_type == "clip_vision_model" else _CLIP_PREFIXES[:1]
    vision, _, dropped = _index(clip_reader, prefixes, str(clip_dir),
                                drop=_CLIP_TEXT_PARTS if clip_type == "clip" else ())
    llama_reader = TensorReader(tensor_files(llama_dir))
    language, _, _ = _index(llama_reader, _LLAMA_PREFIXES, str(llama_dir))

    config = {
        "model_type": "llava",
        "vision_config": vision_config,
        "text_config": llama_config,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
    }
    resolved = llava_config(config)  # fills the defaults either config.json may omit
    text_hidden, vision_hidden = resolved.text_config.hidden_size, resolved.vision_config.hidden_size
    embedding = language.get("language_model.embed_tokens.weight")
    dtype = embedding.dtype if embedding is not None else torch.float32  # a missing embedding is reported later
    fresh = {
        "multi_modal_projector.linear_1.weight": (text_hidden, vision_hidden),
        "multi_modal_projector.linear_1.bias": (text_hidden,),
        "multi_modal_projector.linear_2.weight": (text_hidden, text_hidden),
        "multi_modal_projector.linear_2.bias": (text_hidden,),
    }
    projector = {name: TensorInfo("", name, shape, dtype) for name, shape in fresh.items()}
    tokenizer_dir = next((d for d in (llama_dir, clip_dir) if _has_tokenizer(d)), None)
    # The Llama directory's generation config, the CLIP directory's image processor; neither has a
    # LLaVA processor or a chat template that knows about images.
    side_files = {name: path for name, path in _side_files(llama_dir).items() if name == "generation_config.json"}
    side_files.update({name: path for name, path in _side_files(clip_dir).items() if name == "preprocessor_config.json"})
    return HFSource(spec, config, {**vision, **projector, **language}, {}, tokenizer_dir, side_files,
                    dropped=dropped, _readers=[clip_reader, llama_reader])
