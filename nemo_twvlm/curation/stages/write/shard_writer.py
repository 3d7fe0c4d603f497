"""Write one source's kept samples as WebDataset shards (N per shard, temp + rename), put what
dedup dropped in quarantine, and record the shards (size, sha256) and the source's totals.

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
from nemo_twvlm.curation.storage import atomic_write, atomic_write_json, read_json, read_part_rows, sha256, tar_bytes


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
            shards_dir = Path(self.shards_dir)
            if done["digest"] == digest and all((shards_dir / s["name"]).is_file()
                                                and (shards_dir / s["name"]).stat().st_size == s["bytes"]
                                                for s in done["shards"]):
                return task
        atomic_write_json(marker, self._write(task) | {"digest": digest})
        return task

    def _digest(self, task: SourceDecision) -> str:
        decisions = sorted((int(i), *v) for i, v in task.data.items())
        settings = [self.kind, self.samples_per_shard, self.keep_dropped, task.num_parts]
        return hashlib.sha256(json.dumps([settings, decisions]).encode()).hexdigest()

    def _write(self, task: SourceDecision) -> dict:
        kept: list[tuple[str, dict[str, bytes]]] = []
        dropped: list[Rejection] = []
        totals = {"kept": 0, "text_tokens": 0, "image_tokens": 0}
        langs, scripts, converted = Counter(), Counter(), Counter()
        observations: dict[str, list[float]] = {name: [] for name in HISTOGRAMS}
        for part in range(task.num_parts):
            for row in read_part_rows(part_table(self.work_dir, task.source, part)):
                meta = json.loads(row["meta"])
                parts = output_parts(row, meta, self.kind)
                if row["index"] in task.data:
                    reason, detail = task.data[row["index"]]
                    dropped.append(Rejection(row["key"], row["index"], "dedup", reason, detail, parts))
                    continue
                kept.append((f"{task.source}-{row['index']:07d}", parts))
                totals["kept"] += 1
                totals["text_tokens"] += row["text_tokens"]
                totals["image_tokens"] += row["image_tokens"]
                langs[meta.get("lang")] += 1
                scripts[meta.get("script") or "n/a"] += 1
                converted[meta.get("converted") or "none"] += 1
                for name, values in _observations(row, meta).items():
                    observations[name].extend(values)

        shards = self._write_shards(task.source, kept)
        names = {s["name"] for s in shards}
        for stale in Path(self.shards_dir).glob(f"{task.source}-*.tar"):
            if stale.name not in names:  # left by an earlier run that kept more of this source
                stale.unlink()

        quarantine = Path(self.quarantine_dir) / task.source / "dedup.tar"
        if dropped:
            atomic_write(quarantine, tar_bytes(quarantine_members(dropped, self.keep_dropped)))
        elif quarantine.exists():
            quarantine.unlink()
        return totals | {
            "source": task.source,
            "dropped": dict(Counter(r.reason for r in dropped)),
            "rejections": [[r.key, r.index, r.stage, r.reason, r.detail] for r in dropped],
            "quarantine_tar": quarantine.name if dropped else None,
            "lang": dict(langs), "script": dict(scripts), "converted": dict(converted),
            "histograms": {name: histogram(values, HISTOGRAMS[name]) for name, values in observations.items()},
            "shards": shards,
        }

    def _write_shards(self, source: str, kept: list[tuple[str, dict[str, bytes]]]) -> list[dict]:
        """Write the shards; returns their names, sample counts, sizes and sha256. A shard's write and
        fsync (waiting on the disk) run beside its checksum and the next shard's tar; all of them are
        on disk when this returns, so the source's marker still comes after its shards."""
        shards = []
        with ThreadPoolExecutor(max_workers=1) as disk:
            writing: Future | None = None
            for k in range(0, len(kept), self.samples_per_shard):
                name = f"{source}-{k // self.samples_per_shard:05d}.tar"
                data = tar_bytes(kept[k:k + self.samples_per_shard])
                if writing is not None:
                    writing.result()  # one shard on its way to disk while the next is built, not all of them
                writing = disk.submit(atomic_write, Path(self.shards_dir) / name, data, uncached=True)
                shards.append({"name": name, "samples": len(kept[k:k + self.samples_per_shard]),
                               "bytes": len(data), "sha256": sha256(data)})
            if writing is not None:
                writing.result()
        return shards
