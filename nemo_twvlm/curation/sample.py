"""What curation stages pass along: a batch of samples from one part of one input source.

A sample is an ordered list of segments (text and images), so one type serves image-caption pairs
(`[image, caption]`) and interleaved documents. Stages keep their per-sample results in
`Sample.meta` / `ImageItem.meta` and their per-stage counts in the batch's `_metadata["stages"]`,
so a new filter never adds a field to these classes.

Every sample a stage removes becomes a `Rejection` with a named reason; `QUARANTINE_REASONS` are
malformed inputs (kept byte-for-byte in OUT/quarantine/ for inspection), every other reason is a
policy drop. That split is what `stats.json` reports as `quarantined` and `dropped`. What a
stage repaired in a sample it kept is a named `note` instead, counted in `stats.json`'s `notes`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nemo_curator.tasks import Task
from PIL import Image

# Malformed input: the bytes cannot be read as a sample at all.
QUARANTINE_REASONS = frozenset({
    "truncated_tar", "unreadable_tar", "unreadable_file", "truncated_json", "bad_row",
    "missing_column", "bad_field_type",
    "missing_image", "missing_caption", "empty_image", "empty_caption", "caption_not_utf8", "bad_caption_json",
    "corrupt_image", "truncated_image", "decompression_bomb", "unsupported_image_format",
    "download_failed", "download_too_large", "download_timeout", "download_bad_scheme", "download_private_address",
    "missing_file", "path_outside_input",
    # conversations (stages/read_conversations.py)
    "truncated_json", "bad_conversation", "image_count_mismatch", "empty_turn", "roles_not_alternating",
    "no_assistant_turn",
    "stage_error",
})

# The input's layout is not the one the config describes: a column the reader needs is absent from
# a file, a field holds the wrong type, or the file cannot be read as its format at all (a .parquet
# that is not one); a line that is not a JSON object (a binary file named .jsonl) counts too, as
# `bad_row` with the detail NOT_AN_OBJECT (other bad rows are bad content, not another layout).
# When these are most of the input the run fails, naming the file and the expected and found
# columns, rather than succeeding with (almost) nothing kept.
SCHEMA_REASONS = frozenset({"missing_column", "bad_field_type", "unreadable_file", "unreadable_tar"})
NOT_AN_OBJECT = "line is not a JSON object"


def disposition(reason: str) -> str:
    return "quarantined" if reason in QUARANTINE_REASONS else "dropped"


def note(sample: Sample, name: str) -> None:
    """Record that a stage changed `sample` to keep it (a literal `<image>` stripped, an animation cut
    to its first frame): `SampleBatch.apply` counts it, once per sample and stage."""
    notes = sample.meta.setdefault("notes", [])
    if name not in notes:
        notes.append(name)


class Reject(Exception):
    """Raised by a per-sample check to remove the sample under `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InputFile:
    """An input file as its reader found it, before reading: the stamp a part that refers to its
    bytes checks when they are read back."""

    path: str
    size: int
    mtime_ns: int


@dataclass(eq=False)
class InputSpan:
    """Where an image's encoded bytes lie verbatim in an input file (an uncompressed tar member)."""

    file: InputFile
    offset: int
    size: int
    data: bytes | None = None  # the bytes read there; None until decode_verify reads what the reader deferred


@dataclass
class ImageItem:
    ref: str                       # the part name in a tar ("jpg", "0.png") or the url/path a row names
    data: bytes | None = None      # encoded bytes: as read, then as re-encoded (None: still at `span`)
    ext: str = ""
    pil: Image.Image | None = None  # decoded (then resized) pixels, held from decode to signatures
    meta: dict[str, Any] = field(default_factory=dict)
    span: InputSpan | None = None  # where `data` was read from, when that is a byte range of the input

    def passthrough(self) -> InputSpan | None:
        """The span the shipped bytes can be read back from: only while they are the very bytes read
        there (a stage that re-encodes replaces `data`, which ends this)."""
        return self.span if self.span is not None and self.data is self.span.data else None


@dataclass
class Sample:
    key: str
    index: int                     # position within its source: the global order is (source, index)
    segments: list[str | ImageItem]
    raw: dict[str, bytes | None] = field(default_factory=dict)  # input parts as read, for the quarantine
    # (None: a part the reader left in the input file, at the span of the image that names it)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [s for s in self.segments if isinstance(s, str)]

    @property
    def images(self) -> list[ImageItem]:
        return [s for s in self.segments if isinstance(s, ImageItem)]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def map_texts(self, fn: Callable[[str], str]) -> None:
        self.segments = [fn(s) if isinstance(s, str) else s for s in self.segments]

    @property
    def roles(self) -> list[str] | None:
        """A conversation's role per text segment (system / user / assistant); None for pairs and documents.
        A conversation's segments are its images (in placeholder order), then its turns."""
        return self.meta.get("roles")

    def turns(self, role: str) -> list[str]:
        return [text for r, text in zip(self.roles, self.texts) if r == role]


@dataclass
class Rejection:
    key: str
    index: int
    stage: str
    reason: str
    detail: str = ""
    raw: dict[str, bytes] = field(default_factory=dict)

    @property
    def disposition(self) -> str:
        return disposition(self.reason)


# The tasks below keep Curator's one-line Task.__repr__ (repr=False): Ray Data tries each stage's output
# as an Arrow column before pickling it, and both pa.infer_type's error and Ray's ArrowConversionError
# repr() the whole column. A dataclass repr spells out every image's bytes: ~100 MiB of text and ~0.4 s,
# twice per hop, for a part of 256 pairs at 512 px (+900 MiB on a worker's peak; BENCHMARKS.md 5c).
@dataclass(repr=False)
class SampleBatch(Task[list[Sample]]):
    """Samples from part `part` of `num_parts` of input `source`, plus the ones already rejected.

    `resumed` marks a part an earlier run already analysed: it carries no samples, and the
    checkpoint stage loads its results from disk instead of writing them.
    """

    data: list[Sample] = field(default_factory=list)
    source: str = ""
    part: int = 0
    num_parts: int = 1
    rejected: list[Rejection] = field(default_factory=list)
    resumed: bool = False

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True

    def reject(self, sample: Sample, stage: str, reason: str, detail: str = "") -> None:
        self.rejected.append(Rejection(sample.key, sample.index, stage, reason, detail, sample.raw))

    def apply(self, stage: str, check: Callable[[Sample], None]) -> SampleBatch:
        """Run `check` on every sample; a `Reject` (or any error) moves the sample to `rejected`.

        An unexpected exception is counted as `stage_error` with the stage and message in its
        detail: one bad sample never stops a shard.
        """
        kept: list[Sample] = []
        reasons: Counter[str] = Counter()
        notes: Counter[str] = Counter()
        for sample in self.data:
            noted = len(sample.meta.get("notes", ()))
            try:
                check(sample)
            except Reject as r:
                self.reject(sample, stage, r.reason, r.detail)
                reasons[r.reason] += 1
                continue
            except Exception as e:  # noqa: BLE001 - any failure is this sample's, not the run's
                self.reject(sample, stage, "stage_error", f"{stage}: {e!r}"[:500])
                reasons["stage_error"] += 1
                continue
            kept.append(sample)
            notes.update(sample.meta.get("notes", [])[noted:])
        self.record(stage, len(self.data), len(kept), reasons, notes)
        self.data = kept
        return self

    def record(self, stage: str, n_in: int, n_out: int, reasons: Counter[str] | dict[str, int],
               notes: Counter[str] | None = None) -> None:
        row = {"in": n_in, "out": n_out, "rejected": dict(reasons)}
        if notes:
            row["notes"] = dict(notes)
        self._metadata.setdefault("stages", {})[stage] = row

    def stage_counts(self) -> dict[str, dict]:
        return self._metadata.get("stages", {})

    def images(self) -> Iterator[tuple[Sample, ImageItem]]:
        for sample in self.data:
            for item in sample.images:
                yield sample, item


@dataclass(repr=False)
class SignatureBatch(Task[dict[str, list]]):
    """What dedup needs from one analysed part: columns of keys, hashes, MinHashes and tokens."""

    data: dict[str, list] = field(default_factory=dict)
    source: str = ""
    part: int = 0
    num_parts: int = 1

    @property
    def num_items(self) -> int:
        return len(self.data.get("index", []))

    def validate(self) -> bool:
        return True


@dataclass(repr=False)
class SourceDecision(Task[dict[int, tuple[str, str]]]):
    """Dedup and budget decisions for one source: sample index -> (reason, detail) to drop."""

    data: dict[int, tuple[str, str]] = field(default_factory=dict)
    source: str = ""
    num_parts: int = 1

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True


@dataclass(repr=False)
class DedupShard(Task[list[tuple[str, int, int]]]):
    """Shard `shard` of `num_shards` of the sharded dedup, over these parts: (source, part, num_parts)."""

    data: list[tuple[str, int, int]] = field(default_factory=list)
    shard: int = 0
    num_shards: int = 1

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True


@dataclass(repr=False)
class ShardCandidates(Task[Any]):
    """What one dedup shard found (a `sharded_dedup.Candidates`), and the parts it covered."""

    data: Any = None
    parts: list[tuple[str, int, int]] = field(default_factory=list)
    shard: int = 0
    num_shards: int = 1

    @property
    def num_items(self) -> int:
        return len(self.data.refs) if self.data is not None else 0

    def validate(self) -> bool:
        return True
