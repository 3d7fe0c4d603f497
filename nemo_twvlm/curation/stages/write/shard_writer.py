"""Write one source's kept samples as WebDataset shards (N per shard, temp + rename), put what
dedup dropped in quarantine, and record the shards (size, sha256) and the source's totals.

Both are streamed as the source's part tables are read back, one part at a time: a worker holds one
part's images, not the source's (an img2dataset tar of 10,000 512 px pairs is ~0.7 GB of JPEG).

Shards are named after their source, `<source>-<k>.tar`, so every source is written by exactly one
task and a rerun rewrites the same bytes. A source whose marker matches the decisions is skipped.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.histograms import HISTOGRAMS, histogram
from nemo_twvlm.curation.parts import final_marker, part_table
from nemo_twvlm.curation.sample import Rejection, SourceDecision
from nemo_twvlm.curation.stages.base import CurationStage
from nemo_twvlm.curation.stages.write.checkpoint import quarantine_members
from nemo_twvlm.curation.storage import AtomicFile, TarWriter, atomic_write_json, read_json, read_part_rows


# Energon's view of conversation shards: `json` holds the turns and names the image parts, in
# placeholder order, which Energon decodes (nemo_twvlm.data.samples.ConversationSample).
CONVERSATION_SAMPLE_LOADER = '''\
"""Energon sample loader for nemo_twvlm curated conversations."""


def sample_loader(raw: dict) -> dict:
    doc = raw["json"]
    return dict(images=[raw[name] for name in doc["images"]], conversation=doc["conversations"])


def part_filter(part: str) -> bool:
    return part == "json" or part.rsplit(".", 1)[-1] in ("jpg", "png")
'''


def output_parts(row: dict, meta: dict, kind: str) -> dict[str, bytes]:
    """A kept row as WebDataset parts: pairs `<ext>` + `txt` + `json`; documents and conversations
    `json` + `<i>.<ext>`."""
    doc = json.loads(row["doc"])
    meta = meta | {"key": row["key"], "text_tokens": row["text_tokens"], "image_tokens": row["image_tokens"]}
    if kind == "pairs":
        return {row["image_exts"][0]: row["images"][0], "txt": doc[1].encode("utf-8"),
                "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")}
    names = [f"{i}.{ext}" for i, ext in enumerate(row["image_exts"])]
    if kind == "conversations":
        roles = meta.pop("roles")
        turns = [{"role": role, "content": text} for role, text in zip(roles, (s for s in doc if isinstance(s, str)))]
        body = {"conversations": turns, "images": names, "meta": meta}
        return {"json": json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8"),
                **dict(zip(names, row["images"]))}
    segments = [{"image": names[s["image"]]} if isinstance(s, dict) else s for s in doc]
    parts = {"json": json.dumps({"segments": segments, "meta": meta}, ensure_ascii=False,
                                sort_keys=True).encode("utf-8")}
    parts.update(zip(names, row["images"]))
    return parts


def _observations(row: dict, meta: dict) -> dict[str, list[float]]:
    sizes = [(m["width"], m["height"]) for m in meta["images"]]
    return {
        "image_side": [max(w, h) for w, h in sizes],
        "aspect": [w / h for w, h in sizes],
        "text_chars": [meta.get("chars", 0)],
        "tokens": [row["text_tokens"] + row["image_tokens"]],
    }


@dataclass
class ShardWriterStage(CurationStage[SourceDecision, SourceDecision]):
    work_dir: str
    shards_dir: str
    quarantine_dir: str
    kind: str
    samples_per_shard: int
    keep_dropped: bool
    name: str = "write_shards"

    def process(self, task: SourceDecision) -> SourceDecision:
        marker = final_marker(self.work_dir, task.source)
        digest = self._digest(task)
        if marker.exists():
            done = read_json(marker)
            if done["digest"] == digest and not changed_shard(Path(self.shards_dir), done["shards"]):
                return task
        atomic_write_json(marker, self._write(task) | {"digest": digest})
        return task

    def _digest(self, task: SourceDecision) -> str:
        decisions = sorted((int(i), *v) for i, v in task.data.items())
        settings = [self.kind, self.samples_per_shard, self.keep_dropped, task.num_parts]
        return hashlib.sha256(json.dumps([settings, decisions]).encode()).hexdigest()

    def _write(self, task: SourceDecision) -> dict:
        """The source's parts read back one at a time and streamed into its shards and its dedup
        quarantine: a worker holds one part's images, whatever the size of the source."""
        totals = {"kept": 0, "text_tokens": 0, "image_tokens": 0}
        langs, scripts, converted = Counter(), Counter(), Counter()
        observations: dict[str, list[float]] = {name: [] for name in HISTOGRAMS}
        dropped: list[list] = []
        quarantine_path = Path(self.quarantine_dir) / task.source / "dedup.tar"
        quarantine: tuple[AtomicFile, TarWriter] | None = None
        with ThreadPoolExecutor(max_workers=1) as disk:
            shards = _ShardStream(Path(self.shards_dir), task.source, self.samples_per_shard, disk)
            try:
                for part in range(task.num_parts):
                    for row in read_part_rows(part_table(self.work_dir, task.source, part)):
                        meta = json.loads(row["meta"])
                        parts = output_parts(row, meta, self.kind)
                        if row["index"] in task.data:
                            reason, detail = task.data[row["index"]]
                            rejection = Rejection(row["key"], row["index"], "dedup", reason, detail, parts)
                            if quarantine is None:
                                file = AtomicFile(quarantine_path)
                                quarantine = file, TarWriter(file.file)
                            for key, members in quarantine_members([rejection], self.keep_dropped):
                                quarantine[1].add(key, members)
                            dropped.append([rejection.key, rejection.index, rejection.stage, reason, detail])
                            continue
                        shards.add(f"{task.source}-{row['index']:07d}", parts)
                        totals["kept"] += 1
                        totals["text_tokens"] += row["text_tokens"]
                        totals["image_tokens"] += row["image_tokens"]
                        langs[meta.get("lang")] += 1
                        scripts[meta.get("script") or "n/a"] += 1
                        converted[meta.get("converted") or "none"] += 1
                        for name, values in _observations(row, meta).items():
                            observations[name].extend(values)
                written = shards.finish()
                if quarantine is not None:
                    quarantine[1].finish()
                    quarantine[0].commit()
            except BaseException:
                shards.abort()
                if quarantine is not None:
                    quarantine[0].abort()
                raise

        names = {s["name"] for s in written}
        for stale in Path(self.shards_dir).glob(f"{task.source}-*.tar"):
            if stale.name not in names:  # left by an earlier run that kept more of this source
                stale.unlink()
        if quarantine is None and quarantine_path.exists():
            quarantine_path.unlink()
        return totals | {
            "source": task.source,
            "dropped": dict(Counter(reason for _, _, _, reason, _ in dropped)),
            "rejections": dropped,
            "quarantine_tar": quarantine_path.name if dropped else None,
            "lang": dict(langs), "script": dict(scripts), "converted": dict(converted),
            "histograms": {name: histogram(values, HISTOGRAMS[name]) for name, values in observations.items()},
            "shards": written,
        }


def changed_shard(shards_dir: Path, shards: list[dict]) -> str | None:
    """How the first of these recorded shards that is not on disk at its recorded size differs, or None
    when all are as written."""
    for shard in shards:
        path = shards_dir / shard["name"]
        size = path.stat().st_size if path.is_file() else None
        if size != shard["bytes"]:
            found = "is missing" if size is None else f"is {size} bytes"
            return f"shard {path} {found}, but {shard['bytes']} bytes were written"
    return None


class _ShardStream:
    """A source's shards (`<source>-<k>.tar`, `per_shard` samples each) written as its samples arrive.
    A full shard's fsync and rename run on `disk` beside the next shard's writing, one at a time; all
    are on disk when `finish` returns, so the source's marker still comes after its shards."""

    def __init__(self, shards_dir: Path, source: str, per_shard: int, disk: ThreadPoolExecutor):
        self.shards_dir, self.source, self.per_shard, self.disk = shards_dir, source, per_shard, disk
        self.shards: list[dict] = []
        self._open: tuple[AtomicFile, TarWriter] | None = None
        self._committing: Future | None = None

    def add(self, key: str, parts: dict[str, bytes]) -> None:
        if self._open is None:
            file = AtomicFile(self.shards_dir / f"{self.source}-{len(self.shards):05d}.tar", uncached=True)
            self._open = file, TarWriter(file.file)
        self._open[1].add(key, parts)
        if self._open[1].samples == self.per_shard:
            self._close()

    def finish(self) -> list[dict]:
        """The shards' names, sample counts, sizes and sha256, once all are on disk."""
        if self._open is not None:
            self._close()
        if self._committing is not None:
            self._committing.result()
        return self.shards

    def abort(self) -> None:
        if self._open is not None:
            self._open[0].abort()

    def _close(self) -> None:
        file, tar = self._open
        self._open = None
        tar.finish()
        self.shards.append({"name": file.path.name, "samples": tar.samples, "bytes": tar.bytes,
                            "sha256": tar.sha256})
        if self._committing is not None:
            self._committing.result()  # one shard on its way to disk while the next is written, not all of them
        self._committing = self.disk.submit(file.commit)
