"""Read MMC4 JSONL: `text_list` (the document's sentences) and `image_info` (per image `raw_url`,
`image_name`, `matched_text_index`, `matched_sim`, ...). Each image goes just before the sentence it
is matched to; images matched to one sentence keep their `image_info` order."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.sample import NOT_AN_OBJECT, ImageItem, Reject
from nemo_twvlm.curation.stages.io.read_documents import checked_document
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage, get_field

_LAYOUT = "the MMC4 layout"


@dataclass
class Mmc4ReaderStage(TableReaderStage):
    """Images are fetched from `raw_url`; with `image_dir` (relative to the JSONL file's folder),
    read from the `image_name` files there instead (MMC4's images as its scripts download them).
    MMC4 documents have no id: they are keyed by position unless `key_column` names one."""

    raw_name = "doc.json"

    def required_columns(self) -> dict[str, str]:
        return {"text_list": _LAYOUT, "image_info": _LAYOUT}

    def base_dir(self, path: str) -> str:
        return str(Path(path).parent / (self.input.image_dir or ""))

    def _segments(self, row: dict | None, base: str) -> list:
        if row is None:
            raise Reject("bad_row", NOT_AN_OBJECT)
        sentences = get_field(row, "text_list", list, "missing_caption")
        infos = get_field(row, "image_info", list, "missing_image")
        before: dict[int, list[ImageItem]] = {}
        for j, info in enumerate(infos):
            if not isinstance(info, dict):
                raise Reject("bad_field_type", f"'image_info[{j}]' is {type(info).__name__}, expected an object")
            index = info.get("matched_text_index")
            if not isinstance(index, int) or isinstance(index, bool):
                raise Reject("bad_field_type", f"'image_info[{j}].matched_text_index' is {index!r:.40}, "
                                               "expected an integer")
            if not 0 <= index < len(sentences):
                raise Reject("bad_row", f"'image_info[{j}].matched_text_index' = {index} is outside 'text_list' "
                                        f"({len(sentences)} sentences)")
            before.setdefault(index, []).append(self._image(info, j, base))
        out: list = []
        for i, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise Reject("bad_field_type", f"'text_list[{i}]' is {type(sentence).__name__}, expected a string")
            out += before.get(i, [])
            out.append(sentence)
        return checked_document(out)

    def _image(self, info: dict, j: int, base: str) -> ImageItem:
        column = "raw_url" if self.input.image_dir is None else "image_name"
        ref = info.get(column)
        if ref is None:
            raise Reject("missing_image", f"'image_info[{j}]' has no {column!r}")
        if not isinstance(ref, str) or not ref.strip():
            raise Reject("bad_field_type", f"'image_info[{j}].{column}' is {ref!r:.80}, expected a non-empty string")
        return ImageItem(ref=ref.strip(), meta={"base_dir": base})
