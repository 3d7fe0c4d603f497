"""Forward step and loss for megatron.training: a LlavaBatch in, masked token loss out."""
from __future__ import annotations

import json
import time
from functools import partial

import torch
from megatron.core.packed_seq_params import PackedSeqParams

from nemo_twvlm.data.packing import block_causal_mask, cu_seqlens
from nemo_twvlm.data.task_encoder import LlavaBatch


def model_inputs(batch: LlavaBatch, *, image_token_index: int, num_image_tokens: int, use_te: bool,
                 seq_length: int | None = None, fixed_length: bool = False, shard_factor: int = 1) -> dict:
    """Keyword arguments for LLaVAModel.forward that keep packed samples from attending to each other.

    Transformer Engine takes the packed layout directly (THD, cu_seqlens); megatron's local attention
    takes an explicit block-diagonal causal mask instead.

    `seq_length` is the model's max_sequence_length: megatron cuts combined rows to it, and with
    `fixed_length` (pipeline parallelism) pads them to it. None: rows are as long as the batch needs.
    `shard_factor` is what megatron then pads the combined length to a multiple of, so sequence or
    context parallel ranks get equal shares (`shard_factor(...)`).
    """
    images_per_row = (batch.tokens == image_token_index).sum(dim=1)
    total = int((batch.tokens.shape[1] + images_per_row * (num_image_tokens - 1)).max())
    if seq_length is not None:
        # Rows are padded text plus expanded images; only that padding may fall past the cut.
        longest = max(sum(lengths) for lengths in batch.seq_lengths)
        if longest > seq_length:
            raise ValueError(f"a packed row holds {longest} positions, more than the model's sequence length {seq_length}")
        total = seq_length if fixed_length else min(total, seq_length)
    total = -(-total // shard_factor) * shard_factor
    kwargs = dict(
        images=batch.images,
        input_ids=batch.tokens,
        position_ids=batch.position_ids,
        labels=batch.labels,
        loss_mask=batch.loss_mask,
        num_image_tiles=batch.num_image_tiles,
    )
    if use_te:
        if len(batch.seq_lengths) != 1:
            raise ValueError("packed sequences with Transformer Engine need data.micro_batch_size=1 (THD layout)")
        lengths = list(batch.seq_lengths[0])
        if sum(lengths) < total:
            lengths.append(total - sum(lengths))  # the padding tail is its own segment
        cu = cu_seqlens(lengths).to(batch.tokens.device)
        kwargs["attention_mask"] = None
        # Segments carry their own padding (LlavaTaskEncoder's segment_multiple), so the padded
        # boundaries context parallelism splits on are the boundaries themselves.
        kwargs["packed_seq_params"] = PackedSeqParams(
            qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, cu_seqlens_q_padded=cu, cu_seqlens_kv_padded=cu,
            max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths),
        )
    else:
        kwargs["attention_mask"] = block_causal_mask(batch.seq_lengths, total).to(batch.tokens.device)
    return kwargs


def shard_factor(*, tensor_parallel: int, context_parallel: int, sequence_parallel: bool) -> int:
    """The multiple megatron's LLaVA pads the combined sequence to (its _process_embedding_token_parallel)."""
    if context_parallel > 1:
        return 2 * context_parallel * (tensor_parallel if sequence_parallel else 1)
    return tensor_parallel if sequence_parallel else 1


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor, *, on_loss=None):
    """megatron.training's loss contract: (sum of token losses, token count, logged values)."""
    losses = output_tensor.float().reshape(-1)
    mask = loss_mask.reshape(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().detach().to(torch.int)
    if on_loss is not None:
        on_loss(loss.detach() / num_tokens.clamp_min(1))
    return loss, num_tokens, {"lm loss": torch.cat([loss.detach().view(1), num_tokens.view(1).float()])}


class SampleLog:
    """Appends, per micro-batch, the sample keys and the batch loss (for resume checks and audits)."""

    def __init__(self, path: str):
        self.path = path

    def record(self, iteration: int, keys: list[list[str]], loss: torch.Tensor) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"iteration": iteration, "keys": keys, "loss": float(loss)}) + "\n")


def forward_step(data_iterator, model, *, image_token_index: int, num_image_tokens: int, use_te: bool,
                 seq_length: int | None = None, fixed_length: bool = False, shard_factor: int = 1,
                 sample_log: SampleLog | None = None, iteration: int = 0, on_batch=None):
    """`on_batch(batch, seconds)`: called with each batch and how long the loader took to give it."""
    start = time.perf_counter()
    batch: LlavaBatch = next(data_iterator)
    if on_batch is not None:
        on_batch(batch, time.perf_counter() - start)
    output, loss_mask = model(**model_inputs(batch, image_token_index=image_token_index,
                                             num_image_tokens=num_image_tokens, use_te=use_te, seq_length=seq_length,
                                             fixed_length=fixed_length, shard_factor=shard_factor))
    on_loss = partial(sample_log.record, iteration, batch.keys) if sample_log else None
    return output, partial(masked_token_loss, loss_mask, on_loss=on_loss)
