"""The synthetic set: deterministic, balanced, correctly captioned, visibly drawn, and loadable by Energon."""
from __future__ import annotations

import itertools
import json
import re
from collections import Counter

import numpy as np
import pytest
from megatron.energon import (
    CaptioningSample,
    InterleavedSample,
    WorkerConfig,
    get_loader,
    get_train_dataset,
    get_val_dataset,
)

from nemo_twvlm.data import synthetic
from nemo_twvlm.data.synthetic import (
    make_pair,
    probes,
    render_image,
    write_dataset,
)
from nemo_twvlm.data.world import COLORS, OBJECTS, POSITIONS, caption, sample_attributes

SMALL = dict(train_pairs=40, val_pairs=10, interleaved_docs=12, samples_per_shard=16, instructions=20)
ZH = {a.key: a.zh for a in COLORS + OBJECTS + POSITIONS}
RGB = {c.key: c.rgb for c in COLORS}
ALL_METAS = [{"color": c.key, "object": o.key, "position": p.key}
             for c, o, p in itertools.product(COLORS, OBJECTS, POSITIONS)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, write_dataset(out, **SMALL)


def _tars(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.glob("*/*.tar"))}


def test_same_seed_same_bytes(dataset, tmp_path):
    out, _ = dataset
    write_dataset(tmp_path / "again", **SMALL)
    assert _tars(out) == _tars(tmp_path / "again")
    write_dataset(tmp_path / "other", **SMALL, seed=1)
    assert _tars(out).keys() == _tars(tmp_path / "other").keys()
    assert _tars(out) != _tars(tmp_path / "other")


def test_attributes_uniform_and_independent():
    rng = np.random.default_rng(0)
    draws = [sample_attributes(rng) for _ in range(12000)]
    for name, table in (("color", COLORS), ("object", OBJECTS), ("position", POSITIONS)):
        counts = Counter(d[name] for d in draws)
        expected = len(draws) / len(table)
        assert set(counts) == {a.key for a in table}
        assert all(abs(n - expected) < 0.1 * expected for n in counts.values()), counts
    # Every colour x object x position cell is populated near its expected share.
    joint = Counter((d["color"], d["object"], d["position"]) for d in draws)
    expected = len(draws) / len(ALL_METAS)
    assert len(joint) == len(ALL_METAS)
    assert all(abs(n - expected) < 0.45 * expected for n in joint.values()), joint


def test_language_mix():
    rng = np.random.default_rng(0)
    langs = Counter(make_pair(rng, size=16)[0]["lang"] for _ in range(800))
    assert 0.70 < langs["zh"] / 800 < 0.80


def test_caption_format():
    meta = {"color": "red", "object": "bubble_tea", "position": "top_left"}
    assert caption(meta, "zh") == "紅色的珍珠奶茶在左上。"
    assert caption(meta, "en") == "A red bubble tea at the top left."
    assert caption({**meta, "color": "orange"}, "en").startswith("An orange ")
    zh = re.compile(rf"^({'|'.join(c.zh for c in COLORS)})的({'|'.join(o.zh for o in OBJECTS)})"
                    rf"在({'|'.join(p.zh for p in POSITIONS)})。$")
    assert all(zh.match(caption(m, "zh")) for m in ALL_METAS)


def test_probes_point_at_the_truth():
    for meta in ALL_METAS:
        color, obj, position = probes(meta)
        assert [p["question"] for p in (color, obj, position)] == ["color", "object", "position"]
        assert color["prefix"] == "" and color["options"][color["answer"]] == ZH[meta["color"]]
        assert obj["options"][obj["answer"]] == ZH[meta["object"]]
        # The position probe's prefix plus its answer is the caption itself.
        assert position["prefix"] + position["options"][position["answer"]] + "。" == caption(meta, "zh")
        assert obj["prefix"] == color["options"][color["answer"]] + "的"


def test_object_is_drawn_in_its_quadrant():
    rng = np.random.default_rng(0)
    corners = {"top_left": (0, 0), "top_right": (0, 1), "bottom_left": (1, 0), "bottom_right": (1, 1)}
    for meta in ALL_METAS:
        pixels = np.asarray(render_image(meta, rng, 64), dtype=np.float64)
        target = np.array(RGB[meta["color"]], dtype=np.float64)
        distance = {name: np.linalg.norm(pixels[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32].mean((0, 1)) - target)
                    for name, (r, c) in corners.items()}
        assert min(distance, key=distance.get) == meta["position"], (meta, distance)


def test_shard_metadata(dataset):
    out, stats = dataset
    assert json.loads((out / "stats.json").read_text())["pairs"] == SMALL["train_pairs"]
    assert stats["interleaved_images"] >= 2 * SMALL["interleaved_docs"]
    assert len(list((out / "pairs").glob("*.tar"))) == 3  # 40 samples at 16 per shard


def test_energon_train_blend(dataset):
    out, _ = dataset
    worker_config = WorkerConfig(rank=0, world_size=1, num_workers=0)
    train = get_train_dataset(out / "blend.yaml", worker_config=worker_config, batch_size=None,
                              shuffle_buffer_size=None, max_samples_per_sequence=None)
    seen = Counter()
    for sample in itertools.islice(get_loader(train), 60):
        seen[type(sample)] += 1
        if isinstance(sample, CaptioningSample):
            assert tuple(sample.image.shape) == (3, 64, 64)
            assert sample.caption.endswith(("。", "."))
        else:
            assert isinstance(sample, InterleavedSample)
            images = [s for s in sample.sequence if not isinstance(s, str)]
            texts = [s for s in sample.sequence if isinstance(s, str)]
            assert 2 <= len(images) <= 3 and len(texts) == len(images) + 1
            assert all(tuple(im.shape) == (3, 64, 64) for im in images)
            assert isinstance(sample.sequence[0], str) and not isinstance(sample.sequence[1], str)
    assert seen[CaptioningSample] > 0 and seen[InterleavedSample] > 0, seen


def test_energon_val_split(dataset):
    out, _ = dataset
    val = get_val_dataset(out / "blend.yaml", worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0),
                          batch_size=None)
    samples = list(get_loader(val))
    assert len(samples) == SMALL["val_pairs"]
    assert all(isinstance(s, CaptioningSample) and s.caption.endswith("。") for s in samples)


def test_cli(tmp_path):
    synthetic.main(["--out", str(tmp_path), "--train-pairs", "3", "--val-pairs", "2",
                    "--interleaved-docs", "2", "--image-size", "32", "--seed", "5"])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (stats["pairs"], stats["pairs_val"], stats["interleaved_docs"], stats["image_size"]) == (3, 2, 2, 32)
    assert (tmp_path / "interleaved" / ".nv-meta" / "sample_loader.py").is_file()


def test_instructions_are_written_as_llava_json_for_curation(dataset):
    """Raw, as LLaVA publishes them; the `conversations` curation kind makes the SFT shards."""
    out, stats = dataset
    rows = json.loads((out / "instructions_llava" / "instructions.json").read_text(encoding="utf-8"))
    assert len(rows) == stats["instructions"]
    for row in rows:
        assert (out / "instructions_llava" / row["image"]).is_file()
        turns = row["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n")
    assert not (out / synthetic.CURATED_INSTRUCTIONS).exists()  # no shards written here
    assert f"path: {synthetic.CURATED_INSTRUCTIONS}/shards" in (out / "sft_blend.yaml").read_text()
