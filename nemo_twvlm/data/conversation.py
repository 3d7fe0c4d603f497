"""Conversations through the tokenizer's own chat template (Llama-3's in production), with a loss mask
that covers assistant turns only.

Each turn's ids are found by rendering growing prefixes of the conversation with
`apply_chat_template`, so the result is exactly the template's output whatever the template is; the
assistant header comes from `add_generation_prompt=True` and stays out of the loss.
"""
from nemo_twvlm.data.tokenizer import IMAGE_TOKEN as IMAGE_PLACEHOLDER

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def normalise_messages(conversation: list[dict]) -> list[dict]:
    """LLaVA's {"from": "human"|"gpt", "value"} or chat {"role", "content"} -> chat messages."""
    messages = []
    for i, turn in enumerate(conversation):
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLES:
            raise ValueError(f"conversation turn {i}: role {role!r} is not one of {sorted(_ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"conversation turn {i}: content must be a string, got {type(content).__name__}")
        messages.append({"role": _ROLES[role], "content": content})
    return messages


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    """The ids the chat template renders for `messages` (with the assistant header if asked)."""
    if not messages and not generation_prompt:
        return []
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """(ids, trained) for a whole conversation: trained marks the assistant replies and their end token."""
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("conversation has no assistant turn to learn from")
    ids: list[int] = []
    trained: list[bool] = []
    for k, message in enumerate(messages):
        full = render(tokenizer, messages[: k + 1])
        if full[: len(ids)] != ids:
            raise ValueError("chat template does not render conversations prefix by prefix; cannot mask turns")
        if message["role"] == "assistant":
            header = render(tokenizer, messages[:k], generation_prompt=True)
            if full[: len(header)] != header:
                raise ValueError("chat template's generation prompt is not a prefix of the assistant turn")
            trained += [False] * (len(header) - len(ids)) + [True] * (len(full) - len(header))
        else:
            trained += [False] * (len(full) - len(ids))
        ids = full
    return ids, trained


def generation_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Ids that end with the assistant header, ready for the model to answer."""
    return render(tokenizer, messages, generation_prompt=True)
