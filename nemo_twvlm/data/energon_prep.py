"""Make a folder of WebDataset shards loadable by Energon (what `energon prepare` does, in-process).

Calling the Python API instead of the `energon` CLI saves a second interpreter start and its
multi-second megatron import, and lets callers pass a sample loader as source text.
"""
from __future__ import annotations

import json
import logging
import os
import tarfile
from pathlib import Path

import yaml
from megatron.energon.epathlib import EPath
from megatron.energon.flavors import BaseWebdatasetFactory
from megatron.energon.flavors.webdataset.config import INFO_JSON_FILENAME, MAIN_FOLDER_NAME
from tqdm import tqdm

SPLIT_NAMES = ("train", "val", "test")

log = logging.getLogger(__name__)


def _readable_shard(path: Path) -> bool:
    """Energon aborts the whole folder on one unreadable shard; skip it with a logged reason instead.
    Every header is read (getmembers) because a copy cut off mid-member looks fine at its start."""
    try:
        with tarfile.open(path, "r:*") as tar:
            if tar.getmembers():
                return True
        reason = "no members"
    except (tarfile.TarError, OSError, EOFError) as error:
        reason = f"{type(error).__name__}: {error}"
    log.warning("skipping shard %s: %s", path, reason)
    return False


def _available_cpus() -> int:
    """The CPUs this process may run on (a Slurm allocation's, not the node's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(
    path: str | Path,
    *,
    sample_type: str,
    field_map: dict[str, str] | None = None,
    sample_loader_source: str | None = None,
    split: tuple[float, float, float] = (1, 0, 0),
    sample_type_module: str = "megatron.energon",
    check_shards: bool = True,
    workers: int | None = None,
) -> dict[str, int]:
    """Index every `*.tar` under `path`, write `.nv-meta/{split.yaml,dataset.yaml}`; return shard counts.

    `sample_type` is a sample class name in `sample_type_module` (Energon's own by default, e.g.
    "CaptioningSample"; ours live in `nemo_twvlm.data.samples`). Give exactly one of
    `field_map` (sample field -> part name) or `sample_loader_source` (a `sample_loader.py` defining
    `sample_loader(raw) -> dict` and `part_filter(part) -> bool`). `split` is the train/val/test
    ratio over shards, so a held-out folder uses (0, 1, 0).

    `check_shards=False` skips reading every shard's headers before Energon does (a writer that
    fsynced and sized them knows they are whole): that pass costs more than Energon's indexing, which
    runs on `workers` processes (default: this process's CPUs, at most one per shard) feeding one
    index writer (BENCHMARKS.md 5c).
    """
    if (field_map is None) == (sample_loader_source is None):
        raise ValueError("give exactly one of field_map or sample_loader_source")
    root = Path(path)
    tars = [str(p.relative_to(root)) for p in sorted(root.glob("**/*.tar")) if not check_shards or _readable_shard(p)]
    if not tars:
        raise FileNotFoundError(f"no readable .tar shards under {root}")
    BaseWebdatasetFactory.prepare_dataset(
        EPath(root),
        tars,
        split_parts_ratio=list(zip(SPLIT_NAMES, split)),
        shuffle_seed=None,  # keep shard order so a split is reproducible and readable
        workers=min(workers or _available_cpus(), len(tars)),
        # Energon advances this once per shard indexed; a bar only on a terminal (disable=None).
        progress_fn=lambda steps, total: iter(tqdm(steps, total=total, desc="energon index", unit="shard",
                                                   mininterval=2, disable=None)),
    )
    meta = root / MAIN_FOLDER_NAME
    definition: dict = {"sample_type": {"__module__": sample_type_module, "__class__": sample_type}}
    if field_map is not None:
        definition["field_map"] = field_map
    else:
        (meta / "sample_loader.py").write_text(sample_loader_source, encoding="utf-8")
        definition["sample_loader"] = "sample_loader.py:sample_loader"
        definition["part_filter"] = "sample_loader.py:part_filter"
    with open(meta / "dataset.yaml", "w", encoding="utf-8") as f:
        yaml.dump(definition, f, sort_keys=False)
    return json.loads((meta / INFO_JSON_FILENAME).read_text())["shard_counts"]
