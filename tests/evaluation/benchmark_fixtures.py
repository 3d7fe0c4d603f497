"""Benchmark inputs in their published layouts, written the way their authors' tools write them: parquet
with Hugging Face image structs through pyarrow, VLMEvalKit's base64 TSV, images drawn with PIL."""
from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(color=(215, 25, 32), size=(24, 18)) -> bytes:
    img = Image.new("RGB", size, (235, 230, 220))
    ImageDraw.Draw(img).ellipse([2, 2, size[0] - 4, size[1] - 4], fill=color)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def truncated_png() -> bytes:
    data = png(size=(64, 64))
    return data[: len(data) // 2]


def struct(data: bytes | None = None, path: str | None = None) -> dict:
    return {"bytes": data, "path": path}


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """Columns in the rows' key order; an "image" column is typed as the HF image struct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {}
    for name in rows[0]:
        values = [row.get(name) for row in rows]
        columns[name] = pa.array(values, type=IMAGE_STRUCT) if name == "image" else pa.array(values)
    pq.write_table(pa.table(columns), path)
    return path


def vistw_row(qid, answer="A", image: dict | None = None, **overrides) -> dict:
    row = {"qid": qid, "question": f"第{qid}題：圖中是什麼顏色？", "A": "紅色", "B": "綠色", "C": "藍色", "D": "黃色",
           "answer": answer, "image": image if image is not None else struct(png())}
    return {**row, **overrides}


def taiwanvqa_row(question_id: int, answer="A", question_type="Recognition", topic="food", **overrides) -> dict:
    row = {"question_id": question_id, "image_id": question_id % 1_000_000, "question": "這是什麼？",
           "A": "滷肉飯", "B": "牛肉麵", "C": "珍珠奶茶", "D": "臭豆腐", "answer": answer,
           "question_type": question_type, "topic": topic, "sub_topic": "snack", "image": struct(png((30, 150, 50)))}
    return {**row, **overrides}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_tsv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")  # pandas' to_csv(sep="\t") quotes the same way
        writer.writerow(header)
        writer.writerows(rows)
    return path
