"""Every image reader (curation's decode/verify, chat and evaluation's data.image.load_image) normalises through
data.image.normalise_image: 16-bit scaled (not clipped to white), EXIF orientation applied, alpha and
palette transparency on white, an animation cut to its first frame and noted `animated_first_frame`
(an EXIF rotation is noted `exif_oriented`, and the image re-encoded as shown)."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from curation_inputs import assert_contract, curate, draw, encode, stage_args, write_tar, zh_caption
from PIL import Image

from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch
from nemo_twvlm.curation.stages.io.decode_verify import DecodeVerifyStage
from nemo_twvlm.curation.stages.write.resize import ResizeStage
from nemo_twvlm.data.image import load_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def grey16(value: int = 32768, size=(64, 64)) -> bytes:
    img = Image.fromarray(np.full(size[::-1], value, dtype=np.uint16))
    assert img.mode.startswith("I;16")
    return encode(img)


def animated_webp(size=(64, 64)) -> bytes:
    frames = [Image.new("RGB", size, RED), Image.new("RGB", size, BLUE)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)


def sideways_jpeg() -> bytes:
    """40 wide, 80 tall as stored, tagged 'rotate 90 clockwise to view' (EXIF orientation 6)."""
    img = Image.new("RGB", (40, 80), RED)
    img.paste(BLUE, (0, 40, 40, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def transparent_palette() -> bytes:
    img = Image.new("P", (64, 64), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    return encode(img)


def transparent_la() -> bytes:
    return encode(Image.new("LA", (64, 64), (0, 0)))


def decoded(*images: bytes) -> SampleBatch:
    samples = [Sample(key=str(i), index=i, segments=[ImageItem(ref="png", data=data), "台灣"])
               for i, data in enumerate(images)]
    return DecodeVerifyStage(**stage_args("image", formats=["jpg", "png", "webp"]), cache_blocks=256, keep_side=None).process(SampleBatch(dataset_name="d", data=samples))


def pixel(item: ImageItem, xy=(1, 1)) -> tuple:
    return item.pil.getpixel(xy)


def test_curation_decode_normalises_and_notes():
    batch = decoded(grey16(), animated_webp(), sideways_jpeg(), transparent_palette(), transparent_la())
    assert not batch.rejected and len(batch.data) == 5
    items = [s.images[0] for s in batch.data]
    assert all(item.pil.mode == "RGB" for item in items)
    assert pixel(items[0]) == (128, 128, 128)  # not (255, 255, 255)
    assert pixel(items[1]) == RED
    assert items[2].pil.size == (80, 40)  # upright: the blue bottom half is now on the left
    assert max(abs(a - b) for a, b in zip(pixel(items[2], (5, 20)), BLUE)) < 40
    assert pixel(items[3]) == pixel(items[4]) == (255, 255, 255)
    assert batch.data[1].meta["notes"] == ["animated_first_frame"]
    assert batch.data[2].meta["notes"] == ["exif_oriented"]
    assert batch.stage_counts()["decode_verify"] == {"in": 5, "out": 5, "rejected": {},
                                                     "notes": {"animated_first_frame": 1, "exif_oriented": 1}}


def test_resize_reencodes_what_its_bytes_show_otherwise():
    """A small RGB JPEG in the target format keeps its bytes, unless they show it sideways."""
    plain_jpeg = encode(Image.new("RGB", (64, 64), RED), "JPEG")
    batch = ResizeStage(**stage_args("resize", max_side=672, format="jpg")).process(decoded(sideways_jpeg(), plain_jpeg))
    sideways, plain = (s.images[0] for s in batch.data)
    assert Image.open(io.BytesIO(sideways.data)).size == (80, 40) and sideways.meta["resized"] == [80, 40]
    assert "resized" not in plain.meta


@pytest.mark.parametrize("name, data, size, value", [
    ("grey16.png", grey16(), (64, 64), 128 / 255), ("anim.webp", animated_webp(), (64, 64), 1.0),
    ("sideways.jpg", sideways_jpeg(), (80, 40), None), ("palette.png", transparent_palette(), (64, 64), 1.0)])
def test_chat_load_image_normalises(tmp_path, caplog, name, data, size, value):
    path = tmp_path / name
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="nemo_twvlm.data.image"):
        pixels = load_image(path)
    assert tuple(pixels.shape) == (3, size[1], size[0])
    if value is not None:
        assert abs(float(pixels[0, 1, 1]) - value) < 1e-6
    assert ("animated_first_frame" in caplog.text) == (name == "anim.webp")


def test_curation_run_counts_the_note(tmp_path, langid_model):
    rng = np.random.default_rng(3)
    plain = [(f"ok{i}", {"png": encode(draw(rng)), "txt": zh_caption(rng).encode()}) for i in range(2)]
    moving = [(f"anim{i}", {"webp": encode(draw(rng), "WEBP", save_all=True, append_images=[draw(rng)],
                                          lossless=True), "txt": zh_caption(rng).encode()}) for i in range(2)]
    write_tar(tmp_path / "in" / "a.tar", plain + moving)
    stats = curate(tmp_path / "in", tmp_path / "out")
    assert_contract(tmp_path / "out")
    assert stats["kept"] == 4 and not stats["dropped"] and not stats["quarantined"]
    assert stats["notes"] == {"animated_first_frame": 2}
