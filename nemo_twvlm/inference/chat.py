"""Image-conditioned chat with a checkpoint: one question, or an interactive session."""
import io
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nemo_twvlm.data.image import normalise_image, preprocess_image
from nemo_twvlm.inference.generate import SamplingParams, generate
from nemo_twvlm.inference.prompt import chat_prompt, image_turn, sampling_params
from nemo_twvlm.inference.loading import LoadedModel

log = logging.getLogger(__name__)


def load_image(path: str | Path) -> torch.Tensor:
    """[3, H, W] in [0, 1] from any file PIL reads, normalised as curation does (data.image.normalise_image)."""
    try:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as image:
            rgb, notes = normalise_image(image)
            array = np.asarray(rgb, dtype=np.float32) / 255.0
    except (OSError, ValueError) as error:
        raise ValueError(f"image {path}: cannot be read ({error})") from None
    if notes:
        log.warning("image %s: %s", path, ", ".join(notes))
    return torch.from_numpy(array).permute(2, 0, 1)


class ChatSession:
    """A conversation about one image; the image is attached to the first user turn. `system`: an optional
    system prompt."""

    def __init__(self, loaded: LoadedModel, image: torch.Tensor, params: SamplingParams | None = None,
                 system: str | None = None):
        self.loaded = loaded
        self.pixels = preprocess_image(image, loaded.preset.vision)[None]
        self.params = sampling_params(loaded.tokenizer, params)
        self.system = system
        self.messages: list[dict] = []

    def _user_turn(self, prompt: str) -> dict:
        return {"role": "user", "content": image_turn(prompt) if not self.messages else prompt}

    def prompt_ids(self, prompt: str) -> list[int]:
        """The ids the model would answer `prompt` after (the conversation so far included)."""
        return chat_prompt(self.loaded.tokenizer, [*self.messages, self._user_turn(prompt)], system=self.system)

    def ask(self, prompt: str) -> str:
        ids = self.prompt_ids(prompt)
        self.messages.append(self._user_turn(prompt))
        reply_ids = generate(self.loaded.model, ids, self.pixels, image_token_index=self.loaded.image_token_index,
                             num_image_tokens=self.loaded.preset.num_image_tokens, params=self.params)
        reply = self.loaded.tokenizer.decode(reply_ids, skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": reply})
        return reply
