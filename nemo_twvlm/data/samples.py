"""Sample types beyond Energon's own (CaptioningSample, InterleavedSample)."""
import torch
from megatron.energon import Sample
from megatron.energon.edataclass import edataclass


@edataclass
class ConversationSample(Sample):
    """A LLaVA-style visual instruction: images referenced by `<image>` in the turns, in order."""

    #: The images, [3, H, W] each, in the order their placeholders appear.
    images: list[torch.Tensor]
    #: Turns as {"role"/"from": ..., "content"/"value": ...} (LLaVA or chat style).
    conversation: list[dict]
