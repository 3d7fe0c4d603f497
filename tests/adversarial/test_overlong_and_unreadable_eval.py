"""A prompt longer than the context is refused (chat, generation, scoring), never cut; in an evaluation an
over-long question or a JPEG cut short (it passes PIL's verify()) is a counted skip with its reason, and
the rest of the run is what it would have been without it."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nemo_twvlm.presets import PRESETS

IMAGE_ID = 5  # the debug_model fixture's


def _jpeg(path: Path, *, cut: bool = False) -> str:
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if cut else data)
    if cut:
        with Image.open(path) as image:
            image.verify()  # the header is whole: only decoding finds the cut
    return path.name


def _mcq(root: Path, rows: list[dict]) -> Path:
    path = root / f"mcq_{len(rows)}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_generation_refuses_a_prompt_longer_than_the_context(debug_model, tokenizer):
    from nemo_twvlm.inference.generate import PromptTooLong, SamplingParams, generate

    context = debug_model.language_model.max_sequence_length
    ids = [tokenizer.bos_token_id, IMAGE_ID] + [100] * context
    pixels = torch.zeros(1, 3, 32, 32)
    with pytest.raises(PromptTooLong, match=rf"more than the model's context of {context}; shorten the prompt"):
        generate(debug_model, ids, pixels, image_token_index=IMAGE_ID, num_image_tokens=PRESETS["debug"].num_image_tokens,
                 params=SamplingParams(max_new_tokens=4))
    # The prompt fits, but not with 64 new tokens after it: refused too, naming max_new_tokens.
    fits = [tokenizer.bos_token_id, IMAGE_ID] + [100] * (context - PRESETS["debug"].num_image_tokens - 10)
    with pytest.raises(PromptTooLong, match="lower max_new_tokens"):
        generate(debug_model, fits, pixels, image_token_index=IMAGE_ID,
                 num_image_tokens=PRESETS["debug"].num_image_tokens, params=SamplingParams(max_new_tokens=64))


def test_an_overlong_question_and_a_cut_jpeg_are_counted_skips(debug_model, tokenizer, tmp_path):
    import torch._dynamo

    from nemo_twvlm.evaluation.harness import evaluate_model

    _jpeg(tmp_path / "good.jpg")
    _jpeg(tmp_path / "cut.jpg", cut=True)
    good = {"id": "good", "image": "good.jpg", "question": "什麼顏色？", "options": ["紅", "藍"], "answer": 0}
    rows = [good, {**good, "id": "long", "question": "很長的問題" * 400},
            {**good, "id": "cut", "image": "cut.jpg"}]
    kwargs = dict(image_token_index=IMAGE_ID, max_new_tokens=3, modes=("loglik", "generate"))
    # megatron's fused activations go through torch.compile, whose first compile would be most of this
    # test. dynamo's own patch: monkeypatch's undo deletes the option from torch's config module.
    with torch._dynamo.config.patch(disable=True):
        results = evaluate_model(debug_model, tokenizer, PRESETS["debug"], [f"mcq:{_mcq(tmp_path, rows)}"],
                                 out_dir=tmp_path / "out", **kwargs)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    (task,) = on_disk["tasks"]
    assert task["summary"] == {"lines": 3, "loaded": 1, "skipped": 2, "evaluated": 1,
                               "skipped_by_reason": {"prompt too long": 1, "image unreadable": 1}}
    assert [(p["line"], p["reason"].split(":")[0]) for p in on_disk["problems"]] == [
        (2, "prompt too long"), (3, "image unreadable")]
    assert "more than the model's context of 1024" in on_disk["problems"][0]["reason"]
    assert "cut.jpg" in on_disk["problems"][1]["reason"]
    # Nothing else changed: the good item scores as it does alone.
    alone = evaluate_model(debug_model, tokenizer, PRESETS["debug"], [f"mcq:{_mcq(tmp_path, [good])}"],
                           out_dir=tmp_path / "alone", **kwargs)
    assert [r["loglik"] for r in results["tasks"][0]["records"]] == [r["loglik"] for r in alone["tasks"][0]["records"]]
    assert results["tasks"][0]["scores"] == alone["tasks"][0]["scores"]
