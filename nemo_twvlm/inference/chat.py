"""Image-conditioned chat with a checkpoint: one question, or an interactive session."""
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER, generation_prompt
from nemo_twvlm.data.image import preprocess_image
from nemo_twvlm.inference.generate import SamplingParams, generate
from nemo_twvlm.training.checkpoint import LoadedModel


def load_image(path: str | Path) -> torch.Tensor:
    """[3, H, W] in [0, 1] from any file PIL reads."""
    try:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as error:
        raise ValueError(f"image {path}: cannot be read ({error})") from None
    return torch.from_numpy(array).permute(2, 0, 1)


class ChatSession:
    """A conversation about one image; the image is attached to the first user turn."""

    def __init__(self, loaded: LoadedModel, image: torch.Tensor, params: SamplingParams):
        self.loaded = loaded
        self.pixels = preprocess_image(image, loaded.preset.vision)[None]
        stop = [loaded.tokenizer.eos_token_id, loaded.tokenizer.convert_tokens_to_ids("<|eot_id|>")]
        self.params = SamplingParams(**{**params.__dict__, "stop_ids": tuple(i for i in stop if i is not None)})
        self.messages: list[dict] = []

    def ask(self, prompt: str) -> str:
        content = f"{IMAGE_PLACEHOLDER}\n{prompt}" if not self.messages else prompt
        self.messages.append({"role": "user", "content": content})
        ids = generation_prompt(self.loaded.tokenizer, self.messages)
        reply_ids = generate(self.loaded.model, ids, self.pixels, image_token_index=self.loaded.image_token_index,
                             num_image_tokens=self.loaded.preset.num_image_tokens, params=self.params)
        reply = self.loaded.tokenizer.decode(reply_ids, skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": reply})
        return reply
