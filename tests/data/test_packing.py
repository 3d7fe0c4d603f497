"""Sequence packing: bins, the block-diagonal mask, no attention across packed samples in the real model,
and the fill it reaches on the synthetic blend through the Energon loader."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from megatron.energon import CaptioningSample, InterleavedSample

from nemo_twvlm.data.loader import train_loader
from nemo_twvlm.data.packing import block_causal_mask, cu_seqlens, pack_by_length, packing_efficiency
from nemo_twvlm.data.task_encoder import LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS
from nemo_twvlm.training.step import model_inputs, shard_factor

DEBUG = PRESETS["debug"]
IMAGE_ID, PAD = 5, 6
EXTRA = DEBUG.num_image_tokens - 1
SEQ_LENGTH = 256


# Expanded lengths the debug encoder produced for 400 samples of the synthetic blend (length: count).
MEASURED_LENGTHS = {36: 129, 37: 43, 38: 17, 39: 37, 55: 4, 56: 2, 57: 6, 58: 8, 59: 7, 60: 1, 61: 2, 62: 2,
                    63: 4, 64: 2, 65: 5, 66: 3, 67: 4, 68: 2, 78: 1, 79: 2, 80: 1, 81: 3, 82: 3, 83: 1, 84: 4,
                    85: 4, 86: 4, 87: 2, 88: 1, 89: 3, 90: 2, 91: 5, 92: 4, 93: 1, 94: 1}


def synthetic_like_lengths(rng: np.random.Generator, n: int) -> list[int]:
    values, counts = zip(*MEASURED_LENGTHS.items())
    return rng.choice(values, size=n, p=np.array(counts) / sum(counts)).tolist()


# -------------------------------------------------------------------------------------------- pack_by_length


def _check_bins(rows: list[list[int]], lengths: list[int], capacity: int) -> None:
    assert sorted(i for row in rows for i in row) == list(range(len(lengths))), "every item exactly once"
    assert all(row for row in rows)
    assert all(sum(lengths[i] for i in row) <= capacity for row in rows)


def test_pack_by_length_uses_every_item_once_within_capacity():
    rng = np.random.default_rng(0)
    for _ in range(30):
        capacity = int(rng.integers(8, 300))
        lengths = rng.integers(1, capacity + 1, int(rng.integers(1, 200))).tolist()
        _check_bins(pack_by_length(lengths, capacity), lengths, capacity)
    assert pack_by_length([], 10) == []
    assert pack_by_length([10, 10], 10) == [[0], [1]]
    assert sorted(map(sorted, pack_by_length([6, 4, 5, 5], 10))) == [[0, 1], [2, 3]]


def test_pack_by_length_refuses_an_item_longer_than_capacity():
    with pytest.raises(ValueError, match="item 1 has length 11 > capacity 10"):
        pack_by_length([3, 11, 2], 10)


@pytest.mark.parametrize("seed", range(5))
def test_pack_by_length_fill_on_realistic_lengths(seed):
    lengths = synthetic_like_lengths(np.random.default_rng(seed), 256)  # one packing buffer of the loader
    rows = pack_by_length(lengths, SEQ_LENGTH)
    _check_bins(rows, lengths, SEQ_LENGTH)
    fill = sum(lengths) / (len(rows) * SEQ_LENGTH)
    print(f"pack_by_length fill, seed {seed}: {fill:.4f} over {len(rows)} rows")
    assert fill >= 0.97


def test_pack_by_length_fill_at_8b_scale():
    # seq 8192, 576 image tokens per image: captions ~600-700 positions, interleaved docs 1.3k-2.9k.
    rng = np.random.default_rng(2)
    lengths = [576 + int(rng.integers(20, 120)) if rng.random() < 0.7
               else 576 * int(rng.integers(2, 5)) + int(rng.integers(100, 600)) for _ in range(256)]
    rows = pack_by_length(lengths, 8192)
    _check_bins(rows, lengths, 8192)
    assert sum(lengths) / (len(rows) * 8192) >= 0.97


# ------------------------------------------------------------------------------------- mask and cu_seqlens


def test_block_causal_mask_hand_example():
    allowed = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],  # the second sample starts fresh: it cannot see the first
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding attends only to itself
    ], dtype=torch.bool)
    mask = block_causal_mask([[3, 2]], 6)
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 6, 6)
    assert torch.equal(mask[0, 0], ~allowed)  # True = blocked (megatron's convention)

    two_rows = block_causal_mask([[3, 2], [6]], 6)
    assert torch.equal(two_rows[0, 0], ~allowed)
    assert torch.equal(two_rows[1, 0], ~torch.ones(6, 6, dtype=torch.bool).tril())


def test_cu_seqlens():
    cu = cu_seqlens([3, 2])
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 5]
    assert cu_seqlens([4]).tolist() == [0, 4]


def test_packing_efficiency():
    assert packing_efficiency([[3, 2], [4]], 6) == pytest.approx(9 / 12)
    assert packing_efficiency([], 6) == 0.0


# ------------------------------------------------------------------------- no cross-sample attention (real model)


def _caption(key: str, text: str, seed: int) -> CaptioningSample:
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return CaptioningSample(__key__=key, __restore_key__=(), image=image, caption=text)


def _doc(key: str, seed: int) -> InterleavedSample:
    g = torch.Generator().manual_seed(seed)
    return InterleavedSample(__key__=key, __restore_key__=(), sequence=[
        "分享幾張照片：", torch.rand(3, 64, 64, generator=g), "黃色的台北101在右上。然後是這張：",
        torch.rand(3, 64, 64, generator=g), "A green temple roof at the bottom left."])


def _logits(model, batch, **overrides) -> torch.Tensor:
    kwargs = model_inputs(batch, image_token_index=IMAGE_ID, num_image_tokens=DEBUG.num_image_tokens, use_te=False)
    kwargs.pop("labels"), kwargs.pop("loss_mask")
    kwargs.update(overrides)
    with torch.no_grad():
        logits, _ = model(**kwargs)
    return logits


@pytest.fixture(scope="module")
def encoder(tokenizer) -> LlavaTaskEncoder:
    return LlavaTaskEncoder(tokenizer, DEBUG, SEQ_LENGTH)


def test_packed_sample_attends_only_to_itself(encoder, debug_model):
    a = encoder.encode_sample(_caption("a", "紅色的珍珠奶茶在左上。", seed=1))
    b = encoder.encode_sample(_doc("b", seed=2))  # two images of its own before A's image
    la, lb = a.seq_lengths[0], b.seq_lengths[0]

    alone_a = _logits(debug_model, encoder.batch([a]))[0]
    alone_b = _logits(debug_model, encoder.batch([b]))[0]
    assert alone_a.shape[0] == la and torch.isfinite(alone_a).all()

    # Row 0: B then A packed; row 1: A alone, padded to the packed width.
    batch = encoder.batch([encoder.pack_selected_samples([b, a]), a])
    assert batch.seq_lengths == [[lb, la], [la]] and batch.keys == [["b", "a"], ["a"]]
    packed = _logits(debug_model, batch)
    assert packed.shape[1] == lb + la and torch.isfinite(packed).all()

    diff_a = (packed[0, lb:lb + la] - alone_a).abs().max().item()
    diff_b = (packed[0, :lb] - alone_b).abs().max().item()
    diff_pad = (packed[1, :la] - alone_a).abs().max().item()
    print(f"max |logit diff|: A after B {diff_a:.2e}, B {diff_b:.2e}, A in a padded row {diff_pad:.2e}")
    assert diff_a <= 1e-5 and diff_b <= 1e-5 and diff_pad <= 1e-5

    # The check has teeth: one causal mask over the whole packed row lets A see B, and A's logits move.
    total = lb + la
    leaky = _logits(debug_model, encoder.batch([encoder.pack_selected_samples([b, a])]),
                    attention_mask=block_causal_mask([[total]], total))
    assert (leaky[0, lb:] - alone_a).abs().max().item() > 1e-3


def test_transformer_engine_inputs_carry_the_sample_boundaries(encoder):
    a = encoder.encode_sample(_caption("a", "紅色的珍珠奶茶在左上。", seed=1))
    b = encoder.encode_sample(_doc("b", seed=2))
    batch = encoder.batch([encoder.pack_selected_samples([b, a])])
    kwargs = model_inputs(batch, image_token_index=IMAGE_ID, num_image_tokens=DEBUG.num_image_tokens, use_te=True)
    params = kwargs["packed_seq_params"]
    assert kwargs["attention_mask"] is None and params.qkv_format == "thd"
    assert params.cu_seqlens_q.tolist() == params.cu_seqlens_kv.tolist() == [0, b.seq_lengths[0],
                                                                              b.seq_lengths[0] + a.seq_lengths[0]]
    assert params.max_seqlen_q == max(a.seq_lengths[0], b.seq_lengths[0])
    with pytest.raises(ValueError, match="micro_batch_size=1"):
        model_inputs(encoder.batch([a, b]), image_token_index=IMAGE_ID, num_image_tokens=16, use_te=True)


# ------------------------------------------------------------------------ efficiency through the Energon loader


def _check_rows(batch) -> None:
    n_images = (batch.tokens == IMAGE_ID).sum(dim=1)
    assert batch.images.shape[0] == len(batch.num_image_tiles) == int(n_images.sum())
    for row, lengths in enumerate(batch.seq_lengths):
        assert sum(lengths) <= SEQ_LENGTH
        n_tokens = sum(lengths) - int(n_images[row]) * EXTRA  # the row's real (unexpanded) tokens
        assert (batch.tokens[row, n_tokens:] == PAD).all() and (batch.loss_mask[row, n_tokens:] == 0).all()
        assert len(batch.keys[row]) == len(lengths)


def _efficiency(path, encoder, *, packing: bool, batches: int = 20) -> float:
    loader = train_loader(str(path), encoder, micro_batch_size=8, packing=packing, packing_buffer_size=256)
    rows = []
    for batch in itertools.islice(loader, batches):
        _check_rows(batch)
        rows += batch.seq_lengths
    # Naive padding (packing=False) is scored the same way: each sample its own row of seq_length.
    return packing_efficiency(rows, SEQ_LENGTH)


def test_packing_efficiency_on_the_synthetic_blend(synthetic_blend, encoder):
    packed = _efficiency(synthetic_blend / "blend.yaml", encoder, packing=True)
    naive = _efficiency(synthetic_blend / "blend.yaml", encoder, packing=False)
    print(f"useful-token fraction over 20 batches of 8 rows x {SEQ_LENGTH}: packed {packed:.4f}, "
          f"one sample per row {naive:.4f}")
    assert packed >= 0.97
    assert naive < 0.3 and packed > naive + 0.6


# ------------------------------------------------------------------------ context parallelism


def test_context_parallel_segments_are_padded_to_2cp_without_training_the_padding(tokenizer):
    plain = LlavaTaskEncoder(tokenizer, DEBUG, 256)
    cp2 = LlavaTaskEncoder(tokenizer, DEBUG, 256, segment_multiple=4)
    for sample in (_caption("a", "紅色的珍珠奶茶在左上。", seed=1), _doc("b", seed=2)):
        before, after = plain.encode_sample(sample), cp2.encode_sample(sample)
        assert after.seq_lengths[0] % 4 == 0 and 0 <= after.seq_lengths[0] - before.seq_lengths[0] < 4
        pad = after.seq_lengths[0] - before.seq_lengths[0]
        assert after.loss_mask.sum() == before.loss_mask.sum()
        assert torch.equal(after.tokens[:len(before.tokens)], before.tokens)
        assert len(after.tokens) - len(before.tokens) == pad
        assert torch.equal(after.labels[:len(before.labels)], before.labels)
        assert (after.labels[len(before.labels):] == tokenizer.pad_token_id).all()
        assert (after.loss_mask[len(before.loss_mask):] == 0).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        LlavaTaskEncoder(tokenizer, DEBUG, 258, segment_multiple=4)


def test_thd_boundaries_follow_megatrons_shard_padding(tokenizer):
    """Megatron pads the combined row to a multiple of the shard factor; the last segment absorbs it,
    and every boundary stays a multiple of 2*CP so Transformer Engine can split segments evenly."""
    encoder = LlavaTaskEncoder(tokenizer, DEBUG, 256, segment_multiple=4)
    a = encoder.encode_sample(_caption("a", "紅色的珍珠奶茶在左上。", seed=1))
    b = encoder.encode_sample(_doc("b", seed=2))
    batch = encoder.batch([encoder.pack_selected_samples([b, a])])
    factor = shard_factor(tensor_parallel=2, context_parallel=2, sequence_parallel=True)
    assert factor == 8 and shard_factor(tensor_parallel=4, context_parallel=1, sequence_parallel=True) == 4
    assert shard_factor(tensor_parallel=4, context_parallel=1, sequence_parallel=False) == 1
    params = model_inputs(batch, image_token_index=IMAGE_ID, num_image_tokens=DEBUG.num_image_tokens, use_te=True,
                          seq_length=256, shard_factor=factor)["packed_seq_params"]
    bounds = params.cu_seqlens_q.tolist()
    assert bounds[:3] == [0, b.seq_lengths[0], b.seq_lengths[0] + a.seq_lengths[0]]
    assert bounds[-1] % factor == 0 and all(x % 4 == 0 for x in bounds)
    assert params.cu_seqlens_q_padded.tolist() == bounds
