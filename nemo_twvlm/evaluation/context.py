"""What a task runner is handed: the model, its tokenizer and preset, and the run's options, with the
image loading and the one greedy answer every generating runner shares."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nemo_twvlm.data.image import load_image, preprocess_image
from nemo_twvlm.inference.answer import generate_answer


class EvalContext:
    def __init__(self, model, tokenizer, preset, image_token_index: int, *, max_new_tokens: int, prompt_style: str,
                 modes: Sequence[str], batch_size: int = 32, out_dir: Path | None = None, judge=None):
        self.model, self.tokenizer, self.preset = model, tokenizer, preset
        self.out_dir, self.judge = out_dir, judge  # benchmark kinds write images and answers files there
        self.image_token_index = image_token_index
        self.max_new_tokens, self.prompt_style, self.modes, self.batch_size = max_new_tokens, prompt_style, modes, batch_size

    def image(self, path):
        return load_image(path)

    def pixels(self, path):
        return preprocess_image(load_image(path), self.preset.vision)

    def generate(self, image_path, text: str, record: dict, max_new_tokens: int | None = None) -> str:
        """Greedy answer; records it with its token count (== max_new_tokens: cut off, no stop token).
        `max_new_tokens` overrides the run's limit where a benchmark fixes it (TaiwanVQA: 1)."""
        answer, n_tokens = generate_answer(self.model, self.tokenizer, self.preset, self.image(image_path), text,
                                           image_token_index=self.image_token_index,
                                           max_new_tokens=max_new_tokens or self.max_new_tokens,
                                           prompt_style=self.prompt_style)
        record.update(generation=answer, generated_tokens=n_tokens)
        return answer
