"""Read visual-instruction conversations in their published layouts into batches of samples.

- LLaVA instruction JSON (a list, as llava_v1_5_mix665k.json) or JSONL: `conversations` of
  `{"from": "human"|"gpt", "value"}`, `image` one path or a list of paths relative to
  `input.image_dir` (default: the file's folder); a row without `image` is text-only.
- Hugging Face parquet: `messages` or `conversations` of `{"role", "content"}` (content a string,
  or a list of `{"type": "text"|"image", ...}` parts, each image part a placeholder), and `images`
  (or `image`) as one `{bytes, path}` struct or a list of them.

A sample's segments are its images (in placeholder order) then its turns; `meta["roles"]` names each
turn's role, which is how the later stages tell a conversation from a pair or a document.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_twvlm.curation.sample import ImageItem, Reject, Sample
from nemo_twvlm.curation.stages.io.read_table import TableReaderStage
from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER, normalise_messages

TURN_FIELDS = ("conversations", "messages")
IMAGE_FIELDS = ("images", "image")


@dataclass
class ConversationReaderStage(TableReaderStage):
    """Reads rows like the table reader (parts, resume, rejections); only what a row holds differs."""

    raw_name = "row.json"

    def required_columns(self) -> dict[str, str]:
        return {}  # turns come as `conversations` or `messages`: checked per row (bad_conversation)

    def base_dir(self, path: str) -> str:
        return str(Path(path).parent / (self.input.image_dir or ""))

    def _raw(self, row: dict | None) -> dict[str, bytes]:
        """The row as JSON with image bytes replaced by their length, and those bytes as parts of their own."""
        images: dict[str, bytes] = {}

        def strip(value: Any) -> Any:
            if isinstance(value, bytes):
                images[f"image{len(images)}.bin"] = value
                return f"<{len(value)} bytes: image{len(images) - 1}.bin>"
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        return {self.raw_name: json.dumps(strip(row), ensure_ascii=False, default=str).encode("utf-8"), **images}

    def _sample(self, key: str, index: int, row: dict | None, base: str, raw: dict[str, bytes]) -> Sample:
        if row is None:
            raise Reject("bad_row", f"row {index} is not a JSON object")
        roles, texts = _turns(row)
        images = _images(row, base)
        placeholders = sum(t.count(IMAGE_PLACEHOLDER) for t in texts)
        if placeholders != len(images):
            raise Reject("image_count_mismatch", f"{placeholders} {IMAGE_PLACEHOLDER} in the turns, "
                                                 f"{len(images)} images in {_field(row, IMAGE_FIELDS) or 'the row'}")
        return Sample(key=key, index=index, segments=[*images, *texts], raw=raw, meta={"roles": roles})


def _field(row: dict, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if row.get(name) is not None), None)


def _turns(row: dict) -> tuple[list[str], list[str]]:
    """Roles and texts of a row's turns, checked: no empty turn, user and assistant alternate
    (after an optional system turn), at least one assistant turn."""
    name = _field(row, TURN_FIELDS)
    turns = row.get(name) if name else None
    if not isinstance(turns, list) or not turns:
        raise Reject("bad_conversation", f"no non-empty list in any of {list(TURN_FIELDS)}")
    try:
        messages = normalise_messages([_flatten(turn, f"{name}[{i}]") for i, turn in enumerate(turns)])
    except ValueError as e:
        raise Reject("bad_conversation", f"{name}: {e}") from None
    roles = [m["role"] for m in messages]
    for i, m in enumerate(messages):
        if not m["content"].strip():
            raise Reject("empty_turn", f"{name}[{i}] ({m['role']}) is empty")
    expected = "user"
    for i, role in enumerate(roles):
        if role == "system" and i == 0:
            continue
        if role != expected:
            raise Reject("roles_not_alternating", f"{name}[{i}] is {role!r} where {expected!r} was due "
                                                  f"(roles {roles})")
        expected = "assistant" if role == "user" else "user"
    if "assistant" not in roles:
        raise Reject("no_assistant_turn", f"{name} has roles {roles} only")
    return roles, [m["content"] for m in messages]


def _flatten(turn: Any, where: str) -> Any:
    """A turn whose content is a list of parts (HF chat style) as one string, image parts as placeholders."""
    if not isinstance(turn, dict):
        raise Reject("bad_conversation", f"{where} is {type(turn).__name__}, not an object")
    content = turn.get("content", turn.get("value"))
    if not isinstance(content, list):
        return turn
    pieces = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            pieces.append(IMAGE_PLACEHOLDER)
        elif kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        else:
            raise Reject("bad_conversation", f"{where}.content[{j}] is not a text or image part: {part!r:.80}")
    return {"role": turn.get("role", turn.get("from")), "content": "\n".join(pieces)}


def _images(row: dict, base: str) -> list[ImageItem]:
    name = _field(row, IMAGE_FIELDS)
    if name is None:
        return []  # text-only
    value = row[name]
    entries = value if isinstance(value, list) else [value]
    items = []
    for i, entry in enumerate(entries):
        where = f"{name}[{i}]" if isinstance(value, list) else name
        if isinstance(entry, str) and entry.strip():
            items.append(ImageItem(ref=entry.strip(), meta={"base_dir": base}))
        elif isinstance(entry, dict) and entry.get("bytes"):
            items.append(ImageItem(ref=entry.get("path") or where, data=bytes(entry["bytes"])))
        elif isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"].strip():
            items.append(ImageItem(ref=entry["path"].strip(), meta={"base_dir": base}))
        elif isinstance(entry, dict):
            raise Reject("missing_image", f"{where}: image struct has neither bytes nor path")
        else:
            raise Reject("missing_image", f"{where} is {entry!r:.80}, not a path or a {{bytes, path}} struct")
    return items
