"""Curation: NeMo Curator pipelines from raw pairs / interleaved documents to zh-TW Energon shards.

    python -m nemo_twvlm.curation --config-name pairs_zh_tw input_dir=IN output_dir=OUT

Modules:
    cli.py        the entry points: Hydra composes conf/curation/<name>.yaml; `nemo twvlm curate` calls it
    config.py     the typed config the YAML in conf/curation/ is checked into
    pipeline.py   stages composed from a config; run, resume, summarise (stats, manifest, Energon)
    readers.py    input.format -> its files and reader stage (the published layouts); the schema-mismatch check
    executors.py  Ray Data / Xenna / in-process, chosen last
    stages/       one Curator ProcessingStage per file
    sample.py     the task types stages pass along, and which reasons are quarantine vs drop
    zh.py         Chinese-aware cleaning, script detection (OpenCC), quality metrics
    hashing.py    pixel hash, pHash + banded LSH, MinHash LSH
    parts.py, storage.py   the on-disk layout: parts, markers, atomic writes, reproducible tars
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
