"""Input formats: the files each reads and the reader stage that turns them into samples, and the
check that fails a run whose input does not have the layout its config describes.

A new format is one entry in `READERS` (and its kinds in config.INPUT_FORMATS).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nemo_curator.stages.base import ProcessingStage

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.curation.sample import NOT_AN_OBJECT, SCHEMA_REASONS
from nemo_twvlm.curation.stages.io.read_conversations import ConversationReaderStage
from nemo_twvlm.curation.stages.io.read_documents import DocumentReaderStage
from nemo_twvlm.curation.stages.io.read_img2dataset import Img2DatasetReaderStage
from nemo_twvlm.curation.stages.io.read_llava import LlavaPretrainReaderStage
from nemo_twvlm.curation.stages.io.read_mmc4 import Mmc4ReaderStage
from nemo_twvlm.curation.stages.io.read_obelics import ObelicsReaderStage
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage
from nemo_twvlm.curation.stages.io.read_webdataset import WebDatasetReaderStage


@dataclass(frozen=True)
class InputFormat:
    extensions: tuple[str, ...]
    fetches: bool          # samples name their images by url or path: the download stage reads them
    build: Callable[[CurationConfig, str, str], ProcessingStage]  # (cfg, input_dir, work_dir) -> reader


def _rows(cls: type) -> Callable[[CurationConfig, str, str], ProcessingStage]:
    """A row reader: it reads the input.* fields it needs (column names, image_dir, batch_samples)."""
    def build(cfg: CurationConfig, in_dir: str, work: str) -> ProcessingStage:
        return cls(in_dir, work, cfg.input)
    return build


def _tars(cls: type) -> Callable[[CurationConfig, str, str], ProcessingStage]:
    def build(cfg: CurationConfig, in_dir: str, work: str) -> ProcessingStage:
        return cls(in_dir, work, kind=cfg.kind, formats=cfg.image.formats, batch_samples=cfg.input.batch_samples)
    return build


READERS: dict[str, InputFormat] = {
    "webdataset": InputFormat((".tar",), False, _tars(WebDatasetReaderStage)),
    "table": InputFormat((".parquet", ".jsonl"), True, _rows(TableReaderStage)),
    "jsonl_docs": InputFormat((".jsonl",), True, _rows(DocumentReaderStage)),
    "llava_json": InputFormat((".json",), True, _rows(LlavaPretrainReaderStage)),
    "img2dataset": InputFormat((".tar",), False, _tars(Img2DatasetReaderStage)),
    "obelics": InputFormat((".parquet",), True, _rows(ObelicsReaderStage)),
    "mmc4": InputFormat((".jsonl",), True, _rows(Mmc4ReaderStage)),
    "conversations": InputFormat((".json", ".jsonl", ".parquet"), True, _rows(ConversationReaderStage)),
}


class SchemaMismatchError(ValueError):
    """Most of the input was rejected because its columns or field types are not the configured ones."""


def schema_mismatch(out: Path, stats: dict, cfg: CurationConfig) -> str | None:
    """Why the run must not count as a success, or None: at least `input.max_schema_mismatch` of
    the input was rejected for its layout (sample.SCHEMA_REASONS, lines that are not JSON objects). The message lists
    the distinct problems per file (each names the expected and the found columns or types)."""
    if not stats["input"]:
        return None
    problems: Counter[tuple[str, str]] = Counter()
    with open(out / "quarantine" / "index.jsonl", encoding="utf-8") as index:
        for line in index:
            entry = json.loads(line)
            not_an_object = entry["reason"] == "bad_row" and entry["detail"] == NOT_AN_OBJECT
            if entry["reason"] in SCHEMA_REASONS or not_an_object:
                problems[entry["source"], entry["detail"]] += 1
    rejected = sum(problems.values())
    if rejected < cfg.input.max_schema_mismatch * stats["input"]:
        return None
    listed = "\n".join(f"  {source} ({n} rows): {detail}" for (source, detail), n in problems.most_common(10))
    return (f"{rejected} of {stats['input']} input samples do not have the layout input.format="
            f"{cfg.input.format!r} with this config expects (input.max_schema_mismatch="
            f"{cfg.input.max_schema_mismatch}):\n{listed}\nSet the input.*_column fields to the input's column "
            f"names, or pick its input.format / --config-name. Counts are in {out / 'stats.json'}, every "
            f"row in {out / 'quarantine' / 'index.jsonl'}.")
