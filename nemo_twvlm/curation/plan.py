"""Projected cost of a curation run: CPU time per stage, wall time on a cluster, output disk and peak
memory per node, from the costs measured per sample, per signature and per worker process
(BENCHMARKS.md sections 5, 5b and 5c). The curation counterpart of `nemo_twvlm.planner`: arithmetic
on the config, nothing is read, started or imported beyond it, so `nemo twvlm curate_plan` answers
instantly.

What the numbers assume (say it before trusting them):
- measured rates are per core and spread ideally over nodes x cores; the executor's scheduling, Ray's
  object store and the shared filesystem are not in them, so the wall time is a lower bound;
- the per-sample costs are the pairs pipeline's on synthetic photos (JPEG q90) of 256-1024 px shipped
  at resize.max_side 672; an interleaved document or a conversation counts `images_per_sample` images
  at that cost each, caption included, and its text beyond those captions (`text_chars`) at the cost per
  character measured on zh-TW documents of up to 8,000 characters (linear, and taken as linear beyond;
  an upper bound for a conversation, whose MinHash reads only its first user turn);
- every sample is assumed kept (upper bound for disk and the dedup indexes);
- memory per node counts a worker process per core, each with its own imports and one task (the larger of
  a part's images and a row reader's range of rows; BENCHMARKS.md 5c, peak RSS of an in-process worker,
  and scripts/bench_reader_memory.py), Ray's own processes, and a process per dedup
  task; a node's processes share the mapped libraries, counted once. Under Xenna (the cluster
  executor, in streaming and batch mode) and Ray Data the analysing worker measured at or below that figure;
- the sharded merge's cost is the captions benchmark's, where no value is dense; each dense value
  (a member of a large cluster of different near-duplicates) adds one index query to the merge
  (BENCHMARKS.md section 5, dense clusters);
- dedup costs beyond the largest measured index (5*10^6) follow the last measured segment, never falling;
- finalize (Energon's index of every shard, then the stats) runs on the driver's node after everything
  else, its header readers on that node's cores and its one index writer serial.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nemo_twvlm.curation.config import TAR_FORMATS, CurationConfig
from nemo_twvlm.curation.hashing import PHASH_BITS, lsh_bands
from nemo_twvlm.curation.parts import rows_per_range
from nemo_twvlm.curation.stages.dedup.banding import INDEX_ABOVE

# --- Measured: every constant the plan uses, and where it came from -----------------------------------
# Machine for all of them: the shared 2-core AMD EPYC box (BENCHMARKS.md "Machine"), one core per task.
# Section 5 (scripts/bench_curation.py, XXH3 pixel hashes, Meta's tokenizer; the median of three runs on the
# idle box): ms of one core per pairs sample by input side, resize.max_side 672: the floor (tar read +
# decode + pixel hash) and the whole pipeline (every stage).
FLOOR_MS = {256: 1e3 / 3034, 512: 1e3 / 1026, 1024: 1e3 / 274}
PIPELINE_MS = {256: 1e3 / 1608, 512: 1e3 / 678, 1024: 1e3 / 131}
MEASURED_MAX_SIDE = 672
# The captions those pairs had, whose cost PIPELINE_MS holds: three zh-TW lines (bench_curation.write_input).
CAPTION_CHARS = 45.5
# scripts/bench_curation_text.py (2026-12-08, with zh.py's counts by runs): the interleaved pipeline on
# documents of one 256 px image and 45-8,000 characters of zh-TW text. Straight-line fits per character,
# within 0.2 ms a document: every stage's CPU (cleaning, language ID, OpenCC, quality, MinHash shingles,
# token count, writing; 2.13 and 2.28 us in two runs, the larger charged), the shards' bytes (the UTF-8
# text in the sample's json) and the part tables'.
TEXT_MS_PER_CHAR = 2.28e-3
TEXT_SHARD_BYTES_PER_CHAR = 3.02
TEXT_WORK_BYTES_PER_CHAR = 1.35
RUN_START_S = 0.17       # section 5: pipeline build + fastText, OpenCC and tokenizer loads, per process
# Section 5c: shipped JPEG q90 bytes by shipped side (bench_curation.photo images, 40 per size).
JPEG_Q90_BYTES = {256: 19_641, 512: 69_305, 672: 74_600}
MEASURED_QUALITY = 90
# A part table's row without its image: 253 B per sample on bench_curation.py's input (256 and 512 px,
# 1,000 pairs, tar input; images shipped as read stay in the tar and the row holds their byte range).
PART_ROW_BYTES = 253
# Section 5b (scripts/bench_dedup_scale.py, whole tasks on one thread): us per decision (its add included)
# by input size; bytes per sample as peak RSS grew from 10^6 to 5*10^6 (the benchmark's own signatures
# included), past the fixed bitmaps. The image search's lookahead probes spread over the node's threads;
# IMAGE_SERIAL_SHARE of a decision does not (the ordered loop, merging the probes' results).
IMAGE_DECIDE_US = {1e5: 221, 1e6: 227, 5e6: 249}
IMAGE_SERIAL_SHARE = 0.08  # all but the probes (`_probe`), timed at 2*10^5 codes
CAPTION_DECIDE_US = {1e5: 40.5, 1e6: 38.5, 5e6: 42.6}
IMAGE_INDEX_BYTES, IMAGE_INDEX_FIXED_BYTES = (1.779e9 - 1.202e9) / 4e6, 2 ** 30      # two 512 MiB bitmaps
CAPTION_INDEX_BYTES, CAPTION_INDEX_FIXED_BYTES = (4.826e9 - 1.382e9) / 4e6, 2 ** 29  # one bitmap
# Section 5, dedup (scripts/bench_dedup.py, 100k captions, exact + 4 caption bands = 5 rows/sample):
SIGNATURE_BYTES = 153e6 / 1e5 - 6.10e9 / 4.9e6  # single stage's peak less the dict caption index it had then
PARTITION_MS = 9.49e3 / 1e5                # per sample (16 shards)
SHARD_MS = 0.039                           # per sample, from all shards' 4.61 s at 4 and 6.65 s at 16 ...
SHARD_PART_OPEN_MS = 0.435                 # ... plus this per (shard, part) read; at scale each part reaches each shard
SHARD_ROW_BYTES = 88e6 * 4 / 1e5 / 5       # largest shard's peak (88 MB at 4 shards) per band-key row
MERGE_US, MERGE_BYTES = 2.7, 53            # merge: 0.27 s and 5.3 MB at 100k
# Section 5c: a shard bucket's all-pairs pHash comparison (banding.INDEX_ABOVE), 8.11 s for 94,861 values.
ALL_PAIRS_NS = 8.11e9 / (94_861 ** 2 / 2)

# scripts/bench_curation_memory.py (commit a694aef, the 2-core AMD EPYC box of BENCHMARKS.md 5's
# 2026-12-07 rows): one worker process's peak RSS is base + bytes per input pixel x the pixels of one task
# (input.batch_samples samples), within 31 MiB at batch_samples 64-256 for each side. The base is the
# largest of the three sides' (imports: Curator brings torch, ~530 MiB; the models; the run's state);
# its file-backed part (mapped libraries) is shared by a node's workers through the page cache.
WORKER_BASE_BYTES = 858 * 2**20
WORKER_FILE_BACKED_BYTES = 318 * 2**20
# Per input pixel of a task's samples: the decode (Pillow holds RGB as 4 bytes a pixel), the encoded
# image, the pHash's reduced copy and, at 1024 px, the resize to 672.
TASK_BYTES_PER_PIXEL = {256: 5.07, 512: 4.75, 1024: 4.77}
# scripts/bench_reader_memory.py (2026-12-08, 4,000 rows in each format's published layout, zh-TW text
# at 46 and 2,000 characters): a reader task's peak bytes a row, fixed + per character of text (the
# text as a str, and the row's JSON kept for the quarantine). A row reader holds `input.rows_per_read`
# of them (rounded up to whole parts); tar readers hold one part. Conversations are LLaVA JSON rows:
# a Parquet row that embeds its images holds their bytes besides.
READER_ROW_BYTES = {"table": (1728, 5.0), "llava_json": (2234, 5.0), "conversations": (3081, 5.0),
                    "obelics": (2851, 5.88), "mmc4": (3956, 5.0), "jsonl_docs": (3130, 5.0)}
# Ray's own processes on the head node beside the workers (busy or idle) and the driver (raylet, GCS,
# dashboard, agents, Ray Data's stats and autoscaling actors), the most of their summed PSS in Ray Data
# runs on this box (2026-12-08); charged to every node.
RAY_NODE_BYTES = 820 * 2**20

# Section 5c (scripts/bench_energon_index.py, 2026-12-08): finalize indexes the shards for Energon
# (energon_prep.prepare, check_shards=False): worker processes, one per CPU of the node finalize runs on,
# read every member's header and feed one SQLite index writer in the driver, so the wall is the larger of
# the two. CPU ms, per sample + per tar member, fitted at 3 and 5 members a sample (the larger of two
# runs' fits, the second: 0.0147 + 0.0249 and 0.0029 + 0.0021 in the first); index.sqlite's bytes
# per sample (655,360 B for 2,489 pairs). FINALIZE_MS is the rest of finalize, in the driver: the part
# and source markers read, the quarantine index and stats written (4,000 pairs, 256 px, two runs).
ENERGON_WORKER_MS = (0.0135, 0.0256)
ENERGON_WRITER_MS = (0.0028, 0.0022)
ENERGON_INDEX_BYTES = 263
FINALIZE_MS = 0.0015

# Arithmetic, not measured: a tar member is a 512-byte header plus on average 256 bytes of padding,
# three members per sample (image, text, json), ~300 bytes of caption and metadata.
SHARD_OVERHEAD_BYTES = 3 * (512 + 256) + 300


@dataclass(frozen=True)
class StageCost:
    name: str
    cpu_s: float
    wall_s: float
    note: str


@dataclass(frozen=True)
class CurationPlan:
    kind: str
    samples: int
    nodes: int
    cores_per_node: int
    memory_per_node: float | None  # bytes; None: the node's memory is not known
    image_px: int
    text_chars: float  # characters of text per sample
    shipped_px: int
    stages: tuple[StageCost, ...]
    shard_bytes: float
    index_bytes: float  # Energon's index.sqlite beside the shards
    work_bytes: float
    pipeline_memory_per_node: float
    dedup_memory_per_node: float
    image_task_bytes: float   # one worker's part of decoded images
    reader_task_bytes: float  # one row reader's range of rows (0 for tar inputs)

    @property
    def cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.stages)

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)

    @property
    def memory_per_node_peak(self) -> float:
        return max(self.pipeline_memory_per_node, self.dedup_memory_per_node)


def plan_curation(cfg: CurationConfig, *, samples: int, nodes: int, cores_per_node: int, image_px: int,
                  images_per_sample: float, memory_per_node: float | None = None,
                  text_chars: float | None = None) -> CurationPlan:
    """The plan of curating `samples` samples of `image_px`-side images with `cfg` on the cluster. Each sample
    has `text_chars` characters of text; None: a caption per image, as the measured pairs had."""
    _check_inputs(cfg, samples, nodes, cores_per_node, image_px, images_per_sample, memory_per_node, text_chars)
    captions = images_per_sample * CAPTION_CHARS
    text_chars = captions if text_chars is None else text_chars
    extra_chars = max(0.0, text_chars - captions)
    shipped = min(image_px, cfg.resize.max_side)
    cores = nodes * cores_per_node
    per_sample_ms = _by_pixels(PIPELINE_MS, image_px) * images_per_sample
    floor_ms = _by_pixels(FLOOR_MS, image_px) * images_per_sample
    analyse = [
        StageCost("read + decode + pixel hash", samples * floor_ms / 1e3, samples * floor_ms / 1e3 / cores,
                  f"{floor_ms:.2f} ms/sample at {image_px} px"),
        StageCost("filters, signatures, resize, write", samples * (per_sample_ms - floor_ms) / 1e3,
                  samples * (per_sample_ms - floor_ms) / 1e3 / cores, f"{per_sample_ms - floor_ms:.2f} ms/sample"),
        StageCost("run start", RUN_START_S * cores, RUN_START_S, f"{RUN_START_S} s per worker process"),
    ]
    if extra_chars:
        text_s = samples * extra_chars * TEXT_MS_PER_CHAR / 1e3
        analyse.insert(2, StageCost("text beyond captions", text_s, text_s / cores,
                                    f"{extra_chars:,.0f} chars/sample at {1e3 * TEXT_MS_PER_CHAR:.2f} ms per 1,000"))
    if cfg.dedup.shards > 1:
        dedup, dedup_memory = _sharded_dedup(cfg, samples, nodes, cores_per_node)
    else:
        dedup, dedup_memory = _single_dedup(cfg, samples, cores_per_node)
    members = images_per_sample + (2 if cfg.kind == "pairs" else 1)  # + txt and json, or the document's json
    finalize = _finalize(samples, members, cores_per_node)
    image_bytes = _by_pixels(JPEG_Q90_BYTES, shipped) * images_per_sample
    # A part table holds an image only when it is not shipped as read from a tar (re-encoded, or downloaded).
    in_place = cfg.input.format in TAR_FORMATS and shipped == image_px
    work_bytes = samples * (PART_ROW_BYTES + (0 if in_place else image_bytes) + extra_chars * TEXT_WORK_BYTES_PER_CHAR)
    images = cfg.input.batch_samples * images_per_sample * image_px ** 2 * _by_pixels(TASK_BYTES_PER_PIXEL, image_px)
    reader = _reader_task_bytes(cfg, text_chars)
    return CurationPlan(
        kind=cfg.kind, samples=samples, nodes=nodes, cores_per_node=cores_per_node, memory_per_node=memory_per_node,
        image_px=image_px, text_chars=text_chars, shipped_px=shipped, stages=tuple(analyse + dedup + [finalize]),
        shard_bytes=samples * (image_bytes + SHARD_OVERHEAD_BYTES + extra_chars * TEXT_SHARD_BYTES_PER_CHAR),
        index_bytes=samples * ENERGON_INDEX_BYTES, work_bytes=work_bytes,
        # A worker holds one task at a time: a part's decoded images, or a reader's range of rows.
        pipeline_memory_per_node=_workers(cores_per_node, max(images, reader)) + RAY_NODE_BYTES,
        dedup_memory_per_node=dedup_memory, image_task_bytes=images, reader_task_bytes=reader)


def _reader_task_bytes(cfg: CurationConfig, text_chars: float) -> float:
    """What one row reader task holds (READER_ROW_BYTES); 0 for the tar formats, which read a part at a time."""
    if cfg.input.format not in READER_ROW_BYTES:
        return 0.0
    fixed, per_char = READER_ROW_BYTES[cfg.input.format]
    return rows_per_range(cfg.input.rows_per_read, cfg.input.batch_samples) * (fixed + per_char * text_chars)


def _finalize(n: int, members: float, cores_per_node: int) -> StageCost:
    """Energon's index of the shards on one node, then the stats: see ENERGON_WORKER_MS."""
    worker_ms = ENERGON_WORKER_MS[0] + members * ENERGON_WORKER_MS[1]
    writer_ms = ENERGON_WRITER_MS[0] + members * ENERGON_WRITER_MS[1]
    cpu_s = n * (worker_ms + writer_ms + FINALIZE_MS) / 1e3
    wall_s = n * (max(worker_ms / cores_per_node, writer_ms) + FINALIZE_MS) / 1e3
    bound = "the index writer" if writer_ms > worker_ms / cores_per_node else f"{cores_per_node} header readers"
    return StageCost("finalize: Energon index + stats (1 node)", cpu_s, wall_s,
                     f"{members:g} tar members/sample; bound by {bound}")


def _workers(processes: int, each: float) -> float:
    """Memory of `processes` worker processes on one node holding `each` bytes of work apiece: every
    process has its own imports; their mapped libraries are in memory once."""
    return processes * (WORKER_BASE_BYTES - WORKER_FILE_BACKED_BYTES + each) + WORKER_FILE_BACKED_BYTES


def _check_inputs(cfg: CurationConfig, samples: int, nodes: int, cores_per_node: int, image_px: int,
                  images_per_sample: float, memory_per_node: float | None, text_chars: float | None) -> None:
    for field, value, what in (("samples", samples, "input samples"), ("nodes", nodes, "nodes"),
                               ("cores_per_node", cores_per_node, "cores per node")):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{field}={value!r}: expected the number of {what}, >= 1")
    if not images_per_sample > 0:
        raise ValueError(f"images_per_sample={images_per_sample!r}: expected a number > 0")
    if text_chars is not None and not text_chars >= 0:
        raise ValueError(f"text_chars={text_chars!r}: expected characters of text per sample, >= 0")
    if memory_per_node is not None and not memory_per_node > 0:
        raise ValueError(f"memory_per_node={memory_per_node!r}: expected bytes > 0, or None when not known")
    low, high = min(PIPELINE_MS), max(PIPELINE_MS)
    if not low <= image_px <= high:
        raise ValueError(f"image_px={image_px}: per-sample costs were measured from {low} to {high} px "
                         "(BENCHMARKS.md section 5); outside that the plan would be a guess")
    if min(image_px, cfg.resize.max_side) != min(image_px, MEASURED_MAX_SIDE):
        raise ValueError(f"resize.max_side={cfg.resize.max_side}: with image_px={image_px} it ships "
                         f"{min(image_px, cfg.resize.max_side)} px, but costs were measured shipping "
                         f"{min(image_px, MEASURED_MAX_SIDE)} px (max_side {MEASURED_MAX_SIDE})")
    if cfg.resize.format != "jpg" or cfg.resize.quality != MEASURED_QUALITY:
        raise ValueError(f"resize.format={cfg.resize.format!r} resize.quality={cfg.resize.quality}: bytes per "
                         f"image were measured for jpg at quality {MEASURED_QUALITY} only")


def _single_dedup(cfg: CurationConfig, n: int, cores_per_node: int) -> tuple[list[StageCost], float]:
    """The fan-in stage on one node: the image search's probes spread over that node's cores
    (lookahead), the rest of each decision and the caption index run in its one ordered loop."""
    d = cfg.dedup
    stages, index = [], n * SIGNATURE_BYTES
    if d.image_hamming is not None:
        per = _by_size(IMAGE_DECIDE_US, n)
        speedup = 1 / (IMAGE_SERIAL_SHARE + (1 - IMAGE_SERIAL_SHARE) / cores_per_node)
        stages.append(StageCost("dedup: image search (1 node)", n * per / 1e6, n * per / 1e6 / speedup,
                                f"{per:,.0f} us/decision, probes over {cores_per_node} threads"))
        index += n * IMAGE_INDEX_BYTES + IMAGE_INDEX_FIXED_BYTES
    if d.caption_jaccard is not None:
        per = _by_size(CAPTION_DECIDE_US, n)
        stages.append(StageCost("dedup: caption search (1 core)", n * per / 1e6, n * per / 1e6,
                                f"{per:.0f} us/sample, serial"))
        index += n * CAPTION_INDEX_BYTES + CAPTION_INDEX_FIXED_BYTES
    return stages, _workers(1, index)


def _sharded_dedup(cfg: CurationConfig, n: int, nodes: int, cores_per_node: int) -> tuple[list[StageCost], float]:
    """Partition per part, `dedup.shards` shard tasks over the cluster, one merge: memory per node is the
    shards a node runs at once, each holding its share of every sample's band-key rows."""
    d, shards = cfg.dedup, cfg.dedup.shards
    parts = math.ceil(n / cfg.input.batch_samples)
    rows = int(d.exact)
    shard_cpu = n * SHARD_MS / 1e3 + shards * parts * SHARD_PART_OPEN_MS / 1e3
    if d.image_hamming is not None:
        rows += d.image_bands
        bucket = n / 2 ** (PHASH_BITS // d.image_bands)  # distinct pHashes sharing one band key
        # Per pHash per band: a MultiHashIndex decision in a large bucket, half the bucket's pairs in a small one.
        per = _by_size(IMAGE_DECIDE_US, bucket) if bucket > INDEX_ABOVE else bucket / 2 * ALL_PAIRS_NS / 1e3
        shard_cpu += d.image_bands * n * per / 1e6
    if d.caption_jaccard is not None:
        rows += lsh_bands(d.caption_jaccard, d.num_perm)[0]
    at_once = min(math.ceil(shards / nodes), cores_per_node)
    parallel = min(shards, nodes * cores_per_node)
    stages = [
        StageCost("dedup: partition", n * PARTITION_MS / 1e3, n * PARTITION_MS / 1e3 / (nodes * cores_per_node),
                  f"{PARTITION_MS:.3f} ms/sample"),
        StageCost(f"dedup: {shards} shard tasks", shard_cpu, shard_cpu / parallel, f"{parallel} at a time"),
        StageCost("dedup: merge (1 core)", n * MERGE_US / 1e6, n * MERGE_US / 1e6, f"{MERGE_US} us/sample"),
    ]
    memory = max(_workers(at_once, n * rows * SHARD_ROW_BYTES / shards), _workers(1, n * MERGE_BYTES))
    return stages, memory


def _by_pixels(table: dict[int, float], side: int) -> float:
    """Linear in pixels between the measured sides."""
    return _interpolate({s * s: v for s, v in table.items()}, side * side)


def _interpolate(table: dict[float, float], x: float) -> float:
    xs = sorted(table)
    lo = max([k for k in xs if k <= x], default=xs[0])
    hi = min([k for k in xs if k > lo], default=lo)
    if hi == lo:
        return table[lo]
    return table[lo] + (table[hi] - table[lo]) * (min(x, hi) - lo) / (hi - lo)


def _by_size(table: dict[float, float], n: float) -> float:
    """Log-log between measured index sizes; below the smallest its cost, above the largest the last
    segment's growth (never a fall: a larger index is not cheaper)."""
    xs = sorted(table)
    if n <= xs[0]:
        return table[xs[0]]
    lo, hi = (xs[-2], xs[-1]) if n >= xs[-1] else next((a, b) for a, b in zip(xs, xs[1:]) if a <= n < b)
    slope = math.log(table[hi] / table[lo]) / math.log(hi / lo)
    if n >= xs[-1]:
        return table[hi] * (n / hi) ** max(slope, 0.0)
    return table[lo] * (n / lo) ** slope


def format_curation_plan(plan: CurationPlan) -> str:
    """A plain-text table of a `CurationPlan`, like `planner.format_plan`'s."""
    cluster = f"{plan.nodes} node{'s' if plan.nodes != 1 else ''} x {plan.cores_per_node} cores"
    rows: list[tuple[str, str]] = [
        ("input", f"{plan.samples:,} {plan.kind} samples of {plan.image_px} px images, "
                  f"shipped at {plan.shipped_px} px; {plan.text_chars:,.0f} chars of text per sample"),
        ("cluster", cluster + (f", {_bytes(plan.memory_per_node)} per node" if plan.memory_per_node else "")),
    ]
    for s in plan.stages:
        rows.append((s.name, f"{s.cpu_s / 3600:,.1f} core-h, wall {_duration(s.wall_s)}  ({s.note})"))
    rows += [
        ("total", f"{plan.cpu_s / 3600:,.1f} core-h; wall {_duration(plan.wall_s)} on {cluster} (ideal scaling)"),
        ("disk", f"shards {_bytes(plan.shard_bytes)} + Energon index {_bytes(plan.index_bytes)} + part tables "
                 f"{_bytes(plan.work_bytes)} (resumable state)"),
        ("memory/node", f"peak {_bytes(plan.memory_per_node_peak)}: {plan.cores_per_node} workers and Ray "
                        f"{_bytes(plan.pipeline_memory_per_node)}, dedup {_bytes(plan.dedup_memory_per_node)}"),
        ("worker task", f"{_bytes(plan.image_task_bytes)} of decoded images a part" + (
            f", {_bytes(plan.reader_task_bytes)} of rows a reader task" if plan.reader_task_bytes else "")),
    ]
    if plan.memory_per_node:
        fits = plan.memory_per_node_peak <= 0.9 * plan.memory_per_node
        rows.append(("margin vs node", "fits" if fits else "DOES NOT FIT: raise dedup.shards or nodes"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"
