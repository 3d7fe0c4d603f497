"""Mock micro-batches for throughput runs: random full-length rows shaped like the real loader's.

Each row is one sample of exactly `seq_length` expanded positions: `images_per_sample` images spread
through random text, loss on every text position. Nothing is read or decoded, so step time measures
the model and the parallel layout alone (the counterpart of megatron's MockGPTDataset for this VLM).
"""
from __future__ import annotations

import torch

from nemo_twvlm.data.task_encoder import LlavaBatch
from nemo_twvlm.presets import ModelPreset


class MockBatches:
    """An endless, seeded iterator of `LlavaBatch`; `save_state()` is None (nothing to resume)."""

    def __init__(self, preset: ModelPreset, *, seq_length: int, micro_batch_size: int, images_per_sample: int,
                 image_token_index: int, seed: int = 1234):
        text_positions = seq_length - images_per_sample * preset.num_image_tokens
        if text_positions < images_per_sample + 1:
            raise ValueError(f"data.mock_images_per_sample={images_per_sample} x {preset.num_image_tokens} image "
                             f"tokens leave no text in data.seq_length={seq_length}")
        self.preset, self.seq_length, self.micro_batch_size = preset, seq_length, micro_batch_size
        self.images_per_sample, self.image_token_index = images_per_sample, image_token_index
        # Placeholders count one position each in `tokens`; the model expands them.
        self.width = text_positions + images_per_sample
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> LlavaBatch:
        b, n, k = self.micro_batch_size, self.width, self.images_per_sample
        vocab = self.preset.language.vocab_size
        ids = torch.randint(0, vocab, (b, n + 1), generator=self.generator)
        ids[ids == self.image_token_index] = (self.image_token_index + 1) % vocab
        # Images evenly through the row, never at the last id (the label shift drops it).
        image_at = torch.linspace(0, n - 1, k + 1)[:-1].long()
        ids[:, image_at] = self.image_token_index
        tokens, labels = ids[:, :-1], ids[:, 1:]
        # As megatron's LLaVA trains: neither a target that is an image nor the position an image fills.
        loss_mask = ((labels != self.image_token_index) & (tokens != self.image_token_index)).float()
        size = self.preset.vision.image_size
        keys = [[f"mock{self.step:07d}_{row}"] for row in range(b)]
        self.step += 1
        return LlavaBatch(
            __key__=[k[0] for k in keys], __restore_key__=(),
            tokens=tokens.contiguous(), labels=labels.contiguous(), loss_mask=loss_mask,
            position_ids=torch.arange(n).expand(b, -1).clone(),
            images=torch.randn(b * k, 3, size, size, generator=self.generator),
            num_image_tiles=torch.ones(b * k, dtype=torch.int),
            seq_lengths=[[self.seq_length] for _ in range(b)], keys=keys,
        )

    def save_state(self):
        return None
