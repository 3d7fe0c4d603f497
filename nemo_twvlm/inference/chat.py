"""Image-conditioned chat with a checkpoint: one question, or an interactive session."""
from __future__ import annotations

import torch

from nemo_twvlm.data.image import preprocess_image
from nemo_twvlm.inference.generate import SamplingParams, generate
from nemo_twvlm.inference.loading import LoadedModel
from nemo_twvlm.inference.prompt import chat_prompt, image_turn, sampling_params


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
