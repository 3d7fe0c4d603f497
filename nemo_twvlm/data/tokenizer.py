"""Tokenizers: loading (any local Hugging Face tokenizer directory, or a hub id in production), the
`<image>` token, and the tokenizer directory every checkpoint carries.

The published Llama-3 tokenizers have no `<image>`. `add_image_token` gives a tokenizer directory one,
in one of two ways, and records which in the directory (`twvlm_image_token.json`):

    reserved  rename the first unused `<|reserved_special_token_N|>` to `<image>`: the vocabulary keeps
              its size (128,256 for Llama-3), so no embedding changes shape (the default);
    append    add `<image>` as a new special token after the last id (the model's embedding and output
              rows grow; see conversion.vocab).

Both edit `tokenizer.json` and `tokenizer_config.json` in place of `save_pretrained`, whose output
differs between transformers 4 and 5: the directory keeps the published layout and loads in both.
A tokenizer that already has `<image>` (a llava-hf checkpoint, the debug tokenizer) is used as it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_MODES = ("reserved", "append")
IMAGE_TOKEN_RECORD = "twvlm_image_token.json"
GENERATION_CONFIG = "generation_config.json"
# The files of a tokenizer directory, copied verbatim wherever the tokenizer travels (checkpoints,
# exports). chat_template.jinja is the tokenizer's template in a Llama directory; generation_config.json
# says when generation stops (inference.prompt reads it beside the tokenizer).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja")
_RESERVED = re.compile(r"^<\|reserved_special_token_(\d+)\|>$")


class TokenizerError(ValueError):
    """A tokenizer that cannot serve the model: the message names the directory and the file or field."""


@contextmanager
def _quiet_transformers():
    # transformers warns on every load of a published Llama-3 tokenizer (clean_up_tokenization_spaces);
    # nothing a user can act on.
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    with _quiet_transformers():
        # Custom tokenizer code from a checkpoint is never executed.
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise TokenizerError(f"tokenizer at {path} defines no bos/eos token; both are needed for training")
    return tokenizer


def image_token_id(tokenizer) -> int:
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise TokenizerError(f"tokenizer has no {IMAGE_TOKEN!r} token; import the checkpoint with "
                             f"image_token=reserved (or append) to give it one")
    return token_id


def has_image_token(tokenizer) -> bool:
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    return token_id is not None and token_id != tokenizer.unk_token_id


@dataclass(frozen=True)
class ImageTokenRecord:
    """How `<image>` entered a tokenizer: mode "reserved", "append", or "present" (it was there)."""

    mode: str
    id: int
    replaced: str = ""  # the reserved token it took the place of
    tokenizer_size: int = 0

    def save(self, tokenizer_dir: Path) -> None:
        Path(tokenizer_dir, IMAGE_TOKEN_RECORD).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def read_image_token_record(tokenizer_dir: str | Path) -> ImageTokenRecord | None:
    path = Path(tokenizer_dir, IMAGE_TOKEN_RECORD)
    return ImageTokenRecord(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def copy_tokenizer(src: str | Path, dst: str | Path) -> Path:
    """The tokenizer files of `src` (and its image-token record and generation config) into `dst`."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in (*TOKENIZER_FILES, IMAGE_TOKEN_RECORD, GENERATION_CONFIG):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return dst


def add_image_token(src: Path, dst: Path, mode: str) -> ImageTokenRecord:
    """Copy the tokenizer at `src` to `dst` with an `<image>` token added by `mode`; record it there."""
    if mode not in IMAGE_TOKEN_MODES:
        raise TokenizerError(f"image_token={mode!r}: expected one of {list(IMAGE_TOKEN_MODES)}")
    src, dst = Path(src), Path(dst)
    tokenizer = load_tokenizer(src)
    copy_tokenizer(src, dst)
    if has_image_token(tokenizer):
        record = ImageTokenRecord("present", image_token_id(tokenizer), tokenizer_size=len(tokenizer))
        record.save(dst)
        return record
    if not (src / "tokenizer.json").is_file():
        raise TokenizerError(f"tokenizer {src}: no tokenizer.json; adding {IMAGE_TOKEN} needs the fast-tokenizer "
                             f"file (the published Llama-3 repositories ship one)")
    if mode == "reserved":
        token_id, replaced = _first_unused_reserved(tokenizer, src)
        _edit_added_token(dst, token_id, content=IMAGE_TOKEN)
    else:
        token_id, replaced = len(tokenizer), ""
        _edit_added_token(dst, token_id, content=IMAGE_TOKEN, new=True)
    edited = load_tokenizer(dst)
    if image_token_id(edited) != token_id or edited.encode(IMAGE_TOKEN, add_special_tokens=False) != [token_id]:
        raise TokenizerError(f"tokenizer {dst}: {IMAGE_TOKEN} did not become the single id {token_id} after the edit")
    record = ImageTokenRecord(mode, token_id, replaced, tokenizer_size=len(edited))
    record.save(dst)
    return record


def _first_unused_reserved(tokenizer, src: Path) -> tuple[int, str]:
    """The lowest-numbered `<|reserved_special_token_N|>` (Llama-3 has 251, none of them in use)."""
    reserved = sorted((int(found.group(1)), token_id, added.content)
                      for token_id, added in tokenizer.added_tokens_decoder.items()
                      if (found := _RESERVED.match(added.content)))
    if not reserved:
        raise TokenizerError(f"tokenizer {src} has no <|reserved_special_token_N|> tokens (tokenizer.json "
                             f"added_tokens) to map {IMAGE_TOKEN} onto; use image_token=append")
    _, token_id, token = reserved[0]
    return token_id, token


def _edit_added_token(directory: Path, token_id: int, *, content: str, new: bool = False) -> None:
    """Rename (or append) added token `token_id` in tokenizer.json and tokenizer_config.json."""
    entry = {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if new:
        data["added_tokens"].append({"id": token_id, **entry})
    else:
        (found,) = [t for t in data["added_tokens"] if t["id"] == token_id]
        found["content"] = content
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    config_path = directory / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder")
        if decoder is not None:
            decoder[str(token_id)] = {**decoder.get(str(token_id), {}), **entry}
        config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def fingerprint(tokenizer) -> str:
    """What makes two tokenizers interchangeable for a model: every token and id, which ones are special,
    bos/eos/pad, the chat template. File layout and transformers version do not enter it."""
    state = {
        "vocab": sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]),
        "special": sorted(str(i) for i, t in tokenizer.added_tokens_decoder.items() if t.special),
        "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id,
        "chat_template": tokenizer.chat_template,
    }
    return hashlib.sha256(json.dumps(state, ensure_ascii=False).encode()).hexdigest()[:16]


def check_chat_template(tokenizer, where: str, *, required: bool = True) -> None:
    """The chat template must render assistant turns: the loss of visual instruction tuning is on them.
    A base model's tokenizer may have no template (`required=False`): it can still be pre-trained."""
    if tokenizer.chat_template is None:
        if required:
            raise TokenizerError(f"tokenizer {where}: tokenizer_config.json has no chat_template")
        return
    reply = "ok 42"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as error:  # a template that does not render is a user's file, not our bug
        raise TokenizerError(f"tokenizer {where}: chat_template does not render a user + assistant "
                             f"conversation ({error})") from None
    if reply not in text:
        raise TokenizerError(f"tokenizer {where}: chat_template drops assistant turns (a user + assistant "
                             f"conversation renders as {text!r}); instruction tuning needs them")
