"""LlavaTaskEncoder: token layout and loss mask (checked through megatron's real LLaVA), truncation, images."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from megatron.energon import CaptioningSample, InterleavedSample

from nemo_twvlm.data.image import blank_image, preprocess_image
from nemo_twvlm.data.task_encoder import CAPTION_PROMPT, BadSample, LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS
from nemo_twvlm.training.step import model_inputs

DEBUG = PRESETS["debug"]
VISION = DEBUG.vision
IMAGE_ID, BOS, EOS, PAD = 5, 0, 1, 6
EXTRA = DEBUG.num_image_tokens - 1  # positions an image adds beyond its placeholder id
MEAN = torch.tensor(VISION.mean).view(3, 1, 1)
STD = torch.tensor(VISION.std).view(3, 1, 1)
CAPTION = "紅色的珍珠奶茶在左上。"
DOC_TEXTS = ("今天在台灣拍到：", "紅色的圓形在左上。接著，", "藍色的方形在右下。")


def caption_sample(key: str, caption: str, image: torch.Tensor | None = None, seed: int = 0) -> CaptioningSample:
    if image is None:
        image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return CaptioningSample(__key__=key, __restore_key__=(), image=image, caption=caption)


def interleaved_sample(key: str, sequence: list) -> InterleavedSample:
    return InterleavedSample(__key__=key, __restore_key__=(), sequence=sequence)


def doc_with_images(n_images: int = 3) -> tuple[InterleavedSample, list[torch.Tensor]]:
    """text, image, text, image, text[, image, text]: images are distinct so their order is checkable."""
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(10 + i)) for i in range(n_images)]
    texts = list(DOC_TEXTS) + ["好"] * max(0, n_images + 1 - len(DOC_TEXTS))
    sequence = [texts[0]]
    for i, image in enumerate(images):
        sequence += [image, texts[i + 1]]
    return interleaved_sample("doc", sequence), images


@pytest.fixture(scope="module")
def encoder(tokenizer) -> LlavaTaskEncoder:
    return LlavaTaskEncoder(tokenizer, DEBUG, 256)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_tokenizer_ids_this_file_relies_on(tokenizer, encoder):
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, PAD)
    assert encoder.image_id == IMAGE_ID and encoder.pad_id == PAD
    assert len(ids(tokenizer, "\n")) == 1


# ---------------------------------------------------------------------------------------------- captioning


def test_caption_sample_layout(tokenizer, encoder):
    mean_colour = MEAN.expand(3, 64, 64).clone()
    out = encoder.encode_sample(caption_sample("pair7", f"  {CAPTION}\n", mean_colour))
    prompt, caption = ids(tokenizer, f"\n{CAPTION_PROMPT}\n"), ids(tokenizer, CAPTION)
    full = [BOS, IMAGE_ID, *prompt, *caption, EOS]

    assert out.tokens.tolist() == full[:-1]  # starts with bos; the caption was stripped of whitespace
    assert out.labels.tolist() == full[1:]  # labels are tokens shifted by one
    assert out.tokens[0] == BOS and int((out.tokens == IMAGE_ID).sum()) == 1
    # Only the caption and eos are trained; the placeholder and the instruction prompt are not.
    assert out.loss_mask.tolist() == [0.0] * (1 + len(prompt)) + [1.0] * (len(caption) + 1)
    assert out.labels[out.loss_mask.bool()].tolist() == caption + [EOS]
    assert out.seq_lengths == [len(out.tokens) + EXTRA]
    assert out.keys == ["pair7"]
    assert out.images.shape == (1, 3, 64, 64) and out.images.dtype == torch.float32
    # CLIP normalisation: the dataset mean colour is exactly the normalised zero.
    assert out.images.abs().max() < 1e-6


def test_caption_image_is_clip_normalised(encoder):
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    out = encoder.encode_sample(caption_sample("k", CAPTION, image))
    torch.testing.assert_close(out.images[0], (image - MEAN) / STD)


def test_empty_caption_and_non_tensor_image_are_bad_samples(encoder):
    with pytest.raises(BadSample) as info:
        encoder.encode_sample(caption_sample("k", " \n "))
    assert info.value.reason == "empty_caption"
    with pytest.raises(BadSample) as info:
        encoder.encode_sample(CaptioningSample(__key__="k", __restore_key__=(), image=b"\x89PNG", caption=CAPTION))
    assert info.value.reason == "undecodable_image"


# ---------------------------------------------------------------------------------------------- interleaved


def test_interleaved_sample_layout(tokenizer, encoder):
    doc, images = doc_with_images(2)
    out = encoder.encode_sample(doc)
    newline = ids(tokenizer, "\n")[0]
    image_positions = (out.tokens == IMAGE_ID).nonzero().flatten().tolist()

    assert out.tokens[0] == BOS
    assert len(image_positions) == 2 == out.images.shape[0]
    for got, image in zip(out.images, images):  # images stay in document order
        torch.testing.assert_close(got, preprocess_image(image, VISION))
    for i in image_positions:
        assert out.tokens[i + 1] == newline  # the slot right after an image holds a newline ...
        assert out.labels[i] == newline and out.loss_mask[i] == 0  # ... which is never a trained target
        assert out.loss_mask[i - 1] == 0  # nor is the placeholder itself
        assert out.loss_mask[i + 1] == 1  # the text after the newline is
    # Every text segment (and the closing eos) is trained, nothing else.
    trained = [t for text in DOC_TEXTS for t in ids(tokenizer, text)] + [EOS]
    assert out.labels[out.loss_mask.bool()].tolist() == trained
    assert out.labels.tolist() == out.tokens.tolist()[1:] + [EOS]
    assert out.seq_lengths == [len(out.tokens) + 2 * EXTRA]


def test_interleaved_without_text_is_a_bad_sample(encoder):
    image = torch.rand(3, 64, 64)
    with pytest.raises(BadSample) as info:
        encoder.encode_sample(interleaved_sample("doc", [image, "  ", image]))
    assert info.value.reason == "empty_text"


# --------------------------------------------------------------------------- through megatron's LLaVA model


def _forward(model, batch, *, logits: bool = False):
    kwargs = model_inputs(batch, image_token_index=IMAGE_ID, num_image_tokens=DEBUG.num_image_tokens, use_te=False)
    if logits:
        kwargs.pop("labels"), kwargs.pop("loss_mask")
    with torch.no_grad():
        return model(**kwargs)


def test_placeholder_expansion_and_loss_mask_in_the_real_model(tokenizer, encoder, debug_model):
    captions = [CAPTION, "A red circle at the top left."]  # different lengths: row 0 is padded
    samples = [encoder.encode_sample(caption_sample(f"k{i}", c, seed=i)) for i, c in enumerate(captions)]
    batch = encoder.batch(samples)
    width = max(s.seq_lengths[0] for s in samples)

    losses, loss_mask = _forward(debug_model, batch)
    logits, _ = _forward(debug_model, batch, logits=True)
    assert loss_mask.shape == losses.shape == (2, width) and logits.shape[:2] == (2, width)

    for row, (sample, text) in enumerate(zip(samples, captions)):
        n, n_trained = sample.seq_lengths[0], len(ids(tokenizer, text)) + 1
        expected = torch.zeros(width)
        # Expanded layout: bos at 0, image embeddings at 1..16, prompt, caption, eos, then padding. Only the
        # positions whose target is a caption token or eos are trained; none of the 16 image positions is.
        expected[n - n_trained:n] = 1
        assert torch.equal(loss_mask[row].float(), expected), (row, loss_mask[row])
        assert loss_mask[row, 1:1 + DEBUG.num_image_tokens].sum() == 0
        assert loss_mask[row].sum() == n_trained
        # The model's per-token loss is the cross entropy against *our* labels, placed after the image.
        for p in range(n - n_trained, n):
            target = sample.labels[p - EXTRA]
            want = F.cross_entropy(logits[row, p].float(), target)
            assert torch.allclose(losses[row, p], want, atol=1e-4), (row, p)
        assert sample.labels[n - 1 - EXTRA] == EOS


# ---------------------------------------------------------------------------------------------- truncation


def _check_consistent(out, seq_length: int) -> int:
    n_images = int((out.tokens == IMAGE_ID).sum())
    assert out.images.shape[0] == n_images, "image tensors do not match the placeholders in tokens"
    assert out.seq_lengths == [len(out.tokens) + n_images * EXTRA]
    assert out.seq_lengths[0] <= seq_length
    assert len(out.tokens) == len(out.labels) == len(out.loss_mask)
    return n_images


@pytest.mark.parametrize("room", [0, 5, EXTRA - 1])
def test_truncation_drops_an_image_that_does_not_fit_whole(tokenizer, room):
    doc, _ = doc_with_images(3)
    full = LlavaTaskEncoder(tokenizer, DEBUG, 1000).encode_sample(doc)
    second = (full.tokens == IMAGE_ID).nonzero().flatten().tolist()[1]
    start = second + EXTRA  # expanded position of the second image's first embedding
    # Only `room` (< 15) positions are left after the second image's 16 embeddings would start.
    out = LlavaTaskEncoder(tokenizer, DEBUG, start + room).encode_sample(doc)

    assert _check_consistent(out, start + room) == 1
    # The text before the image stays; its last token survives as the final label (the image id it would
    # predict is gone with the image, so that label is the last token's successor in the text).
    assert out.tokens.tolist() == full.tokens[:second - 1].tolist()
    assert out.labels.tolist() == full.labels[:second - 1].tolist()
    assert out.loss_mask.tolist() == full.loss_mask[:second - 1].tolist()
    torch.testing.assert_close(out.images, full.images[:1])
    assert out.seq_lengths == [start - 1]


def test_truncation_keeps_an_image_that_fits_with_text_after_it(tokenizer):
    doc, _ = doc_with_images(3)
    full = LlavaTaskEncoder(tokenizer, DEBUG, 1000).encode_sample(doc)
    second = (full.tokens == IMAGE_ID).nonzero().flatten().tolist()[1]
    kept = second + 4  # ..., second image, its newline, two text tokens
    seq_length = kept + 2 * EXTRA
    out = LlavaTaskEncoder(tokenizer, DEBUG, seq_length).encode_sample(doc)

    assert _check_consistent(out, seq_length) == 2
    assert out.seq_lengths == [seq_length]
    assert out.tokens.tolist() == full.tokens[:kept].tolist()
    assert out.labels.tolist() == full.labels[:kept].tolist()
    assert out.loss_mask.tolist() == full.loss_mask[:kept].tolist()
    torch.testing.assert_close(out.images, full.images[:2])


def test_truncation_at_every_length_keeps_images_and_placeholders_in_step(tokenizer):
    doc, _ = doc_with_images(3)
    full = LlavaTaskEncoder(tokenizer, DEBUG, 1000).encode_sample(doc)
    bad = []
    for seq_length in range(DEBUG.num_image_tokens + 1, full.seq_lengths[0] + 2):
        out = LlavaTaskEncoder(tokenizer, DEBUG, seq_length).encode_sample(doc)
        n = len(out.tokens)
        if not (out.images.shape[0] == int((out.tokens == IMAGE_ID).sum())
                and out.seq_lengths == [n + out.images.shape[0] * EXTRA] and out.seq_lengths[0] <= seq_length
                and out.tokens.tolist() == full.tokens[:n].tolist()):
            bad.append(seq_length)
    assert not bad, f"inconsistent rows at seq_length {bad}"


def test_sample_whose_first_trained_token_cannot_fit_is_too_long(tokenizer):
    prompt = ids(tokenizer, f"\n{CAPTION_PROMPT}\n")
    shortest = 1 + DEBUG.num_image_tokens + len(prompt)  # bos, image, prompt: then one caption label fits
    sample = caption_sample("pair42", CAPTION)

    with pytest.raises(BadSample) as info:
        LlavaTaskEncoder(tokenizer, DEBUG, shortest - 1).encode_sample(sample)
    assert info.value.reason == "too_long" and "pair42" in str(info.value)

    out = LlavaTaskEncoder(tokenizer, DEBUG, shortest).encode_sample(sample)
    assert out.seq_lengths == [shortest] and out.loss_mask.sum() == 1
    assert out.labels[-1] == ids(tokenizer, CAPTION)[0]


def test_seq_length_must_exceed_the_image_tokens(tokenizer):
    with pytest.raises(ValueError, match="seq_length=16"):
        LlavaTaskEncoder(tokenizer, DEBUG, DEBUG.num_image_tokens)


# ----------------------------------------------------------------------------------------- image preprocessing


def test_wide_image_is_padded_to_square_with_the_mean():
    image = torch.rand(3, 32, 64)  # already 64 wide: padding only, no resize
    out = preprocess_image(image, VISION)
    assert out.shape == (3, 64, 64)
    torch.testing.assert_close(out[:, 16:48], (image - MEAN) / STD)  # content kept, centred
    assert out[:, :16].abs().max() < 1e-6 and out[:, 48:].abs().max() < 1e-6  # padding is normalised zero
    torch.testing.assert_close(out[:, :16], blank_image(VISION)[:, :16])


def test_tall_image_is_padded_and_resized():
    image = torch.rand(3, 64, 40)
    out = preprocess_image(image, VISION)
    torch.testing.assert_close(out[:, :, 12:52], (image - MEAN) / STD)
    assert out[:, :, :12].abs().max() < 1e-6 and out[:, :, 52:].abs().max() < 1e-6

    colour = torch.tensor([0.9, 0.2, 0.5]).view(3, 1, 1)
    big = preprocess_image(colour.expand(3, 60, 120).clone(), VISION)  # -> 120 square -> 64
    assert big.shape == (3, 64, 64)
    assert big[:, :12].abs().max() < 1e-4 and big[:, 52:].abs().max() < 1e-4  # top/bottom padding bands
    torch.testing.assert_close(big[:, 20:44], ((colour - MEAN) / STD).expand(3, 24, 64), atol=1e-4, rtol=0)
    assert preprocess_image(MEAN.expand(3, 100, 100).clone(), VISION).abs().max() < 1e-4


def test_grayscale_and_rgba_are_accepted():
    rgb = torch.rand(3, 48, 48)
    rgba = torch.cat([rgb, torch.rand(1, 48, 48)])
    torch.testing.assert_close(preprocess_image(rgba, VISION), preprocess_image(rgb, VISION))
    gray = torch.rand(1, 64, 64)
    torch.testing.assert_close(preprocess_image(gray, VISION), preprocess_image(gray.expand(3, -1, -1), VISION))
    assert preprocess_image(torch.ones(1, 64, 64, dtype=torch.float64), VISION).dtype == torch.float32


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 3), (2, 64, 64), (1, 3, 64, 64)])
def test_bad_image_shape_is_refused_by_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        preprocess_image(torch.rand(shape), VISION)
