"""Images for the CLIP encoder: any decoded file to upright 8-bit RGB (`normalise_image`: curation,
chat and evaluation read images through it), then pad to square, resize, normalise (LLaVA's 'pad' mode)."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from nemo_twvlm.presets import VisionPreset

log = logging.getLogger(__name__)

# The note for an animation (WebP, GIF, APNG) of which only the first frame is kept: the encoder takes
# a still, and the first frame is the one viewers and thumbnails show.
ANIMATED_FIRST_FRAME = "animated_first_frame"
# The note for an image turned upright by its EXIF orientation: its encoded bytes show it otherwise.
EXIF_ORIENTED = "exif_oriented"
_EXIF_ORIENTATION = 0x0112
_TRANSPARENT_MODES = ("RGBA", "LA", "PA")


def normalise_image(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """A decoded image as upright 8-bit RGB, and the notes of what was decided for it:

    - an animation is its first frame (the one PIL opens at), noted ANIMATED_FIRST_FRAME;
    - an EXIF orientation is applied (noted EXIF_ORIENTED): phones store portraits sideways with a rotate tag;
    - 16-bit greyscale (modes I;16*, I) is scaled to 8 bits: `convert` clips every value above 255 to white;
    - transparency (alpha, a palette's transparent index) is flattened onto white, not the black
      `convert("RGB")` gives.
    """
    notes = [ANIMATED_FIRST_FRAME] if getattr(img, "is_animated", False) else []
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
        notes.append(EXIF_ORIENTED)
    if img.mode.startswith("I"):
        scaled = np.asarray(img).astype(np.float32) / 257.0  # 65535 -> 255
        img = Image.fromarray(scaled.clip(0, 255).round().astype(np.uint8), "L")
    if img.mode == "RGB":
        return img, notes
    if img.mode in _TRANSPARENT_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat, notes
    return img.convert("RGB"), notes


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


def load_image(path: str | Path) -> torch.Tensor:
    """[3, H, W] in [0, 1] from any file PIL reads, normalised as curation does (`normalise_image`)."""
    try:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as image:
            rgb, notes = normalise_image(image)
            array = np.asarray(rgb, dtype=np.float32) / 255.0
    except (OSError, ValueError) as error:
        raise ValueError(f"image {path}: cannot be read ({error})") from None
    if notes:
        log.warning("image %s: %s", path, ", ".join(notes))
    return torch.from_numpy(array).permute(2, 0, 1)
