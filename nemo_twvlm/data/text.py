"""Text is data, never markup: a literal `<image>` in a caption or a document's text must not
become an image placeholder. The tokenizer maps that string to the image id, and a placeholder
without an image makes the training step fail (`split_with_sizes`) far from the sample that caused it.

Curation strips it before writing shards; the task encoder strips it again for shards curated
elsewhere. Conversations are the exception: there `<image>` in a user turn is the placeholder.
"""
from __future__ import annotations

from nemo_twvlm.data.tokenizer import IMAGE_TOKEN

# The counter key, in curation's stats and the task encoder's counts alike.
IMAGE_TOKEN_IN_TEXT = "image_token_in_text"


def strip_image_token(text: str) -> tuple[str, int]:
    """`text` with every literal image token replaced by a space, and how many there were. A space,
    not nothing: removing `<image>` from `<im<image>age>` would spell a new one."""
    found = text.count(IMAGE_TOKEN)
    return (text.replace(IMAGE_TOKEN, " "), found) if found else (text, 0)
