"""Read OBELICS parquet: one document per row, `texts` and `images` parallel lists in reading order,
each slot holding a text or an image and None in the other list."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_twvlm.curation.sample import ImageItem, Reject
from nemo_twvlm.curation.stages.io.read_documents import checked_document
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage, get_field

_LAYOUT = "the OBELICS layout"


@dataclass
class ObelicsReaderStage(TableReaderStage):
    """An image slot is a URL (as published), a path relative to the file's folder, or an embedded
    `{"bytes": ..., "path": ...}` struct (the Hugging Face Image feature); URLs and paths are read
    by the download stage. OBELICS rows have no id: they are keyed by position unless `key_column`
    names one."""

    raw_name = "doc.json"

    def required_columns(self) -> dict[str, str]:
        return {"texts": _LAYOUT, "images": _LAYOUT}

    def _segments(self, row: dict | None, base: str) -> list:
        if row is None:
            raise Reject("bad_row", "row is not an object")
        texts = get_field(row, "texts", list, "missing_caption")
        images = get_field(row, "images", list, "missing_image")
        if len(texts) != len(images):
            raise Reject("bad_row", f"'texts' has {len(texts)} slots and 'images' {len(images)}; "
                                    "OBELICS lists are parallel")
        out: list = []
        for i, (text, image) in enumerate(zip(texts, images)):
            if (text is None) == (image is None):
                holds = "both a text and" if text is not None else "neither a text nor"
                raise Reject("bad_row", f"slot {i} holds {holds} an image")
            if text is None:
                out.append(_image(image, i, base))
            elif isinstance(text, str):
                out.append(text)
            else:
                raise Reject("bad_field_type", f"'texts[{i}]' is {type(text).__name__}, expected a string")
        return checked_document(out)


def _image(value: Any, i: int, base: str) -> ImageItem:
    if isinstance(value, str) and value.strip():
        return ImageItem(ref=value.strip(), meta={"base_dir": base})
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if isinstance(data, bytes):
            if not data:
                raise Reject("empty_image", f"'images[{i}].bytes' is 0 bytes")
            return ImageItem(ref=path if isinstance(path, str) and path else f"images[{i}]", data=data)
        if data is None and isinstance(path, str) and path.strip():
            return ImageItem(ref=path.strip(), meta={"base_dir": base})
    raise Reject("bad_field_type", f"'images[{i}]' is {value!r:.80}, expected a url, a path or "
                                   "{'bytes': ..., 'path': ...}")
