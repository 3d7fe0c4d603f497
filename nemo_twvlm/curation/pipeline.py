"""Curation pipelines: Curator stages composed from a `CurationConfig`, run by the executor chosen
last, then summarised into manifest.json, stats.json, quarantine/index.jsonl, Energon metadata and
report.html.

    read -> [download] -> analyse_part -> checkpoint -> dedup -> write_shards

    analyse_part: decode_verify -> clean_text -> language_id -> script_zh -> quality_zh
                  -> [image_embed -> nsfw -> aesthetic] -> [clip_score] -> resize -> signatures -> token_count

`analyse_part` runs its stages one after another on a part in one worker (stages.fused), so no
executor serialises a part while it holds decoded pixels. Everything up to `checkpoint` works on one
part of one input file at a time; `dedup` sees the signatures of all of them (or, with
`dedup.shards > 1`, the composite that decomposes into dedup_partition -> dedup_fanout -> dedup_shard
-> dedup_merge and splits that search by LSH band key); `write_shards` works per input file again.
`read` is the reader of `input.format` (nemo_twvlm.curation.readers).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from loguru import logger
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation import rerun
from nemo_twvlm.curation.config import CurationConfig, ModelScoreConfig
from nemo_twvlm.curation.executors import make_executor
from nemo_twvlm.curation.inputs import list_inputs, sources_of
from nemo_twvlm.curation.parts import done_parts, final_marker, part_marker
from nemo_twvlm.curation.readers import READERS, SchemaMismatchError, schema_mismatch
from nemo_twvlm.curation.sample import disposition
from nemo_twvlm.curation.stages.dedup.dedup import DedupStage
from nemo_twvlm.curation.stages.dedup.sharded import ShardedDedupStage
from nemo_twvlm.curation.stages.dedup.signatures import SignatureStage
from nemo_twvlm.curation.stages.filters.clean_text import CleanTextStage
from nemo_twvlm.curation.stages.filters.language_id import LanguageIdStage
from nemo_twvlm.curation.stages.filters.quality_zh import QualityStage
from nemo_twvlm.curation.stages.filters.script_zh import ScriptStage
from nemo_twvlm.curation.stages.filters.token_count import TokenCountStage
from nemo_twvlm.curation.stages.fused import FusedStage
from nemo_twvlm.curation.stages.io.decode_verify import DecodeVerifyStage
from nemo_twvlm.curation.stages.io.download import DownloadStage
from nemo_twvlm.curation.stages.io.list_inputs import ListInputsStage
from nemo_twvlm.curation.stages.models.aesthetic import AestheticStage
from nemo_twvlm.curation.stages.models.clip_score import ClipScoreStage
from nemo_twvlm.curation.stages.models.image_embed import ImageEmbedStage
from nemo_twvlm.curation.stages.models.nsfw import NsfwStage
from nemo_twvlm.curation.stages.write.checkpoint import CheckpointStage
from nemo_twvlm.curation.stages.write.resize import ResizeStage
from nemo_twvlm.curation.stages.write.shard_writer import CONVERSATION_SAMPLE_LOADER, ShardWriterStage, changed_shard
from nemo_twvlm.curation.storage import atomic_write_json, atomic_writer, read_json
from nemo_twvlm.presets import get_preset

ANALYSE_PART = "analyse_part"  # the fused stage's name, in executors' logs

# Energon's view of interleaved shards: `json` holds the ordered segments, an image segment names
# a part of the same sample, which Energon decodes.
INTERLEAVED_SAMPLE_LOADER = '''\
"""Energon sample loader for nemo_twvlm curated interleaved documents."""


def sample_loader(raw: dict) -> dict:
    segments = raw["json"]["segments"]
    return dict(sequence=[raw[s["image"]] if isinstance(s, dict) else s for s in segments])


def part_filter(part: str) -> bool:
    return part == "json" or part.rsplit(".", 1)[-1] in ("jpg", "png")
'''


class Layout:
    """Where a run's outputs go (see nemo_twvlm.curation.storage for the whole tree)."""

    def __init__(self, output_dir: str | Path):
        self.out = Path(output_dir).resolve()
        self.shards = self.out / "shards"
        self.quarantine = self.out / "quarantine"
        self.work = self.out / "work"


def input_files(cfg: CurationConfig) -> dict[str, Path]:
    """Input files by source id (curation.inputs.list_inputs); fails on a folder with none of them or
    two files with the same id, and warns naming each file that looks like an input but is not read."""
    if not Path(cfg.input_dir).is_dir():
        raise FileNotFoundError(f"input_dir={cfg.input_dir!r} is not a directory")
    extensions = list(READERS[cfg.input.format].extensions)
    inputs = list_inputs(cfg.input_dir, extensions)
    for path, why in inputs.skipped.items():
        logger.warning(f"input_dir={cfg.input_dir!r}: {path} {why}")
    if not inputs.files:
        raise FileNotFoundError(f"input_dir={cfg.input_dir!r} holds no {extensions} files "
                                f"(input.format={cfg.input.format!r})")
    return sources_of(cfg.input_dir, inputs.files)


def build_stages(cfg: CurationConfig) -> list[ProcessingStage]:
    layout = Layout(cfg.output_dir)
    in_dir, work = str(Path(cfg.input_dir).resolve()), str(layout.work)
    reader = READERS[cfg.input.format]
    stages: list[ProcessingStage] = [ListInputsStage(
        file_paths=in_dir, files_per_partition=1, file_extensions=list(reader.extensions),
        rows_per_read=cfg.input.rows_per_read, batch_samples=cfg.input.batch_samples),
        reader.build(cfg, in_dir, work)]
    if reader.fetches:
        stages.append(DownloadStage(cfg.download))
    # One part from its encoded images to its token counts, in one worker: its decoded pixels never
    # cross a stage boundary (stages.fused).
    stages.append(FusedStage(ANALYSE_PART, [
        DecodeVerifyStage(**asdict(cfg.image), cache_blocks=cfg.input.batch_samples, keep_side=cfg.resize.max_side),
        CleanTextStage(**asdict(cfg.text)),
        LanguageIdStage(**asdict(cfg.lang)),
        ScriptStage(**asdict(cfg.script)),
        QualityStage(**asdict(cfg.quality)),
        *model_stages(cfg.models),
        ResizeStage(**asdict(cfg.resize)),
        SignatureStage(shingle=cfg.dedup.shingle, num_perm=cfg.dedup.num_perm),
        TokenCountStage(cfg.tokens.tokenizer, get_preset(cfg.tokens.preset).num_image_tokens,
                        max_per_sample=cfg.tokens.max_per_sample),
    ]))
    stages += [
        CheckpointStage(work, str(layout.quarantine), keep_dropped=cfg.quarantine.keep_dropped),
        dedup_stage(cfg),
        ShardWriterStage(work, str(layout.shards), str(layout.quarantine), kind=cfg.kind,
                         samples_per_shard=cfg.shards.samples_per_shard, keep_dropped=cfg.quarantine.keep_dropped),
    ]
    return stages


def model_stages(m: ModelScoreConfig) -> list[ProcessingStage]:
    """The optional model-based filters; each one without a model is left out with a warning.

    The heads need one image embedding each, CLIP score also a text pass, so the heads go first.
    Paths are checked here, before an executor starts (Ray takes 20-30 s to), so a typo fails at
    once and names its field.
    """
    stages: list[ProcessingStage] = []
    embedding = None
    if m.aesthetic_model or m.nsfw_model:
        embedding = _local_model(m.embedding_model, "models.embedding_model", directory=True)
        stages.append(ImageEmbedStage(embedding))
    if m.nsfw_model:
        stages.append(NsfwStage(_local_model(m.nsfw_model, "models.nsfw_model"), max_score=m.max_nsfw_score))
    else:
        logger.warning("models.nsfw_model is not set: NSFW filtering is skipped "
                       "(give local LAION CLIP-NSFW head weights to enable it)")
    if m.aesthetic_model:
        stages.append(AestheticStage(_local_model(m.aesthetic_model, "models.aesthetic_model"),
                                     min_score=m.min_aesthetic_score))
    else:
        logger.warning("models.aesthetic_model is not set: aesthetic filtering is skipped "
                       "(give local LAION aesthetic-predictor weights to enable it)")
    if m.clip_model:
        clip = _local_model(m.clip_model, "models.clip_model", directory=True)
        stages.append(ClipScoreStage(clip, min_score=m.min_clip_score, reuse_image_embeddings=clip == embedding))
    else:
        logger.warning("models.clip_model is not set: CLIP-score filtering is skipped "
                       "(give a local CLIP directory to enable it)")
    return stages


def _local_model(path: str | None, field: str, *, directory: bool = False) -> str:
    resolved = Path(path or "").expanduser().resolve()
    if not path or not (resolved.is_dir() if directory else resolved.is_file()):
        kind = "model directory" if directory else "weights file"
        raise FileNotFoundError(f"{field}={path!r} is not a local {kind} (nothing is downloaded; "
                                f"relative paths are relative to {Path.cwd()})")
    return str(resolved)


def dedup_stage(cfg: CurationConfig) -> ProcessingStage:
    """One fan-in stage, or with `dedup.shards > 1` the sharded composite: the same decisions, with
    the candidate search in independent tasks (nemo_twvlm.curation.stages.dedup.sharded)."""
    d = cfg.dedup
    if d.shards > 1:
        return ShardedDedupStage(str(Layout(cfg.output_dir).work), d, cfg.tokens.budget)
    return DedupStage(exact=d.exact, image_hamming=d.image_hamming, image_bands=d.image_bands,
                      caption_jaccard=d.caption_jaccard, num_perm=d.num_perm, token_budget=cfg.tokens.budget,
                      joint=cfg.kind == "conversations")


def build_pipeline(cfg: CurationConfig) -> Pipeline:
    return Pipeline(name=f"curate_{cfg.kind}", description=f"{cfg.input.format} -> zh-TW Energon shards",
                    stages=build_stages(cfg))


def run_curation(cfg: CurationConfig) -> dict:
    """Run (or resume) the pipeline and summarise it; returns stats.json's content. Raises
    SchemaMismatchError, after writing every output, when most of the input has the wrong layout."""
    sources = input_files(cfg)
    layout = Layout(cfg.output_dir)
    layout.out.mkdir(parents=True, exist_ok=True)
    rerun.refresh(cfg, layout.out, sources)  # a rerun after an input or config change redoes what it changed
    start = time.perf_counter()
    build_pipeline(cfg).run(executor=make_executor(cfg.executor.name, cfg.executor.config))
    stats = finalize(cfg, sorted(sources))
    wall_s = time.perf_counter() - start
    from nemo_twvlm.curation.report import write_report

    write_report(layout.out, stats, cfg, wall_s=wall_s)
    logger.info(f"curation: {stats['input']} in, {stats['kept']} kept, {sum(stats['dropped'].values())} dropped, "
                f"{sum(stats['quarantined'].values())} quarantined in {wall_s:.1f} s -> {layout.out}")
    problem = schema_mismatch(layout.out, stats, cfg)
    if problem:
        raise SchemaMismatchError(problem)
    return stats


def finalize(cfg: CurationConfig, sources: list[str]) -> dict:
    """Sum the markers into stats.json, manifest.json and quarantine/index.jsonl; prepare Energon.

    Everything comes from files the stages wrote, so a resumed run reports what an uninterrupted
    one does.
    """
    layout = Layout(cfg.output_dir)
    stats = {"input": 0, "kept": 0, "dropped": Counter(), "quarantined": Counter(), "text_tokens": 0,
             "image_tokens": 0, "lang": Counter(), "script": Counter(), "converted": Counter(),
             "histograms": {}, "stages": {}}
    stage_rows: dict[str, dict] = {}
    shards: list[dict] = []
    with atomic_writer(layout.quarantine / "index.jsonl") as index:  # streamed: it can be large
        for source in sources:
            shards += _add_source(stats, stage_rows, index, layout, source)

    rejected_total = sum(stats["dropped"].values()) + sum(stats["quarantined"].values())
    if stats["input"] != stats["kept"] + rejected_total:
        raise RuntimeError(f"stats do not add up: input {stats['input']} != kept {stats['kept']} + "
                           f"rejected {rejected_total}")
    stats["stages"] = [{"stage": name, **row} for name, row in stage_rows.items()]
    # Repairs in samples a stage kept (sample.note); they are not rejections, so not in the sum above.
    notes = sum((Counter(row.get("notes", {})) for row in stage_rows.values()), Counter())
    stats["notes"] = dict(sorted(notes.items()))
    stats["shards"] = len(shards)
    stats["skipped_inputs"] = list_inputs(cfg.input_dir, READERS[cfg.input.format].extensions).skipped
    stats["budget"] = {"tokens": cfg.tokens.budget, "used": stats["text_tokens"] + stats["image_tokens"]}
    for key in ("dropped", "quarantined", "lang", "script", "converted"):
        stats[key] = dict(sorted(stats[key].items(), key=lambda kv: str(kv[0])))

    for tmp in layout.out.rglob(".*.tmp"):  # the temp half of a write a killed run never renamed
        tmp.unlink()
    listed = {s["name"] for s in shards}
    for stale in layout.shards.glob("*.tar"):
        if stale.name not in listed:  # from an input file no longer in input_dir
            stale.unlink()
    atomic_write_json(layout.out / "manifest.json", {"shards": sorted(shards, key=lambda s: s["name"])})
    if shards:
        # Written whole (temp, fsync, rename) and sized by their writers: a stat each stands in for
        # reading every shard's headers before Energon does (prepare's check_shards).
        if changed := changed_shard(layout.shards, shards):
            raise RuntimeError(f"{changed}: it changed after its source was written; rerun into the same "
                               "output_dir to rewrite it")
        _prepare_energon(cfg, layout.shards)
    atomic_write_json(layout.out / "stats.json", stats)
    return stats


def _add_source(stats: dict, stage_rows: dict, index: BinaryIO, layout: Layout, source: str) -> list[dict]:
    """Add one source's part markers and final marker to the totals; returns its shards."""
    parts, num_parts = done_parts(layout.work, source)
    marker = final_marker(layout.work, source)
    if num_parts is None or parts != set(range(num_parts)) or not marker.exists():
        raise RuntimeError(f"source {source!r} was not fully processed (parts done {sorted(parts)} of "
                           f"{num_parts}, shards {'written' if marker.exists() else 'missing'})")
    for p in range(num_parts):
        m = read_json(part_marker(layout.work, source, p))
        stats["input"] += m["input"]
        for row in m["stages"]:
            _add_stage(stage_rows, row["stage"], row)
        tar = f"quarantine/{source}/{m['quarantine_tar']}" if m["quarantine_tar"] else None
        index.writelines(_index_line(source, r, tar) for r in m["rejections"])
        for reason, n in m["rejected"].items():
            stats[disposition(reason)][reason] += n
    f = read_json(marker)
    _add_stage(stage_rows, "dedup", {"in": f["kept"] + sum(f["dropped"].values()), "out": f["kept"],
                                     "rejected": f["dropped"]})
    tar = f"quarantine/{source}/{f['quarantine_tar']}" if f["quarantine_tar"] else None
    index.writelines(_index_line(source, r, tar) for r in f["rejections"])
    for reason, n in f["dropped"].items():
        stats[disposition(reason)][reason] += n
    for key in ("kept", "text_tokens", "image_tokens"):
        stats[key] += f[key]
    for key in ("lang", "script", "converted"):
        stats[key].update(f[key])
    for name, counts in f["histograms"].items():
        total = stats["histograms"].setdefault(name, [0] * len(counts))
        stats["histograms"][name] = [a + b for a, b in zip(total, counts)]
    return f["shards"]


def _add_stage(rows: dict[str, dict], name: str, row: dict) -> None:
    total = rows.setdefault(name, {"in": 0, "out": 0, "rejected": Counter()})
    total["in"] += row["in"]
    total["out"] += row["out"]
    total["rejected"] = dict(Counter(total["rejected"]) + Counter(row["rejected"]))
    if "converted" in row:
        total["converted"] = dict(Counter(total.get("converted", {})) + Counter(row["converted"]))
    if "notes" in row:
        total["notes"] = dict(Counter(total.get("notes", {})) + Counter(row["notes"]))


def _index_line(source: str, rejection: list, tar: str | None) -> bytes:
    key, index, stage, reason, detail = rejection
    return (json.dumps({"source": source, "key": key, "index": index, "stage": stage, "reason": reason,
                        "disposition": disposition(reason), "detail": detail, "tar": tar,
                        "member": f"{index:07d}"}, ensure_ascii=False) + "\n").encode("utf-8")


def _prepare_energon(cfg: CurationConfig, shards: Path) -> None:
    from nemo_twvlm.data.energon_prep import prepare

    if cfg.kind == "pairs":
        sample = {"sample_type": "CaptioningSample", "field_map": {"image": cfg.resize.format, "caption": "txt"}}
    elif cfg.kind == "conversations":
        sample = {"sample_type": "ConversationSample", "sample_type_module": "nemo_twvlm.data.samples",
                  "sample_loader_source": CONVERSATION_SAMPLE_LOADER}
    else:
        sample = {"sample_type": "InterleavedSample", "sample_loader_source": INTERLEAVED_SAMPLE_LOADER}
    prepare(shards, check_shards=False, **sample)  # the shards' sizes were checked against their writers'

