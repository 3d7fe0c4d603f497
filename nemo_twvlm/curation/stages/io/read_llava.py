"""Read LLaVA-Pretrain's layout (blip_laion_cc_sbu_558k.json): a JSON list of
`{"id", "image": "<path under the image folder>", "conversations": [{"from": "human", "value":
"<image>\\n<instruction>"}, {"from": "gpt", "value": "<caption>"}]}`; the caption is the first gpt turn."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.curation.sample import ImageItem, Reject
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage, get_field, text_of

_LAYOUT = "the LLaVA-Pretrain layout"


@dataclass
class LlavaPretrainReaderStage(TableReaderStage):
    """Image paths are relative to `image_dir` (LLaVA's --image_folder), itself relative to the
    JSON file's folder; None: that folder. Images are read by the download stage."""

    raw_name = "entry.json"

    def required_columns(self) -> dict[str, str]:
        return {"image": _LAYOUT, "conversations": _LAYOUT}

    def base_dir(self, path: str) -> str:
        return str(Path(path).parent / (self.input.image_dir or ""))

    def _segments(self, row: dict | None, base: str) -> list:
        if row is None:
            raise Reject("bad_row", "list entry is not a JSON object")
        image = get_field(row, "image", str, "missing_image")
        if not image.strip():
            raise Reject("missing_image", "'image' is blank")
        turns = get_field(row, "conversations", list, "missing_caption")
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise Reject("bad_field_type", f"'conversations[{i}]' is {type(turn).__name__}, expected an object")
            speaker = turn.get("from")
            if not isinstance(speaker, str):
                raise Reject("bad_field_type", f"'conversations[{i}].from' is {type(speaker).__name__}, "
                                               "expected a string")
            if speaker == "gpt":
                return [ImageItem(ref=image.strip(), meta={"base_dir": base}),
                        text_of(turn.get("value"), f"conversations[{i}].value")]
        raise Reject("missing_caption", f"no 'gpt' turn among {len(turns)} in 'conversations'")
