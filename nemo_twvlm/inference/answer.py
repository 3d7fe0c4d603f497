"""One greedy answer to a question about one image, as evaluation asks it: the prompt of prompt.py, the
image preprocessed for the preset's vision tower, generation until a stop token or the limit."""
from __future__ import annotations

from nemo_twvlm.data.image import preprocess_image
from nemo_twvlm.inference.generate import SamplingParams, generate
from nemo_twvlm.inference.prompt import prompt_ids, sampling_params


def generate_answer(model, tokenizer, preset, image, text: str, *, image_token_index: int, max_new_tokens: int = 64,
                    prompt_style: str = "chat") -> tuple[str, int]:
    """(decoded greedy answer, special tokens dropped; number of tokens generated before a stop token or
    the limit) of the model to `text` about `image` ([3, H, W] in [0, 1])."""
    ids = prompt_ids(tokenizer, text, image_token_index=image_token_index, prompt_style=prompt_style)
    pixels = preprocess_image(image, preset.vision)[None]
    params = sampling_params(tokenizer, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    out = generate(model, ids, pixels, image_token_index=image_token_index, num_image_tokens=preset.num_image_tokens,
                   params=params)
    return tokenizer.decode(out, skip_special_tokens=True).strip(), len(out)


def generate_text(model, tokenizer, preset, image, text: str, *, image_token_index: int, max_new_tokens: int = 64,
                  prompt_style: str = "chat") -> str:
    """The greedy answer alone (generate_answer)."""
    return generate_answer(model, tokenizer, preset, image, text, image_token_index=image_token_index,
                           max_new_tokens=max_new_tokens, prompt_style=prompt_style)[0]
