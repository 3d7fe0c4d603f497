"""Curation cost per character of text: the interleaved pipeline on one core, on documents of one (or
--images) 256 px image and texts of several lengths, each stage's CPU time per document and the bytes written.

    .venv/bin/python scripts/bench_curation_text.py [--chars 45 500 2000 8000] [--docs 400] [--repeat 3]
                                                    [--images 1]

The images are the same in every run, so what grows with the text is the text's cost. Straight-line
fits against the characters per document give the slopes `nemo_twvlm.curation.plan` charges for text
beyond a caption's: the pipeline's CPU ms per document (all stages; TEXT_MS_PER_CHAR), the shards'
bytes (TEXT_SHARD_BYTES_PER_CHAR) and the work dir's (part tables, dedup state; TEXT_WORK_BYTES_PER_CHAR).
The text is zh-TW words (from data.synthetic.TAIWAN_LINES) drawn at random, so no two documents share
it and dedup keeps them all. Tokens are counted with Meta's Llama-3 vocabulary, as in bench_curation.py,
with no limit per document, so that the longest documents are kept and written too.
Each JSON line (one per length) also gives what the planner charges such a document (`planner_ms_per_doc`:
--images per-image pairs costs plus the text beyond their captions); then comes the fit.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench_curation import ZH, config, photo, pipeline_rate, tokenizer_dir  # noqa: E402
from nemo_twvlm.curation import plan  # noqa: E402
from nemo_twvlm.curation.storage import tar_bytes  # noqa: E402


# Two-character words from the zh-TW lines: the lines themselves are too few (45 of ~15 characters) for a
# long text whose 3-grams do not repeat, which quality_zh rejects; random words with punctuation pass it.
WORDS = sorted({han[i:i + 2] for line in ZH for han in re.findall(r"[\u4e00-\u9fff]+", line)
                for i in range(0, len(han) - 1, 2)})


def zh_text(rng: np.random.Generator, chars: int) -> str:
    """`chars` characters of zh-TW words in random order, a comma after one in ten, a full stop after 3%."""
    parts, length = [], 0
    while length < chars:
        word = WORDS[int(rng.integers(len(WORDS)))]
        mark = rng.random()
        parts.append(word + ("，" if mark < 0.1 else "。" if mark < 0.13 else ""))
        length += len(parts[-1])
    return "".join(parts)[:chars]


def write_documents(folder: Path, docs: int, chars: int, images: int = 1) -> None:
    """One tar of `docs` documents: text, then each of `images` 256 px photos followed by text (the texts
    `chars` together)."""
    rng = np.random.default_rng(chars)
    samples = []
    for i in range(docs):
        cuts = [chars * k // (images + 1) for k in range(images + 2)]
        segments: list = [zh_text(rng, cuts[1])]
        parts = {}
        for k in range(images):
            parts[f"{k}.jpg"] = photo(rng, 256)
            segments += [{"image": f"{k}.jpg"}, zh_text(rng, cuts[k + 2] - cuts[k + 1])]
        samples.append((f"d{i:06d}", {**parts, "json": json.dumps({"segments": segments}).encode()}))
    folder.mkdir(parents=True)
    (folder / "00000.tar").write_bytes(tar_bytes(samples))


def run(folder: Path, out: Path, tokenizer: Path) -> dict:
    """bench_curation's timed run of the interleaved pipeline, and the bytes it wrote."""
    result = pipeline_rate(config(folder, out, tokenizer, "interleaved_zh_tw",
                                  ("input.format=webdataset", "tokens.max_per_sample=1000000")))
    work = [p for p in (out / "work").rglob("*") if p.is_file()]
    return {**result, "shard_bytes": sum(p.stat().st_size for p in (out / "shards").glob("*.tar")),
            "work_bytes": sum(p.stat().st_size for p in work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[45, 500, 2000, 8000])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=1, help="256 px photos per document")
    args = parser.parse_args()
    if len(args.chars) < 2:
        parser.error("--chars needs two lengths at least, for the fit")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tokenizer_dir("meta", Path(tmp))
        warm = Path(tmp) / "warm"
        write_documents(warm, 16, 100)
        run(warm, Path(tmp) / "warm_out", tokenizer)  # imports and model loads, outside the timings
        for chars in args.chars:
            folder = Path(tmp) / f"in{chars}"
            write_documents(folder, args.docs, chars, args.images)
            runs = [run(folder, Path(tmp) / f"out{chars}_{r}", tokenizer) for r in range(args.repeat)]
            best = min(runs, key=lambda r: r["stages_cpu_s"])
            stage_ms = {name: round(1e3 * min(r["stage_cpu_s"][name] for r in runs) / args.docs, 4)
                        for name in best["stage_cpu_s"]}
            planned = args.images * plan.PIPELINE_MS[256] + \
                max(0.0, chars - args.images * plan.CAPTION_CHARS) * plan.TEXT_MS_PER_CHAR
            rows.append({"chars": chars, "images": args.images, "docs": args.docs,
                         "ms_per_doc": round(1e3 * best["stages_cpu_s"] / args.docs, 4),
                         "planner_ms_per_doc": round(planned, 4),
                         "shard_bytes_per_doc": round(best["shard_bytes"] / args.docs, 1),
                         "work_bytes_per_doc": round(best["work_bytes"] / args.docs, 1), "stage_cpu_ms": stage_ms})
            print(json.dumps(rows[-1]), flush=True)
    chars = [r["chars"] for r in rows]
    ms_slope, ms_at0 = np.polyfit(chars, [r["ms_per_doc"] for r in rows], 1)
    bytes_slope, _ = np.polyfit(chars, [r["shard_bytes_per_doc"] for r in rows], 1)
    work_slope, _ = np.polyfit(chars, [r["work_bytes_per_doc"] for r in rows], 1)
    residual = max(abs(r["ms_per_doc"] - (ms_at0 + ms_slope * r["chars"])) for r in rows)
    print(f"bench_curation_text: {1e3 * ms_slope:.2f} ms per 1000 chars (+{ms_at0:.3f} ms a document of "
          f"{args.images} 256 px image(s); max residual {residual:.3f} ms), shards {bytes_slope:.2f} B and part tables "
          f"{work_slope:.2f} B per char, over chars {chars}")


if __name__ == "__main__":
    main()
