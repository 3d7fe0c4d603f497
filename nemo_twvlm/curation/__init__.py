"""Curation: NeMo Curator pipelines from raw pairs / interleaved documents to zh-TW Energon shards.

    python -m nemo_twvlm.curation --config-name pairs_zh_tw input_dir=IN output_dir=OUT

Modules:
    cli.py        the entry points: Hydra composes conf/curation/<name>.yaml; `nemo twvlm curate` calls it
    config.py     the schema of conf/curation/*.yaml (types, ranges, choices; no values of its own)
    pipeline.py   stages composed from a config; run, resume, summarise (stats, manifest, Energon)
    rerun.py      rerun fingerprints: a changed config or input file redoes what it made stale
    readers.py    input.format -> its files and reader stage (the published layouts); the schema-mismatch check
    executors.py  Ray Data / Xenna / in-process, chosen last
    stages/       one Curator ProcessingStage per file, by concern: io/ (listing, readers, download,
                  decode/verify), filters/ (text cleaning, language, script, quality, tokens),
                  models/ (CLIP embeddings and score, the LAION heads), dedup/ (signatures, the
                  fan-in dedup, the sharded CompositeStage), write/ (resize, part checkpoints, shards)
    sample.py     the task types stages pass along, and which reasons are quarantine vs drop
    zh.py         Chinese-aware cleaning, script detection (OpenCC), quality metrics
    hashing.py    pixel hash, pHash + banded LSH, MinHash LSH
    parts.py, storage.py   the on-disk layout: parts, markers, atomic writes, reproducible tars
    histograms.py the fixed histogram bins of stats.json
    report.py     report.html
"""
from nemo_twvlm.curation.config import CurationConfig

__all__ = ["CurationConfig", "build_pipeline", "run_curation"]


def __getattr__(name: str):
    # The pipeline imports NeMo Curator (~1 s); `nemo twvlm`, which imports the config, rarely needs it.
    if name in ("build_pipeline", "run_curation"):
        from nemo_twvlm.curation import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
