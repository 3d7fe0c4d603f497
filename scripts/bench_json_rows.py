"""Reading a LLaVA instruction JSON list (llava_v1_5_mix665k.json's layout: English conversations,
indented, ~1.25 KB a row) whole as the readers did before (the file's bytes, its text, then json.loads),
whole as a stream (JsonList), the lister's one scan for range offsets (row_starts), and one range of
`--rows-per-read` rows from its offset: wall time and peak Python allocations (tracemalloc) of each.
A whole read still holds every row; the point of ranges is that no worker reads one whole.

    .venv/bin/python scripts/bench_json_rows.py [--rows 60000] [--rows-per-read 2000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nemo_twvlm.curation.stages.io.json_rows import JsonList, row_starts
from nemo_twvlm.curation.stages.io.read_table import read_rows, row_ranges

WORDS = ("the a photo of man woman dog street Taipei night market food temple sign what is in this image "
         "describe detail color left right").split()


def write_list(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)

    def sentence(n: int) -> str:
        return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))

    entries = [{"id": f"{i:09d}", "image": f"coco/train2017/{i:012d}.jpg",
                "conversations": [{"from": "human", "value": "<image>\n" + sentence(12)},
                                  {"from": "gpt", "value": sentence(60)}, {"from": "human", "value": sentence(10)},
                                  {"from": "gpt", "value": sentence(90)}]} for i in range(rows)]
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")


def read_before(path: Path) -> list[dict | None]:
    """What read_rows did with a JSON list before it streamed (its rows and their columns)."""
    rows = [row if isinstance(row, dict) else None for row in json.loads(path.read_bytes().decode("utf-8"))]
    columns = {k for row in rows if row for k in row}
    return rows if columns else []


def measure(name: str, work) -> dict:
    """Best wall time of two untraced runs, then the peak of a traced one (tracing slows it ~4x)."""
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    seconds = min(seconds)
    tracemalloc.start()
    result = work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = {"read": name, "s": round(seconds, 3), "peak_mib": round(peak / 2**20, 1), "rows": result}
    print(json.dumps(line), flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--rows-per-read", type=int, default=2000,
                        help="rows a range holds (conversations_zh_tw.yaml's input.rows_per_read)")
    args = parser.parse_args()
    if not args.rows > args.rows_per_read >= 1:
        raise SystemExit(f"--rows {args.rows} / --rows-per-read {args.rows_per_read}: the file must hold more "
                         "rows than a range, and a range at least one")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llava_mix.json"
        write_list(path, args.rows)
        size = path.stat().st_size
        print(json.dumps({"file_mb": round(size / 1e6, 1), "bytes_per_row": round(size / args.rows)}))
        ranges = row_ranges(str(path), args.rows_per_read, 1)
        middle = ranges[len(ranges) // 2]
        results = [
            measure("whole, before: bytes, text, json.loads", lambda: len(read_before(path))),
            measure("whole, now: read_rows", lambda: len(read_rows(str(path)).rows)),
            measure("listing scan (row_starts)", lambda: row_starts(open(path, "rb"), args.rows_per_read, False).total),
            measure("entries streamed, none kept", lambda: sum(1 for _ in JsonList(open(path, "rb")))),
            measure(f"one range ({middle.start}-{middle.stop}), read_rows",
                    lambda: len(read_rows(str(path), middle).rows)),
        ]
    before, whole, _, _, one = results
    print(f"bench_json_rows: {args.rows} rows, {size / 1e6:.1f} MB: whole read {before['peak_mib']} -> "
          f"{whole['peak_mib']} MiB peak ({before['s']} -> {whole['s']} s); one range of {args.rows_per_read}: "
          f"{one['peak_mib']} MiB; at 665k rows the whole read before would peak near "
          f"{before['peak_mib'] * 665_000 / args.rows / 1024:.1f} GiB")


if __name__ == "__main__":
    sys.exit(main())
