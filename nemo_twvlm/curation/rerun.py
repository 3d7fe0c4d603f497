"""Rerun fingerprints: what a run's parts were computed from, so that a rerun into the same
output_dir reuses only the parts of unchanged input files under an unchanged config.

OUT/work/fingerprint.json records the config (every key that decides what is kept and how it is
written), how the dedup signatures are computed (hashing.SIGNATURES) and each input file's size and
modification time. Before a run:
- a changed config or signature redoes everything: work/, quarantine/ and shards/ are removed, as if OUT were new;
- a changed, new or removed input file redoes that file: its parts, its shard marker and its
  quarantine tars are removed (dedup sees every part anyway, so other files' decisions follow);
- otherwise the run resumes (a killed run leaves complete parts behind: nemo_twvlm.curation.parts).
Each case is logged naming what changed. Files an input only names (table rows' local image paths)
and the contents of the tokenizer and language-ID model are not fingerprinted: a change there
needs a new output_dir.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from loguru import logger

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.curation.hashing import SIGNATURES
from nemo_twvlm.curation.parts import analysed_dir, final_marker
from nemo_twvlm.curation.storage import atomic_write_json, read_json

# Where the outputs go, which executor runs the stages, how the report looks and how many rows a reader
# task takes (the parts are the same) decide nothing: sections, or single keys.
_NOT_DECIDING = ("output_dir", "executor", "report", "input.rows_per_read")


def fingerprint_path(work: Path) -> Path:
    return work / "fingerprint.json"


def fingerprint(cfg: CurationConfig, sources: dict[str, Path]) -> dict:
    config = {k: v for k, v in _flat(cfg.to_dict()).items()
              if k.split(".")[0] not in _NOT_DECIDING and k not in _NOT_DECIDING}
    config.update(_flat(SIGNATURES, "signatures."))  # parts signed another way never compare with these
    files = {source: [path.stat().st_size, path.stat().st_mtime_ns] for source, path in sorted(sources.items())}
    return {"config": config, "sources": files}


def refresh(cfg: CurationConfig, out: Path, sources: dict[str, Path]) -> None:
    """Remove what a change made stale (module docstring), then record this run's fingerprint."""
    work = out / "work"
    now = fingerprint(cfg, sources)
    before = _read(work)
    if before is None and (work / "analysed").exists():
        logger.warning(f"output_dir={str(out)!r} holds parts of a run that left no fingerprint: every part is redone")
        _redo_all(out)
    elif before is not None and before["config"] != now["config"]:
        logger.warning(f"output_dir={str(out)!r}: the config changed since the last run into it "
                       f"({'; '.join(_changes(before['config'], now['config']))}): every part is redone")
        _redo_all(out)
    elif before is not None and before["sources"] != now["sources"]:
        _redo_sources(out, work, before["sources"], now["sources"])
    atomic_write_json(fingerprint_path(work), now)


def _redo_all(out: Path) -> None:
    for stale in ("work", "quarantine", "shards"):
        shutil.rmtree(out / stale, ignore_errors=True)


def _redo_sources(out: Path, work: Path, before: dict, now: dict) -> None:
    changed = {source: _describe(before.get(source), now.get(source))
               for source in sorted(before.keys() | now.keys()) if before.get(source) != now.get(source)}
    logger.warning(f"output_dir={str(out)!r}: input files changed since the last run into it "
                   f"({'; '.join(f'{s}: {why}' for s, why in changed.items())}): their parts are redone")
    for source in changed:
        shutil.rmtree(analysed_dir(work, source), ignore_errors=True)
        shutil.rmtree(out / "quarantine" / source, ignore_errors=True)
        final_marker(work, source).unlink(missing_ok=True)
    shutil.rmtree(work / "dedup", ignore_errors=True)  # band keys are rewritten every run


def _describe(before: list | None, now: list | None) -> str:
    if before is None:
        return "new"
    if now is None:
        return "gone"
    return f"{before[0]} -> {now[0]} bytes" if before[0] != now[0] else "modified"


def _changes(before: dict, now: dict) -> list[str]:
    return [f"{key}: {before.get(key, '(unset)')!r} -> {now.get(key, '(unset)')!r}"
            for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)][:10]


def _read(work: Path) -> dict | None:
    path = fingerprint_path(work)
    return read_json(path) if path.is_file() else None


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
