"""The typed curation config: what `conf/curation/*.yaml` holds, checked once at the entry point.

Entry points merge the YAML (Hydra) and call `CurationConfig.from_dict`; package code only ever
sees this dataclass. Unknown keys and bad values fail here, naming the field.
"""
# Real annotations, not `from __future__ import annotations`: NeMo-Run parses CLI overrides of a
# recipe's fields (`nemo twvlm curate --factory ...`) by them.
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, get_type_hints


# input.format -> the kinds it feeds. The reader of each is in nemo_twvlm/curation/readers.py.
INPUT_FORMATS = {
    "webdataset": ("pairs", "interleaved"),  # tars; interleaved: a json part naming image parts
    "table": ("pairs",),           # Parquet/JSONL rows of url-or-path + caption (LAION, DataComp by column names)
    "jsonl_docs": ("interleaved",),  # JSONL {"id", "segments": [text | {"image": url-or-path}]}
    "llava_json": ("pairs",),      # LLaVA-Pretrain: a JSON list of {id, image, conversations} + an image folder
    "img2dataset": ("pairs",),     # img2dataset's webdataset output: <key>.jpg/.txt/.json sidecar
    "obelics": ("interleaved",),   # OBELICS parquet: parallel texts / images lists
    "mmc4": ("interleaved",),      # MMC4 JSONL: text_list + image_info (raw_url, image_name, matched_text_index)
    "conversations": ("conversations",),  # LLaVA instruction JSON/JSONL, HF parquet (messages + image structs)
}


@dataclass
class InputConfig:
    format: str = "webdataset"     # one of INPUT_FORMATS
    url_column: str = "url"        # table: an http(s) url or a path (relative to the table's folder)
    caption_column: str = "caption"
    key_column: str = "key"        # optional; rows without it are keyed by position
    # llava_json / mmc4 / conversations: local image folder, relative to the input file's folder
    image_dir: Optional[str] = None
    max_schema_mismatch: float = 0.5  # fail the run when this share of the input has missing columns / wrong types
    batch_samples: int = 256       # samples per task: bounds the decoded images held at once


@dataclass
class DownloadConfig:
    schemes: list[str] = field(default_factory=lambda: ["http", "https"])
    allow_local_paths: bool = True
    max_bytes: int = 20_000_000
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    threads: int = 8
    allow_private_addresses: bool = False  # else hosts resolving to private/loopback/link-local/... are refused
    max_requests_per_host_per_s: Optional[float] = None  # per worker process; None = no limit


@dataclass
class ImageConfig:
    formats: list[str] = field(default_factory=lambda: ["jpg", "jpeg", "png", "webp"])
    max_pixels: int = 40_000_000   # read from the header, before any pixel is decoded
    min_side: int = 32
    max_aspect: float = 3.0


@dataclass
class TextConfig:
    strip_html: bool = True
    strip_urls: bool = True


@dataclass
class LangConfig:
    model_path: str = ""
    allowed: list[str] = field(default_factory=lambda: ["zh", "en"])
    min_score: float = 0.4


@dataclass
class ScriptConfig:
    simplified: str = "convert"    # convert (OpenCC s2twp) | drop


@dataclass
class QualityConfig:
    min_chars: int = 4
    max_chars: int = 2000
    min_cjk_ratio: float = 0.3     # applies to zh text only
    max_char_repetition: float = 0.5
    max_punctuation_ratio: float = 0.35


@dataclass
class DedupConfig:
    exact: bool = True
    image_hamming: Optional[int] = 6  # pHash bits; None turns near-dup images off
    image_bands: int = 8           # LSH bands over the 64-bit pHash; > image_hamming guarantees recall
    caption_jaccard: Optional[float] = 0.85  # MinHash estimate; None turns near-dup text off
    shingle: int = 3               # characters per shingle (Chinese has no word spaces)
    num_perm: int = 64
    shards: int = 1                # > 1: candidate search split by LSH band key into this many tasks, same result


@dataclass
class ResizeConfig:
    max_side: int = 672
    format: str = "jpg"            # jpg | png
    quality: int = 90


@dataclass
class TokenConfig:
    tokenizer: str = "data/tokenizer"
    preset: str = "debug"          # image tokens per image come from nemo_twvlm.presets
    max_per_sample: Optional[int] = 8192
    budget: Optional[int] = None      # total text+image tokens to keep, in input order; None = all


@dataclass
class ModelScoreConfig:
    clip_model: Optional[str] = None  # local Hugging Face CLIP directory; None skips the stage with a warning
    min_clip_score: float = 0.2
    embedding_model: Optional[str] = None  # local CLIP ViT-L/14 directory: the embeddings both heads below read
    aesthetic_model: Optional[str] = None  # LAION aesthetic head (.safetensors/.pth); None skips the stage with a warning
    min_aesthetic_score: float = 4.5
    nsfw_model: Optional[str] = None  # LAION CLIP NSFW head (.pth/.safetensors); None skips the stage with a warning
    max_nsfw_score: float = 0.5


@dataclass
class ShardConfig:
    samples_per_shard: int = 1000


@dataclass
class QuarantineConfig:
    keep_dropped: bool = True      # also store the payload of policy drops, not only of malformed input


@dataclass
class ReportConfig:
    grid: int = 24                 # samples shown in each of the kept / rejected grids
    thumb_px: int = 96


@dataclass
class ExecutorConfig:
    name: str = "ray_data"         # ray_data | xenna | in_process
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurationConfig:
    input_dir: str = ""
    output_dir: str = ""
    kind: str = "pairs"            # pairs | interleaved | conversations
    input: InputConfig = field(default_factory=InputConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    lang: LangConfig = field(default_factory=LangConfig)
    script: ScriptConfig = field(default_factory=ScriptConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    models: ModelScoreConfig = field(default_factory=ModelScoreConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, check: bool = True) -> "CurationConfig":
        """check=False: a recipe, whose input_dir and output_dir are given at launch (then checked)."""
        cfg = _build(cls, values, "")
        if check:
            cfg.check()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        choices = {
            "kind": (self.kind, ("pairs", "interleaved", "conversations")),
            "input.format": (self.input.format, tuple(INPUT_FORMATS)),
            "script.simplified": (self.script.simplified, ("convert", "drop")),
            "resize.format": (self.resize.format, ("jpg", "png")),
            "executor.name": (self.executor.name, ("ray_data", "xenna", "in_process")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not supported; expected one of {list(allowed)}")
        kinds = INPUT_FORMATS[self.input.format]
        if self.kind not in kinds:
            raise ValueError(f"input.format={self.input.format!r} feeds kind {' or '.join(kinds)}, "
                             f"not kind={self.kind!r}")
        if not 0 < self.input.max_schema_mismatch <= 1:
            raise ValueError(f"input.max_schema_mismatch={self.input.max_schema_mismatch} must be in (0, 1]")
        if self.kind == "conversations" and self.dedup.shards != 1:
            raise ValueError(f"dedup.shards={self.dedup.shards}: conversations match image and first user turn "
                             "together, which the sharded dedup does not; use dedup.shards=1")
        for name in ("input_dir", "output_dir", "lang.model_path", "tokens.tokenizer"):
            if not _get(self, name):
                raise ValueError(f"{name} is empty; it must name a path")
        for head in ("models.aesthetic_model", "models.nsfw_model"):
            if _get(self, head) and not self.models.embedding_model:
                raise ValueError(f"{head}={_get(self, head)!r} needs models.embedding_model: the local CLIP ViT-L/14 "
                                 "directory whose image embeddings the head was trained on")
        if self.dedup.image_hamming is not None and not 0 <= self.dedup.image_hamming < self.dedup.image_bands:
            raise ValueError(f"dedup.image_hamming={self.dedup.image_hamming} must be in [0, dedup.image_bands="
                             f"{self.dedup.image_bands}) so that banded LSH finds every near-duplicate")
        if 64 % self.dedup.image_bands:
            raise ValueError(f"dedup.image_bands={self.dedup.image_bands} must divide the 64 pHash bits")
        rate = self.download.max_requests_per_host_per_s
        if rate is not None and not rate > 0:
            raise ValueError(f"download.max_requests_per_host_per_s={rate} must be > 0, or null for no limit")
        for name in ("input.batch_samples", "shards.samples_per_shard", "dedup.num_perm", "dedup.shingle",
                     "dedup.shards"):
            if _get(self, name) < 1:
                raise ValueError(f"{name}={_get(self, name)} must be >= 1")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise TypeError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown curation config key(s) {[prefix + k for k in unknown]}; "
                         f"expected some of {sorted(prefix + n for n in names)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)
