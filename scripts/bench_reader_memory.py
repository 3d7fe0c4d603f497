"""Peak Python allocations of one reader task per row, for each row input format in its published
layout, at two text lengths: what a worker holds while it reads a range of `input.rows_per_read` rows
(the samples it makes, the rows they came from and, for the quarantine, each row's JSON; Python's
allocations at their peak plus Arrow's pool at its peak, for Parquet's table). The planner
charges a reader task fixed + per-character bytes a row from these (plan.READER_ROW_BYTES).

    .venv/bin/python scripts/bench_reader_memory.py [--rows 4000] [--chars 46 2000]

Text is zh-TW (3 UTF-8 bytes a character), split over three paragraphs or turns where the layout has
them, with three image URLs a document; each format reads with its conf/curation YAML's columns.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.readers import READERS
from nemo_twvlm.data.synthetic import TAIWAN_LINES

ZH = "".join(line for line in TAIWAN_LINES if not line.isascii())
URL = "https://example.com/images/{}.jpg"


def text(rng: np.random.Generator, chars: int) -> str:
    start = int(rng.integers(0, len(ZH)))
    return ((ZH[start:] + ZH) * (chars // len(ZH) + 2))[:chars]


def thirds(rng: np.random.Generator, chars: int) -> list[str]:
    return [text(rng, chars // 3 + (i < chars % 3)) for i in range(3)]


def laion(i: int, rng, chars: int) -> dict:
    return {"SAMPLE_ID": i, "URL": URL.format(i), "TEXT": text(rng, chars), "HEIGHT": 512, "WIDTH": 512,
            "LICENSE": "?", "NSFW": "UNLIKELY", "similarity": 0.31}


def llava_pretrain(i: int, rng, chars: int) -> dict:
    return {"id": f"{i:09d}", "image": f"{i // 10000:05d}/{i:09d}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nRender a clear and concise summary of the photo."},
        {"from": "gpt", "value": text(rng, chars)}]}


def llava_instruct(i: int, rng, chars: int) -> dict:
    question, answer, follow_up = thirds(rng, chars)
    return {"id": f"{i:09d}", "image": f"coco/train2017/{i:012d}.jpg", "conversations": [
        {"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer},
        {"from": "human", "value": follow_up[: len(follow_up) // 2]},
        {"from": "gpt", "value": follow_up[len(follow_up) // 2:]}]}


def obelics(i: int, rng, chars: int) -> dict:
    texts, images = [], []
    for k, paragraph in enumerate(thirds(rng, chars)):
        texts += [None, paragraph]
        images += [URL.format(f"{i}_{k}"), None]
    return {"texts": texts, "images": images, "metadata": json.dumps([None] * 6), "general_metadata": "{}"}


def mmc4(i: int, rng, chars: int) -> dict:
    return {"text_list": thirds(rng, chars), "url": f"https://example.com/{i}", "image_info": [
        {"raw_url": URL.format(f"{i}_{k}"), "image_name": f"{i}_{k}.jpg", "matched_text_index": k,
         "matched_sim": 0.3} for k in range(3)]}


def documents(i: int, rng, chars: int) -> dict:
    segments: list = []
    for k, paragraph in enumerate(thirds(rng, chars)):
        segments += [{"image": URL.format(f"{i}_{k}")}, paragraph]
    return {"id": f"doc{i}", "segments": segments}


# format -> (its config, file extension, row builder)
FORMATS = {
    "table": ("pairs_laion", ".parquet", laion),
    "llava_json": ("pairs_llava_pretrain", ".json", llava_pretrain),
    "conversations": ("conversations_zh_tw", ".json", llava_instruct),
    "obelics": ("interleaved_obelics", ".parquet", obelics),
    "mmc4": ("interleaved_mmc4", ".jsonl", mmc4),
    "jsonl_docs": ("interleaved_zh_tw", ".jsonl", documents),
}


def write(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def peak_per_row(fmt: str, rows: int, chars: int, tmp: Path) -> float:
    config, extension, build = FORMATS[fmt]
    rng = np.random.default_rng(0)
    folder = tmp / f"{fmt}_{chars}"
    folder.mkdir()
    path = folder / f"rows{extension}"
    write(path, [build(i, rng, chars) for i in range(rows)])
    cfg = compose_config(config, [f"input_dir={folder}", f"output_dir={tmp / 'out'}"], check=False)
    reader = READERS[fmt].build(cfg, str(folder), str(tmp / "work"))
    arrow = pa.default_memory_pool()
    before = arrow.max_memory() or 0
    tracemalloc.start()
    batches = reader.read(str(path), "rows", "d")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    kept = sum(len(b.data) for b in batches)
    if kept != rows:
        raise SystemExit(f"{fmt}: {kept} of {rows} rows read as samples; the generator is not in the layout")
    return (peak + (arrow.max_memory() or 0) - before) / rows


def _measure(args: tuple) -> float:
    return peak_per_row(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--chars", type=int, nargs=2, default=[46, 2000], help="two text lengths, for the fit")
    args = parser.parse_args()
    low, high = args.chars
    if args.rows < 1 or low == high or min(low, high) < 0:
        raise SystemExit(f"--rows {args.rows} must be >= 1 and --chars {low} {high} two different lengths >= 0")
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(1, max_tasks_per_child=1) as fresh:
        for fmt in FORMATS:
            # A fresh process each: Arrow's pool reports only its lifetime peak.
            small, large = fresh.map(_measure, [(fmt, args.rows, chars, Path(tmp)) for chars in (low, high)])
            per_char = (large - small) / (high - low)
            print(json.dumps({"format": fmt, "rows": args.rows, f"bytes_per_row_at_{low}": round(small),
                              f"bytes_per_row_at_{high}": round(large), "fixed": round(small - per_char * low),
                              "per_char": round(per_char, 2)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
