"""The typed curation config: the schema of `conf/curation/*.yaml`, checked once at the entry point.

The YAML holds every value (and documents it); these dataclasses only say what the keys are and
what they may hold, with no defaults, so a number lives in one place. Entry points compose the
YAML (Hydra) and call `CurationConfig.from_dict`, which checks types against this schema
(OmegaConf's structured configs) and then ranges and choices (`check`): an unknown key, a missing
one, a wrong type or a value out of range fails here, before any work, naming the key.
"""
# Real annotations, not `from __future__ import annotations`: OmegaConf reads the schema from them,
# and NeMo-Run parses CLI overrides of a recipe's fields (`nemo twvlm curate --factory ...`) by them.
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

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
# Formats read from tars, whose images are read in place: a part table refers to an image shipped as
# read instead of holding a copy (the planner's disk estimate leans on this).
TAR_FORMATS = ("webdataset", "img2dataset")

CHOICES = {
    "kind": ("pairs", "interleaved", "conversations"),
    "input.format": tuple(INPUT_FORMATS),
    "script.simplified": ("convert", "drop"),
    "resize.format": ("jpg", "png"),
    "executor.name": ("ray_data", "xenna", "in_process"),
}

# Inclusive bounds (None: unbounded); a null value (where the type allows one) is not checked.
RANGES = {
    "input.max_schema_mismatch": (0, 1),  # and > 0, checked with its own message
    "input.batch_samples": (1, None),
    "input.rows_per_read": (1, None),
    "download.max_bytes": (1, None),
    "download.timeout_s": (0, None),
    "download.retries": (0, None),
    "download.backoff_s": (0, None),
    "download.threads": (1, None),
    "image.max_pixels": (1, None),
    "image.min_side": (1, None),
    "image.max_aspect": (1, None),
    "lang.min_score": (0, 1),
    "quality.min_chars": (0, None),
    "quality.max_chars": (1, None),
    "quality.min_cjk_ratio": (0, 1),
    "quality.max_char_repetition": (0, 1),
    "quality.max_punctuation_ratio": (0, 1),
    "dedup.image_bands": (1, 64),
    "dedup.caption_jaccard": (0, 1),
    "dedup.shingle": (1, None),
    "dedup.num_perm": (1, None),
    "dedup.shards": (1, None),
    "resize.max_side": (1, None),
    "resize.quality": (1, 100),  # PIL's JPEG quality scale
    "tokens.max_per_sample": (1, None),
    "tokens.budget": (0, None),
    "shards.samples_per_shard": (1, None),
    "report.grid": (0, None),
    "report.thumb_px": (1, None),
}


@dataclass
class InputConfig:
    format: str                    # one of INPUT_FORMATS
    url_column: str                # table: an http(s) url or a path (relative to the table's folder)
    caption_column: str
    key_column: str                # optional in the rows; rows without it are keyed by position
    image_dir: Optional[str]       # llava_json / mmc4 / conversations: local image folder, relative to the input file
    max_schema_mismatch: float     # fail the run when this share of the input has the wrong layout
    batch_samples: int             # samples per task: bounds the decoded images held at once
    rows_per_read: int             # Parquet/JSON/JSONL rows per reader task (rounded up to whole parts)


@dataclass
class DownloadConfig:
    schemes: list[str]
    allow_local_paths: bool
    max_bytes: int
    timeout_s: float
    retries: int
    backoff_s: float
    threads: int
    allow_private_addresses: bool  # else hosts resolving to private/loopback/link-local/... are refused
    max_requests_per_host_per_s: Optional[float]  # per worker process; None = no limit


@dataclass
class ImageConfig:
    formats: list[str]
    max_pixels: int                # read from the header, before any pixel is decoded
    min_side: int
    max_aspect: float


@dataclass
class TextConfig:
    strip_html: bool
    strip_urls: bool


@dataclass
class LangConfig:
    model_path: str
    allowed: list[str]
    min_score: float


@dataclass
class ScriptConfig:
    simplified: str                # convert (OpenCC s2twp) | drop


@dataclass
class QualityConfig:
    min_chars: int
    max_chars: int
    min_cjk_ratio: float           # applies to zh text only
    max_char_repetition: float
    max_punctuation_ratio: float


@dataclass
class DedupConfig:
    exact: bool
    image_hamming: Optional[int]   # pHash bits; None turns near-dup images off
    image_bands: int               # LSH bands over the 64-bit pHash; > image_hamming guarantees recall
    caption_jaccard: Optional[float]  # MinHash estimate; None turns near-dup text off
    shingle: int                   # characters per shingle (Chinese has no word spaces)
    num_perm: int
    shards: int                    # > 1: candidate search split by LSH band key into this many tasks, same result


@dataclass
class ResizeConfig:
    max_side: int
    format: str                    # jpg | png
    quality: int


@dataclass
class TokenConfig:
    tokenizer: str
    preset: str                    # image tokens per image come from nemo_twvlm.presets
    max_per_sample: Optional[int]
    budget: Optional[int]          # total text+image tokens to keep, in input order; None = all


@dataclass
class ModelScoreConfig:
    clip_model: Optional[str]      # local Hugging Face CLIP directory; None skips the stage with a warning
    min_clip_score: float
    embedding_model: Optional[str]  # local CLIP ViT-L/14 directory: the embeddings both heads below read
    aesthetic_model: Optional[str]  # LAION aesthetic head (.safetensors/.pth); None skips the stage with a warning
    min_aesthetic_score: float
    nsfw_model: Optional[str]      # LAION CLIP NSFW head (.pth/.safetensors); None skips the stage with a warning
    max_nsfw_score: float


@dataclass
class ShardConfig:
    samples_per_shard: int


@dataclass
class QuarantineConfig:
    keep_dropped: bool             # also store the payload of policy drops, not only of malformed input


@dataclass
class ReportConfig:
    grid: int                      # samples shown in each of the kept / rejected grids
    thumb_px: int


@dataclass
class ExecutorConfig:
    name: str                      # ray_data | xenna | in_process
    config: dict[str, Any]


@dataclass
class CurationConfig:
    input_dir: str
    output_dir: str
    kind: str                      # pairs | interleaved | conversations
    input: InputConfig
    download: DownloadConfig
    image: ImageConfig
    text: TextConfig
    lang: LangConfig
    script: ScriptConfig
    quality: QualityConfig
    dedup: DedupConfig
    resize: ResizeConfig
    tokens: TokenConfig
    models: ModelScoreConfig
    shards: ShardConfig
    quarantine: QuarantineConfig
    report: ReportConfig
    executor: ExecutorConfig

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, check: bool = True) -> "CurationConfig":
        """Every key, typed by this schema; check=False: a recipe, whose input_dir and output_dir are
        given at launch (then checked), so only its paths are not checked yet."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        if not isinstance(values, dict):
            raise ValueError(f"the curation config must be a mapping, got {type(values).__name__}")
        try:
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
        except OmegaConfBaseException as e:
            # OmegaConf's message names the key, then repeats it with the schema's class names.
            reason = str(e.msg).split("\n")[0].replace("AnyNode", "a single value")
            raise ValueError(f"curation config {e.full_key}: {reason}") from None
        cfg.check(paths=check)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self, *, paths: bool = True) -> None:
        """Choices, ranges and the rules between fields; with `paths`, also that the paths are set."""
        for name, allowed in CHOICES.items():
            if _get(self, name) not in allowed:
                raise ValueError(f"{name}={_get(self, name)!r} is not supported; expected one of {list(allowed)}")
        for name, (low, high) in RANGES.items():
            value = _get(self, name)
            if value is not None and not ((low is None or value >= low) and (high is None or value <= high)):
                raise ValueError(f"{name}={value!r} is out of range; expected {_bounds(low, high)}")
        self._check_rules()
        if paths:
            for name in ("input_dir", "output_dir", "lang.model_path", "tokens.tokenizer"):
                if not _get(self, name):
                    raise ValueError(f"{name} is empty; it must name a path")

    def _check_rules(self) -> None:
        kinds = INPUT_FORMATS[self.input.format]
        if self.kind not in kinds:
            raise ValueError(f"input.format={self.input.format!r} feeds kind {' or '.join(kinds)}, "
                             f"not kind={self.kind!r}")
        if not 0 < self.input.max_schema_mismatch <= 1:
            raise ValueError(f"input.max_schema_mismatch={self.input.max_schema_mismatch:g} must be in (0, 1]")
        if self.quality.min_chars > self.quality.max_chars:
            raise ValueError(f"quality.min_chars={self.quality.min_chars} is above "
                             f"quality.max_chars={self.quality.max_chars}")
        if self.kind == "conversations" and self.dedup.shards != 1:
            raise ValueError(f"dedup.shards={self.dedup.shards}: conversations match image and first user turn "
                             "together, which the sharded dedup does not; use dedup.shards=1")
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


def _bounds(low: float | None, high: float | None) -> str:
    if high is None:
        return f">= {low}"
    return f"<= {high}" if low is None else f"in [{low}, {high}]"


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
