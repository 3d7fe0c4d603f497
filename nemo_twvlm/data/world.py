"""The demo's world: the colours, objects (shapes and Taiwan landmarks) and positions of the synthetic
images, their names in Chinese and English, and the caption of one image. The generator draws and
paints from these tables, the instruction data asks about them, and the probes score against them.

Standard library only, so the evaluation probes can read the tables without torch.
"""
from __future__ import annotations

from typing import NamedTuple


class Color(NamedTuple):
    key: str
    zh: str
    rgb: tuple[int, int, int]


class Attr(NamedTuple):
    key: str
    en: str
    zh: str


# Saturated and far apart in RGB, and darker than every pastel background.
COLORS = (
    Color("red", "紅色", (215, 25, 32)),
    Color("green", "綠色", (30, 150, 50)),
    Color("blue", "藍色", (30, 70, 210)),
    Color("yellow", "黃色", (235, 200, 0)),
    Color("purple", "紫色", (135, 40, 170)),
    Color("orange", "橙色", (245, 120, 0)),
)
OBJECTS = (
    Attr("circle", "circle", "圓形"),
    Attr("square", "square", "方形"),
    Attr("triangle", "triangle", "三角形"),
    Attr("bubble_tea", "bubble tea", "珍珠奶茶"),
    Attr("temple_roof", "temple roof", "廟宇屋頂"),
    Attr("taipei_101", "Taipei 101", "台北101"),
)
POSITIONS = (
    Attr("top_left", "top left", "左上"),
    Attr("top_right", "top right", "右上"),
    Attr("bottom_left", "bottom left", "左下"),
    Attr("bottom_right", "bottom right", "右下"),
)
COLOR = {c.key: c for c in COLORS}
OBJECT = {o.key: o for o in OBJECTS}
POSITION = {p.key: p for p in POSITIONS}


def sample_attributes(rng) -> dict[str, str]:
    """Colour, object and position keys, each uniform and independent of the others (`rng`: a numpy
    Generator)."""
    return {
        "color": COLORS[rng.integers(len(COLORS))].key,
        "object": OBJECTS[rng.integers(len(OBJECTS))].key,
        "position": POSITIONS[rng.integers(len(POSITIONS))].key,
    }


def attributes(meta: dict) -> tuple[Color, Attr, Attr]:
    """The (colour, object, position) entries a sample's metadata names by key."""
    return COLOR[meta["color"]], OBJECT[meta["object"]], POSITION[meta["position"]]


# How an interleaved document opens, and joins one image to the next.
INTRO_PHRASES = ("今天在台灣拍到：", "分享幾張照片：", "來看看這些圖片。", "這是我的旅行紀錄：", "週末出去走走，看到：")
LINK_PHRASES = ("接著，", "然後是這張：", "還有這張。", "下一張：", "另外，")


def caption(meta: dict, lang: str = "zh") -> str:
    color, obj, pos = attributes(meta)
    if lang == "zh":
        return f"{color.zh}的{obj.zh}在{pos.zh}。"
    article = "An" if color.key[0] in "aeiou" else "A"
    return f"{article} {color.key} {obj.en} at the {pos.en}."
