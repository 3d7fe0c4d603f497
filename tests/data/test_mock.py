"""Mock batches for throughput runs: full-length rows the real model accepts, reproducible by seed."""
import torch

from nemo_twvlm.data.mock import MockBatches
from nemo_twvlm.presets import PRESETS
from nemo_twvlm.training.step import model_inputs

DEBUG = PRESETS["debug"]
IMAGE_ID = 5


def _batches(seed=0, **kwargs):
    args = dict(seq_length=256, micro_batch_size=3, images_per_sample=2, image_token_index=IMAGE_ID, seed=seed)
    return MockBatches(DEBUG, **{**args, **kwargs})


def test_rows_fill_the_sequence_exactly_with_the_requested_images():
    batch = next(_batches())
    n = DEBUG.num_image_tokens
    assert batch.tokens.shape == (3, 256 - 2 * n + 2)
    assert ((batch.tokens == IMAGE_ID).sum(dim=1) == 2).all()
    assert batch.images.shape == (6, 3, DEBUG.vision.image_size, DEBUG.vision.image_size)
    assert batch.seq_lengths == [[256]] * 3
    # Expanded: every row is exactly seq_length positions, the last id is text (the label shift drops it).
    assert (batch.tokens[:, -1] != IMAGE_ID).all()
    # Every text position trains except the 2 images' own positions and the 1 whose target is an image
    # (the first image sits at position 0: it is nobody's target).
    assert batch.loss_mask.sum() == 3 * (batch.tokens.shape[1] - 3)
    assert int(batch.tokens.max()) < DEBUG.language.vocab_size


def test_same_seed_same_rows_and_steps_differ():
    a, b = _batches(seed=7), _batches(seed=7)
    first_a, first_b = next(a), next(b)
    assert torch.equal(first_a.tokens, first_b.tokens) and torch.equal(first_a.images, first_b.images)
    assert not torch.equal(next(a).tokens, first_a.tokens)
    assert not torch.equal(next(_batches(seed=8)).tokens, first_a.tokens)


def test_the_debug_model_takes_a_mock_batch_at_full_length(debug_model):
    batch = next(_batches(micro_batch_size=2))
    kwargs = model_inputs(batch, image_token_index=IMAGE_ID, num_image_tokens=DEBUG.num_image_tokens, use_te=False,
                          seq_length=256)
    with torch.no_grad():
        losses, loss_mask = debug_model(**kwargs)
    assert losses.shape == loss_mask.shape == (2, 256)
    assert torch.isfinite(losses).all()
    assert loss_mask.sum() == batch.loss_mask.sum()


def test_too_many_images_is_refused_by_name():
    import pytest

    with pytest.raises(ValueError, match="mock_images_per_sample=16"):
        _batches(images_per_sample=16)
