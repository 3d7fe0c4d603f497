"""The one definition of a chat prompt and of when generation stops, for chat, evaluation and export.

Stop ids are read, not named: the tokenizer's eos, every `eos_token_id` of the generation_config.json
in the tokenizer's directory (checkpoints keep the source's there; Llama-3-Instruct lists
<|end_of_text|> and <|eot_id|>), and the token the chat template closes an assistant turn with
(<|eot_id|> for Llama-3, whatever eos the tokenizer declares).

A system prompt is optional: Llama-3-Taiwan-Instruct answers without one, and its model card's
("You are an AI assistant called Twllm, ...") is a choice for the caller to make.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER, generation_prompt, render
from nemo_twvlm.data.tokenizer import GENERATION_CONFIG
from nemo_twvlm.inference.generate import SamplingParams


def read_generation_config(tokenizer) -> dict:
    """The generation_config.json beside a tokenizer loaded from a directory ({} if none)."""
    path = Path(tokenizer.name_or_path, GENERATION_CONFIG)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def _turn_end_id(tokenizer) -> int | None:
    """The first special token the chat template writes after an assistant's text."""
    if tokenizer.chat_template is None:
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    ids = render(tokenizer, messages)
    header = render(tokenizer, messages[:1], generation_prompt=True)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return next((i for i in ids[len(header):] if i in special), None)


def stop_ids(tokenizer) -> tuple[int, ...]:
    configured = read_generation_config(tokenizer).get("eos_token_id")
    ids = {tokenizer.eos_token_id, _turn_end_id(tokenizer)}
    ids.update(configured if isinstance(configured, list) else [configured])
    return tuple(sorted(i for i in ids if isinstance(i, int)))


def chat_prompt(tokenizer, messages: list[dict], *, system: str | None = None) -> list[int]:
    """Ids ending with the assistant header, as the tokenizer's chat template renders `messages` (after
    a system turn, if one is given)."""
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    return generation_prompt(tokenizer, messages)


def image_turn(text: str) -> str:
    """A user turn about one image: the placeholder first, as training data puts it."""
    return f"{IMAGE_PLACEHOLDER}\n{text}"


def sampling_params(tokenizer, params: SamplingParams | None = None) -> SamplingParams:
    """`params` made to stop where the model's turn ends and never to pick an id the tokenizer does not
    have (a vocabulary padded for tensor parallelism has rows past the last token)."""
    return dataclasses.replace(params or SamplingParams(), stop_ids=stop_ids(tokenizer), num_tokens=len(tokenizer))
