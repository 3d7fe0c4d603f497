"""Image preprocessing for the CLIP encoder: pad to square, resize, normalise (LLaVA's 'pad' mode)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nemo_twvlm.presets import VisionPreset


def preprocess_image(image: torch.Tensor, vision: VisionPreset) -> torch.Tensor:
    """[3, H, W] float in [0, 1] (Energon's 'torchrgb' decode) -> [3, S, S] CLIP-normalised.

    Padding with the dataset mean keeps the whole picture (no centre crop cuts off an object in a
    corner) and pads to exactly zero after normalisation.
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"image tensor has shape {tuple(image.shape)}; expected [3, H, W]")
    image = image.float()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    elif image.shape[0] == 4:
        image = image[:3]
    mean = torch.tensor(vision.mean).view(3, 1, 1)
    std = torch.tensor(vision.std).view(3, 1, 1)
    _, height, width = image.shape
    side = max(height, width)
    if height != width:
        canvas = mean.expand(3, side, side).clone()
        top, left = (side - height) // 2, (side - width) // 2
        canvas[:, top:top + height, left:left + width] = image
        image = canvas
    if side != vision.image_size:
        image = F.interpolate(image[None], size=(vision.image_size, vision.image_size), mode="bicubic",
                              align_corners=False, antialias=side > vision.image_size)[0].clamp(0, 1)
    return (image - mean) / std


def blank_image(vision: VisionPreset) -> torch.Tensor:
    """The normalised image that carries no information (all pixels at the dataset mean)."""
    return torch.zeros(3, vision.image_size, vision.image_size)
