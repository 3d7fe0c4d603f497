"""A small, learnable, Taiwan-flavoured synthetic image/caption set, drawn with PIL.

Each image holds one object of one colour in one quadrant; the three attributes are drawn
independently and uniformly, so a model can only caption it right by looking. Everything is
seeded: the same arguments give byte-identical shards.

    python -m nemo_twvlm.data.synthetic --out /tmp/twvlm_data
    # the SFT shards sft_blend.yaml names: the instructions through the `conversations` curation kind
    python -m nemo_twvlm.curation --config-name conversations_zh_tw executor.name=in_process \
        input_dir=/tmp/twvlm_data/instructions_llava output_dir=/tmp/twvlm_data/instructions
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import webdataset as wds
from PIL import Image, ImageDraw
from tqdm import tqdm

from nemo_twvlm.data.energon_prep import prepare
from nemo_twvlm.data.synthetic_instructions import make_conversation
from nemo_twvlm.data.synthetic_retention import write_retention_set
from nemo_twvlm.data.world import (
    COLOR, COLORS, INTRO_PHRASES, LINK_PHRASES, OBJECT, OBJECTS, POSITION, POSITIONS, caption, sample_attributes,
)


ZH_PROBABILITY = 0.75
# Where write_dataset's sft_blend.yaml expects the curated instructions: the output_dir of
# `python -m nemo_twvlm.curation --config-name conversations_zh_tw input_dir=<out>/instructions_llava`.
CURATED_INSTRUCTIONS = "instructions"
# The text-retention set (data.synthetic_retention) beside the splits, for data.retention_path.
RETENTION_SET = "retention"
DARK = (45, 30, 25)  # pearls and straw: a detail colour no object colour is near

CHAT_LINES = (
    "這個東西是什麼顏色？", "圖中是什麼東西？", "它在圖片的哪個位置？", "請用一句話描述這張圖。",
    "這張圖片裡有什麼？", "你看到了什麼？", "請描述圖片的內容。", "圖片裡的東西在哪裡？",
    "好的，我來看看。", "這是一張合成的圖片。", "背景是淺色的。", "圖中只有一個東西。",
    "謝謝你！", "不客氣。", "你好，請問可以幫我看這張圖嗎？", "當然可以。",
    "珍珠奶茶是台灣有名的飲料。", "台北101是台北很高的大樓。", "廟宇的屋頂很漂亮。", "我不確定，請再給我一張圖。",
    "What color is this object?", "What is in the image?", "Where is the object?",
    "Describe this image in one sentence.", "Thank you!", "You're welcome.",
    "Sure, let me take a look.", "This is a synthetic image.", "The background is light.",
    "Bubble tea is a famous drink from Taiwan.", "Taipei 101 is a tall building in Taipei.",
    "The roof of the temple is beautiful.",
)

# Everyday Taiwan text so the tokenizer also learns common Traditional Chinese beyond the captions.
TAIWAN_LINES = (
    "台北的捷運很方便，早上通勤的人很多。", "夜市裡有雞排、蚵仔煎、臭豆腐和滷肉飯。",
    "我最喜歡的早餐是蛋餅配豆漿。", "下午想喝一杯半糖少冰的珍珠奶茶。",
    "九份老街的芋圓很有名，山上常常起霧。", "日月潭的湖水很藍，可以騎腳踏車環湖。",
    "阿里山的日出非常壯觀，值得早起。", "太魯閣峽谷的大理石岩壁很美。",
    "高雄的駁二藝術特區有許多展覽。", "台南是古都，到處都有老廟和小吃。",
    "花蓮和台東在東部，海岸線很長。", "新竹的風很大，米粉和貢丸很好吃。",
    "颱風來的時候要注意安全，不要出門。", "夏天又熱又潮濕，記得多喝水。",
    "冬天的北部常常下雨，氣溫大約十幾度。", "過年時大家會回家吃團圓飯、發紅包。",
    "中秋節要烤肉、吃月餅和柚子。", "端午節有划龍舟和吃粽子的習俗。",
    "元宵節晚上可以去看燈會和放天燈。", "媽祖遶境是台灣重要的宗教活動。",
    "廟口常有人拜拜、求籤和點光明燈。", "便利商店二十四小時營業，可以繳費、寄包裹。",
    "搭高鐵從台北到左營只要一個半小時。", "騎機車要戴安全帽，停車要停在格子裡。",
    "垃圾要分類，資源回收車會播放音樂。", "這家店的牛肉麵湯頭濃郁，麵條有嚼勁。",
    "小籠包要趁熱吃，小心湯汁很燙。", "鳳梨酥和太陽餅是很受歡迎的伴手禮。",
    "請問最近的捷運站怎麼走？", "往前直走，到紅綠燈右轉就到了。",
    "這個多少錢？可以刷卡嗎？", "可以用悠遊卡付款，也可以付現金。",
    "請幫我結帳，謝謝。", "不好意思，請再說一次。", "沒問題，我馬上幫你處理。",
    "今天天氣晴朗，適合去爬山。", "明天可能會下大雨，記得帶傘。",
    "週末我們去淡水看夕陽吧。", "圖書館安靜又涼爽，很適合讀書。",
    "老師說明天要考數學和英文。", "醫院掛號可以用健保卡。",
    "他是工程師，在科學園區上班。", "我的手機沒電了，可以借充電器嗎？",
    "我們一起練習說中文吧。", "這張照片拍得很清楚，顏色也很鮮豔。",
    "Taipei has a fast and clean metro system.", "Night markets sell fried chicken, oyster omelets and stinky tofu.",
    "Sun Moon Lake is famous for its blue water.", "Many people ride scooters to work every morning.",
    "Typhoons often arrive in late summer.", "Please sort your garbage before the truck comes.",
    "How much does this cost? Can I pay by card?", "Go straight and turn right at the traffic light.",
    "The weather is sunny today, perfect for hiking.", "Could you please say that again?",
    "I would like a cup of tea with less sugar and less ice.", "The temple festival was crowded and colorful.",
    "Pineapple cakes are a popular souvenir.", "The high speed rail connects the north and the south.",
    "Look at the picture carefully and answer the question.", "Which shape is drawn in the corner?",
)

# The Energon sample loader for the interleaved folder: json holds the ordered segments, where an
# image is {"image": "<part>"} naming a member of the same sample, decoded to a tensor by Energon.
INTERLEAVED_SAMPLE_LOADER = '''\
"""Energon sample loader for nemo_twvlm interleaved docs (written by nemo_twvlm.data.synthetic)."""


def sample_loader(raw: dict) -> dict:
    segments = raw["json"]["segments"]
    return dict(sequence=[raw[s["image"]] if isinstance(s, dict) else s for s in segments])


def part_filter(part: str) -> bool:
    return part == "json" or part.endswith(".png")
'''

def probes(meta: dict) -> list[dict]:
    """Three multiple-choice zh probes; the evaluator scores log p(option | image, prefix)."""
    color, obj = COLOR[meta["color"]], OBJECT[meta["object"]]
    return [
        {"question": "color", "prefix": "", "options": [c.zh for c in COLORS],
         "answer": COLORS.index(color)},
        {"question": "object", "prefix": f"{color.zh}的", "options": [o.zh for o in OBJECTS],
         "answer": OBJECTS.index(obj)},
        {"question": "position", "prefix": f"{color.zh}的{obj.zh}在",
         "options": [p.zh for p in POSITIONS], "answer": POSITIONS.index(POSITION[meta["position"]])},
    ]


# Object painters: (draw, x0, y0, w, h, fill) with the object's bounding box; relative coordinates
# keep the shapes recognisable at any image size.
def _circle(d, x0, y0, w, h, fill):
    d.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)


def _square(d, x0, y0, w, h, fill):
    d.rectangle([x0 + 0.05 * w, y0 + 0.05 * h, x0 + 0.95 * w, y0 + 0.95 * h], fill=fill)


def _triangle(d, x0, y0, w, h, fill):
    d.polygon([(x0 + w / 2, y0), (x0 + w, y0 + h), (x0, y0 + h)], fill=fill)


def _bubble_tea(d, x0, y0, w, h, fill):
    d.line([(x0 + 0.65 * w, y0), (x0 + 0.5 * w, y0 + 0.5 * h)], fill=DARK, width=max(1, round(w / 10)))
    d.rectangle([x0 + 0.12 * w, y0 + 0.2 * h, x0 + 0.88 * w, y0 + 0.3 * h], fill=fill)  # lid
    d.polygon([(x0 + 0.18 * w, y0 + 0.3 * h), (x0 + 0.82 * w, y0 + 0.3 * h),
               (x0 + 0.7 * w, y0 + h), (x0 + 0.3 * w, y0 + h)], fill=fill)
    r = max(1.0, 0.06 * w)
    for px, py in ((0.38, 0.9), (0.5, 0.9), (0.62, 0.9), (0.44, 0.79), (0.56, 0.79)):
        d.ellipse([x0 + px * w - r, y0 + py * h - r, x0 + px * w + r, y0 + py * h + r], fill=DARK)


def _temple_roof(d, x0, y0, w, h, fill):
    # Swallowtail ridge whose ends sweep up, a curved-eave roof, and two pillars.
    d.polygon([(x0, y0), (x0 + 0.2 * w, y0 + 0.22 * h), (x0 + 0.8 * w, y0 + 0.22 * h), (x0 + w, y0),
               (x0 + 0.85 * w, y0 + 0.34 * h), (x0 + 0.15 * w, y0 + 0.34 * h)], fill=fill)
    d.polygon([(x0 + 0.15 * w, y0 + 0.34 * h), (x0 + 0.85 * w, y0 + 0.34 * h), (x0 + w, y0 + 0.55 * h),
               (x0 + 0.88 * w, y0 + 0.66 * h), (x0 + 0.12 * w, y0 + 0.66 * h), (x0, y0 + 0.55 * h)],
              fill=fill)
    for px in (0.2, 0.68):
        d.rectangle([x0 + px * w, y0 + 0.66 * h, x0 + (px + 0.12) * w, y0 + h], fill=fill)


def _taipei_101(d, x0, y0, w, h, fill):
    # Stacked tiers that flare outwards at the top, on a wide base, topped by a spire.
    cx = x0 + w / 2
    d.rectangle([cx - 0.24 * w, y0 + 0.84 * h, cx + 0.24 * w, y0 + h], fill=fill)
    tier = 0.13 * h
    for i in range(4):
        bottom = y0 + 0.84 * h - i * tier
        d.polygon([(cx - 0.13 * w, bottom), (cx + 0.13 * w, bottom),
                   (cx + 0.2 * w, bottom - tier + 1), (cx - 0.2 * w, bottom - tier + 1)], fill=fill)
    d.rectangle([cx - 0.1 * w, y0 + 0.2 * h, cx + 0.1 * w, y0 + 0.32 * h], fill=fill)
    d.line([(cx, y0), (cx, y0 + 0.2 * h)], fill=fill, width=max(1, round(w / 14)))


_PAINTERS = {"circle": _circle, "square": _square, "triangle": _triangle,
             "bubble_tea": _bubble_tea, "temple_roof": _temple_roof, "taipei_101": _taipei_101}


def render_image(meta: dict, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Pastel background, the object filling most of its quadrant, mild per-pixel noise."""
    background = tuple(int(v) for v in rng.integers(195, 256, 3))
    img = Image.new("RGB", (size, size), background)
    half = size // 2
    margin = max(1, size // 20)
    col, row = ("right" in meta["position"]), ("bottom" in meta["position"])
    side = half - 2 * margin
    _PAINTERS[meta["object"]](ImageDraw.Draw(img), col * half + margin, row * half + margin,
                              side, side, COLOR[meta["color"]].rgb)
    noise = rng.integers(-8, 9, (size, size, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)  # noise makes PNG barely compressible: spend no time on it
    return buf.getvalue()


def _lang(rng: np.random.Generator) -> str:
    return "zh" if rng.random() < ZH_PROBABILITY else "en"


def make_pair(rng: np.random.Generator, size: int = 64, lang: str | None = None) -> tuple[dict, bytes]:
    """One captioning sample: (metadata with caption, lang and probes, PNG bytes)."""
    meta = sample_attributes(rng)
    meta["lang"] = lang or _lang(rng)
    meta["caption"] = caption(meta, meta["lang"])
    meta["probes"] = probes(meta)
    return meta, _png(render_image(meta, rng, size))


def make_doc(rng: np.random.Generator, size: int = 64) -> tuple[dict, list[bytes]]:
    """One interleaved document of 2-3 images, each followed by its caption (and maybe a link)."""
    n = int(rng.integers(2, 4))
    segments: list = [INTRO_PHRASES[rng.integers(len(INTRO_PHRASES))]]
    images, pngs = [], []
    for i in range(n):
        meta = sample_attributes(rng)
        meta["lang"] = _lang(rng)
        pngs.append(_png(render_image(meta, rng, size)))
        text = caption(meta, meta["lang"])
        if i < n - 1 and rng.random() < 0.5:
            text += LINK_PHRASES[rng.integers(len(LINK_PHRASES))]
        segments += [{"image": f"{i}.png"}, text]
        images.append(meta)
    return {"segments": segments, "images": images}, pngs


def corpus_lines() -> Iterator[str]:
    """Every text the tokenizer should know: all captions, phrases, chat-style and everyday lines."""
    for c in COLORS:
        for o in OBJECTS:
            for p in POSITIONS:
                meta = {"color": c.key, "object": o.key, "position": p.key}
                yield caption(meta, "zh")
                yield caption(meta, "en")
    yield from INTRO_PHRASES
    yield from LINK_PHRASES
    yield from CHAT_LINES
    yield from TAIWAN_LINES
    # Short answers to the chat questions, one per attribute value.
    for c in COLORS:
        yield f"這個東西是{c.zh}。"
        yield f"It is {c.key}."
    for o in OBJECTS:
        yield f"這是{o.zh}。"
        yield f"This is {o.en}."
    for p in POSITIONS:
        yield f"它在{p.zh}。"
        yield f"It is at the {p.en}."


def _json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _writer(folder: Path, samples_per_shard: int) -> wds.ShardWriter:
    if folder.exists():
        shutil.rmtree(folder)  # stale shards or index from an earlier, larger run would be picked up
    folder.mkdir(parents=True)
    # mtime=0 makes the tar bytes reproducible.
    return wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=samples_per_shard, verbose=0, mtime=0)


def write_dataset(
    out_dir: str | Path,
    *,
    train_pairs: int = 4000,
    val_pairs: int = 300,
    interleaved_docs: int = 800,
    image_size: int = 64,
    seed: int = 0,
    samples_per_shard: int = 1000,
    blend: tuple[float, float] = (0.7, 0.3),
    instructions: int = 2000,
) -> dict:
    """Write pairs/, pairs_val/, interleaved/ (Energon-prepared), instructions_llava/ (LLaVA instruction
    JSON + images/, raw: the `conversations` curation kind turns it into instructions/shards/, which
    sft_blend.yaml names), retention/ (the text-retention set), blend.yaml (pretraining), sft_blend.yaml
    (instruction tuning with some captioning kept) and stats.json."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One seed stream per split, so changing one split's size never changes another's samples.
    splits = ("pairs", "pairs_val", "interleaved", "instructions")
    rngs = {name: np.random.default_rng([seed, i]) for i, name in enumerate(splits)}
    stats = {"seed": seed, "image_size": image_size, "pairs": train_pairs, "pairs_val": val_pairs,
             "interleaved_docs": interleaved_docs, "interleaved_images": 0, "pairs_lang": Counter(),
             "instructions": instructions}
    bar = tqdm(total=train_pairs + val_pairs + interleaved_docs + instructions, desc="drawing", unit="sample")
    for name, count, lang in (("pairs", train_pairs, None), ("pairs_val", val_pairs, "zh")):
        with _writer(out / name, samples_per_shard) as sink:
            for i in range(count):
                meta, png = make_pair(rngs[name], image_size, lang)
                if name == "pairs":
                    stats["pairs_lang"][meta["lang"]] += 1
                sink.write({"__key__": f"{name}{i:07d}", "png": png,
                            "txt": meta["caption"].encode("utf-8"), "json": _json(meta)})
                bar.update()
    with _writer(out / "interleaved", samples_per_shard) as sink:
        for i in range(interleaved_docs):
            doc, pngs = make_doc(rngs["interleaved"], image_size)
            stats["interleaved_images"] += len(pngs)
            sink.write({"__key__": f"doc{i:07d}", "json": _json(doc),
                        **{f"{j}.png": png for j, png in enumerate(pngs)}})
            bar.update()
    write_llava_instructions(out / "instructions_llava", instructions, rngs["instructions"], image_size, bar)
    bar.close()

    pair_fields = {"image": "png", "caption": "txt"}
    prepare(out / "pairs", sample_type="CaptioningSample", field_map=pair_fields)
    prepare(out / "pairs_val", sample_type="CaptioningSample", field_map=pair_fields, split=(0, 1, 0))
    prepare(out / "interleaved", sample_type="InterleavedSample",
            sample_loader_source=INTERLEAVED_SAMPLE_LOADER)
    (out / "blend.yaml").write_text(_blend_yaml(("pairs", blend[0]), ("interleaved", blend[1])), encoding="utf-8")
    (out / "sft_blend.yaml").write_text(_blend_yaml((f"{CURATED_INSTRUCTIONS}/shards", 0.8), ("pairs", 0.2)),
                                        encoding="utf-8")
    write_retention_set(out / RETENTION_SET, seed=seed)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def write_llava_instructions(folder: Path, count: int, rng: np.random.Generator, image_size: int,
                             bar: tqdm | None = None) -> Path:
    """`count` conversations as LLaVA publishes them (llava_v1_5_mix665k.json): one JSON list of
    {id, image, conversations: [{from, value}]}, image paths relative to the list's folder."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(count):
        meta = sample_attributes(rng)
        conversation = make_conversation(meta, rng, turns=int(rng.integers(1, 3)))
        image = f"images/inst{i:07d}.png"
        (folder / image).write_bytes(_png(render_image(meta, rng, image_size)))
        rows.append({"id": f"inst{i:07d}", "image": image, "conversations": conversation})
        if bar is not None:
            bar.update()
    path = folder / "instructions.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def _blend_yaml(*weighted: tuple[str, float]) -> str:
    parts = "".join(f"      - weight: {weight}\n        path: {path}\n" for path, weight in weighted)
    return ("__module__: megatron.energon\n__class__: MetadatasetV2\nsplits:\n  train:\n    blend:\n"
            f"{parts}  val:\n    path: pairs_val\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--train-pairs", type=int, default=4000)
    parser.add_argument("--val-pairs", type=int, default=300)
    parser.add_argument("--interleaved-docs", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    stats = write_dataset(args.out, train_pairs=args.train_pairs, val_pairs=args.val_pairs,
                          interleaved_docs=args.interleaved_docs, seed=args.seed,
                          image_size=args.image_size)
    print(json.dumps(stats, ensure_ascii=False))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":  # energon's indexer starts worker processes: keep imports side-effect free
    main()
