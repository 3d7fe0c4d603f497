"""Energon task encoder: captioning pairs and interleaved documents -> packed LLaVA training rows.

Token layout follows megatron-core's LLaVAModel: one `<image>` id per image in `tokens`; the model
replaces it with `num_image_tokens` projected embeddings and shifts labels/loss mask accordingly.
All lengths used for packing and truncation are the expanded ones the LM actually sees.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Optional

import torch
from megatron.energon import Batch, CaptioningSample, DefaultTaskEncoder, InterleavedSample, Sample, stateless
from megatron.energon.edataclass import edataclass

from nemo_twvlm.data.conversation import IMAGE_PLACEHOLDER, encode_conversation, normalise_messages
from nemo_twvlm.data.image import preprocess_image
from nemo_twvlm.data.packing import pack_by_length
from nemo_twvlm.data.samples import ConversationSample
from nemo_twvlm.data.text import IMAGE_TOKEN_IN_TEXT, strip_image_token
from nemo_twvlm.data.tokenizer import image_token_id
from nemo_twvlm.presets import ModelPreset

log = logging.getLogger(__name__)

# The instruction shown before a caption; kept out of the loss. Evaluation reuses it.
CAPTION_PROMPT = "請用一句話描述這張圖。"


class BadSample(ValueError):
    """A sample that cannot be trained on; `reason` is the counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# Skipped samples by reason, for this process (each Energon worker process keeps its own).
SKIPPED: Counter[str] = Counter()
# Samples trained on after a repair (IMAGE_TOKEN_IN_TEXT: a literal <image> stripped from their text), likewise.
REPAIRED: Counter[str] = Counter()


def count_and_log_skip(exception: Exception, sample, sources=None) -> None:
    """Energon `global_error_handler`: every skipped sample is logged with its key and counted."""
    reason = exception.reason if isinstance(exception, BadSample) else type(exception).__name__
    SKIPPED[reason] += 1
    # Load-time failures (undecodable member, missing member) hand over Energon's RawSampleData, whose
    # first element is the raw sample dict carrying the key and the shard it came from.
    raw = getattr(sample, "data", None)
    if isinstance(raw, tuple) and raw and isinstance(raw[0], dict):
        sample = raw[0]
        sources = sources or sample.get("__sources__")
    if isinstance(sample, dict):
        key = sample.get("__key__")
    elif isinstance(sample, list):
        key = ",".join(str(getattr(s, "__key__", s)) for s in sample)
    else:
        key = getattr(sample, "__key__", None)
    where = ", ".join(str(getattr(s, "shard_name", s)) for s in sources or ()) or "?"
    detail = str(exception) or repr(exception.__cause__)
    log.warning("skipped sample %s (%s) from %s: %s [total %s=%d]", key, reason, where, detail, reason,
                SKIPPED[reason])


@edataclass
class EncodedSample(Sample):
    """One training row before batching: a single sample, or several packed together."""

    tokens: torch.Tensor  # [n] ids, one image id per image
    labels: torch.Tensor  # [n] next-token targets
    loss_mask: torch.Tensor  # [n] 1.0 where labels[i] is trained
    images: torch.Tensor  # [k, 3, S, S] CLIP-normalised
    seq_lengths: list[int]  # expanded length of each sample in the row
    keys: list[str]  # the sample keys in the row, in order


@edataclass
class LlavaBatch(Batch):
    tokens: torch.Tensor  # [b, n]
    labels: torch.Tensor  # [b, n]
    loss_mask: torch.Tensor  # [b, n]
    position_ids: torch.Tensor  # [b, n]
    images: torch.Tensor  # [total images, 3, S, S]
    num_image_tiles: torch.Tensor  # [total images] (one tile each)
    seq_lengths: list[list[int]]  # per row, expanded length of each packed sample
    keys: list[list[str]]  # per row, the sample keys


class LlavaTaskEncoder(DefaultTaskEncoder[Sample, EncodedSample, LlavaBatch, LlavaBatch]):
    def __init__(self, tokenizer, preset: ModelPreset, seq_length: int, *, image_placeholder_id: Optional[int] = None,
                 segment_multiple: int = 1):
        """`segment_multiple`: pad every sample (untrained pad ids at its end) to an expanded length
        divisible by it; context parallelism needs 2 x its size. seq_length must then be a multiple too."""
        super().__init__()
        if seq_length % segment_multiple:
            raise ValueError(f"data.seq_length={seq_length} must be a multiple of {segment_multiple} "
                             f"(2 x parallel.context_parallel)")
        self.segment_multiple = segment_multiple
        self.tokenizer = tokenizer
        self.preset = preset
        self.seq_length = seq_length
        self.image_id = image_token_id(tokenizer) if image_placeholder_id is None else image_placeholder_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.extra_per_image = preset.num_image_tokens - 1
        if seq_length <= preset.num_image_tokens:
            raise ValueError(f"data.seq_length={seq_length} must exceed the {preset.num_image_tokens} image tokens "
                             f"of preset {preset.name!r}")

    def _text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _data_text(self, text: str, key: str) -> list[int]:
        """A caption's or a document's ids, none for one that was only `<image>`: never the image id
        (nemo_twvlm.data.text says why)."""
        text, found = strip_image_token(text)
        if found:
            REPAIRED[IMAGE_TOKEN_IN_TEXT] += 1
            log.warning("sample %s: %d literal <image> stripped from its text [total %s=%d]", key, found,
                        IMAGE_TOKEN_IN_TEXT, REPAIRED[IMAGE_TOKEN_IN_TEXT])
            if not text.strip():
                return []
        ids = self._text(text)
        if self.image_id in ids:  # a tokenizer whose normaliser makes <image> of another spelling (<IMAGE>)
            raise BadSample(IMAGE_TOKEN_IN_TEXT, f"{key}: its text still encodes to the image id {self.image_id}")
        return ids

    def _image(self, image) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            raise BadSample("undecodable_image", f"got {type(image).__name__}")
        return preprocess_image(image, self.preset.vision)

    # Stateless (pure functions of their input) so Energon can re-create samples when restoring a checkpoint.
    @stateless
    def encode_sample(self, sample: Sample) -> EncodedSample:
        # Segments of (ids, trained?) in order; images are single placeholder ids, never trained.
        segments: list[tuple[list[int], bool]] = [([self.tokenizer.bos_token_id], False)]
        images: list[torch.Tensor] = []
        if isinstance(sample, CaptioningSample):
            caption = (sample.caption or "").strip()
            if not caption:
                raise BadSample("empty_caption")
            caption_ids = self._data_text(caption, sample.__key__)
            if not caption_ids:
                raise BadSample("empty_caption", "only <image>")
            images.append(self._image(sample.image))
            segments += [([self.image_id], False), (self._text(f"\n{CAPTION_PROMPT}\n"), False),
                         (caption_ids + [self.tokenizer.eos_token_id], True)]
        elif isinstance(sample, InterleavedSample):
            for item in sample.sequence:
                if isinstance(item, str):
                    if item.strip():
                        segments.append((self._data_text(item, sample.__key__), True))
                else:
                    images.append(self._image(item))
                    # The position right after an image predicts nothing in megatron's LLaVA (its label
                    # lands on an image position), so a newline takes that slot instead of real text.
                    segments += [([self.image_id], False), (self._text("\n"), False)]
            if not any(trained and ids for ids, trained in segments):
                raise BadSample("empty_text")
            segments.append(([self.tokenizer.eos_token_id], True))
        elif isinstance(sample, ConversationSample):
            segments, images = self._conversation(sample)
        else:
            raise BadSample("unsupported_sample_type", type(sample).__name__)

        ids = [i for seg, _ in segments for i in seg]
        trained = [t for seg, t in segments for _ in seg]
        ids, trained, images = self._truncate(ids, trained, images, sample.__key__)
        # Causal attention: pad ids at the end of a sample are seen by no real token of it.
        padding = -(len(ids) - 1 + len(images) * self.extra_per_image) % self.segment_multiple
        ids, trained = ids + [self.pad_id] * padding, trained + [False] * padding
        tokens = torch.tensor(ids[:-1], dtype=torch.long)
        return EncodedSample.derive_from(
            sample,
            tokens=tokens,
            labels=torch.tensor(ids[1:], dtype=torch.long),
            loss_mask=torch.tensor(trained[1:], dtype=torch.float32),
            images=torch.stack(images) if images else torch.zeros(0, 3, *(self.preset.vision.image_size,) * 2),
            seq_lengths=[len(tokens) + len(images) * self.extra_per_image],
            keys=[sample.__key__],
        )

    def _conversation(self, sample: ConversationSample):
        try:
            ids, trained = encode_conversation(self.tokenizer, normalise_messages(sample.conversation))
        except ValueError as error:
            raise BadSample("bad_conversation", str(error)) from None
        placeholders = ids.count(self.image_id)
        if placeholders != len(sample.images):
            raise BadSample("image_count_mismatch",
                            f"{placeholders} {IMAGE_PLACEHOLDER} in the turns but {len(sample.images)} images")
        if not ids or ids[0] != self.tokenizer.bos_token_id:  # Llama-3's template writes bos itself
            ids, trained = [self.tokenizer.bos_token_id, *ids], [False, *trained]
        return [([token], flag) for token, flag in zip(ids, trained)], [self._image(i) for i in sample.images]

    def _truncate(self, ids: list[int], trained: list[bool], images: list[torch.Tensor], key: str):
        """Cut to seq_length expanded positions (+1 for the label shift), dropping whole images only."""
        limit, used, kept_images = self.seq_length + 1, 0, 0
        for n, token in enumerate(ids):
            width = 1 + (self.extra_per_image if token == self.image_id else 0)
            if used + width > limit:
                ids, trained = ids[:n], trained[:n]
                break
            used += width
            kept_images += token == self.image_id
        if ids[-1] == self.image_id:
            # The last id is dropped by the label shift, so an image there would have no placeholder.
            ids, trained, kept_images = ids[:-1], trained[:-1], kept_images - 1
        if not any(trained[1:]):
            raise BadSample("too_long", f"{key}: no trained token fits in seq_length={self.seq_length}")
        return ids, trained, images[:kept_images]

    def select_samples_to_pack(self, samples: list[EncodedSample]) -> list[list[EncodedSample]]:
        bins = pack_by_length([sum(s.seq_lengths) for s in samples], self.seq_length)
        return [[samples[i] for i in sorted(b)] for b in bins]

    @stateless
    def pack_selected_samples(self, samples: list[EncodedSample]) -> EncodedSample:
        return EncodedSample.derive_from(
            samples[0],
            tokens=torch.cat([s.tokens for s in samples]),
            labels=torch.cat([s.labels for s in samples]),
            loss_mask=torch.cat([s.loss_mask for s in samples]),
            images=torch.cat([s.images for s in samples]),
            seq_lengths=[n for s in samples for n in s.seq_lengths],
            keys=[k for s in samples for k in s.keys],
        )

    def batch(self, samples: list[EncodedSample]) -> LlavaBatch:
        width = max(len(s.tokens) for s in samples)

        def pad(field: str, value) -> torch.Tensor:
            out = torch.full((len(samples), width), value, dtype=getattr(samples[0], field).dtype)
            for row, s in enumerate(samples):
                out[row, : len(s.tokens)] = getattr(s, field)
            return out

        images = torch.cat([s.images for s in samples])
        return LlavaBatch(
            __key__=[s.__key__ for s in samples],
            __restore_key__=(),
            tokens=pad("tokens", self.pad_id),
            labels=pad("labels", self.pad_id),
            loss_mask=pad("loss_mask", 0.0),
            position_ids=torch.arange(width).expand(len(samples), -1).clone(),
            images=images,
            num_image_tiles=torch.ones(len(images), dtype=torch.int),
            seq_lengths=[list(s.seq_lengths) for s in samples],
            keys=[list(s.keys) for s in samples],
        )

    def encode_batch(self, batch: LlavaBatch) -> LlavaBatch:
        return batch

