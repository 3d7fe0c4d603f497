"""Read interleaved documents from JSONL: `{"id": ..., "segments": [text | {"image": url-or-path}, ...]}`."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.sample import NOT_AN_OBJECT, ImageItem, Reject
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage, get_field


@dataclass
class DocumentReaderStage(TableReaderStage):
    """One document per line, segments in reading order; images are fetched by the download stage.
    Reads rows like the table reader; only what a row holds differs."""

    raw_name = "doc.json"

    def required_columns(self) -> dict[str, str]:
        return {"segments": "the documents layout"}

    def _segments(self, row: dict | None, base: str) -> list:
        return _segments(row, base)


def _segments(row: dict | None, base: str) -> list:
    if row is None:
        raise Reject("bad_row", NOT_AN_OBJECT)
    segments = get_field(row, "segments", list, "bad_row")
    out: list = []
    for seg in segments:
        if isinstance(seg, str):
            out.append(seg)
        elif isinstance(seg, dict) and isinstance(seg.get("image"), str) and seg["image"].strip():
            out.append(ImageItem(ref=seg["image"].strip(), meta={"base_dir": base}))
        else:
            raise Reject("bad_row", f"segment {seg!r:.80} is neither text nor {{'image': url-or-path}}")
    return checked_document(out)


def checked_document(segments: list) -> list:
    """A document needs an image and some text."""
    if not any(isinstance(s, ImageItem) for s in segments):
        raise Reject("missing_image", "document has no image segment")
    if not any(isinstance(s, str) and s.strip() for s in segments):
        raise Reject("empty_caption", "document has no text segment")
    return segments
