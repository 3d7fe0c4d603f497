"""The one definition of a prompt and of when generation stops, for chat, evaluation and export.

Two prompt styles: "chat", a user turn through the tokenizer's chat template ending with the assistant
header, and "plain", the continued-pretraining layout "<bos><image>\\n{text}\\n", the only format a
CPT-only model saw. Either holds exactly one image id, before the text.

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
from typing import Sequence

from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER, generation_prompt, render
from nemo_twvlm.data.tokenizer import GENERATION_CONFIG
from nemo_twvlm.inference.generate import SamplingParams

PROMPT_STYLES = ("chat", "plain")


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


def format_options(options: Sequence[str], labels: Sequence[str]) -> str:
    return "\n".join(f"{label}. {option}" for label, option in zip(labels, options))


def user_text(question: str, options: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> str:
    """The text of the user turn after the image: the question, then the labelled options if any."""
    question = question.replace(IMAGE_PLACEHOLDER, " ").strip()  # the one image goes first, always
    if options:
        return f"{question}\n{format_options(options, labels)}"
    return question


def prompt_ids(tokenizer, text: str, *, image_token_index: int, prompt_style: str = "chat") -> list[int]:
    """Token ids ending where the model's answer starts; exactly one image id."""
    if prompt_style == "chat":
        ids = chat_prompt(tokenizer, [{"role": "user", "content": image_turn(text)}])
    elif prompt_style == "plain":
        ids = [tokenizer.bos_token_id, image_token_index] + tokenizer.encode(f"\n{text}\n", add_special_tokens=False)
    else:
        raise ValueError(f"prompt_style={prompt_style!r}: expected one of {PROMPT_STYLES}")
    if ids.count(image_token_index) != 1:
        raise ValueError(f"prompt holds {ids.count(image_token_index)} image ids; expected 1 "
                         f"(does the tokenizer map {IMAGE_PLACEHOLDER!r} to id {image_token_index}?)")
    return ids


def sampling_params(tokenizer, params: SamplingParams | None = None) -> SamplingParams:
    """`params` made to stop where the model's turn ends and never to pick an id the tokenizer does not
    have (a vocabulary padded for tensor parallelism has rows past the last token)."""
    return dataclasses.replace(params or SamplingParams(), stop_ids=stop_ids(tokenizer), num_tokens=len(tokenizer))
