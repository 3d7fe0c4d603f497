"""report.html: self-contained (images are data: URIs, no network), with every section; and it
opens in headless Chromium showing its images."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from curation_inputs import assert_contract, curate, draw, encode, good_pairs, write_tar
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, langid_model):
    rng = np.random.default_rng(4)
    src = tmp_path_factory.mktemp("report_in")
    samples = good_pairs(rng, 10)
    samples += [("zero", {"png": b"", "txt": "空的圖片檔案".encode()}),
                ("copy", dict(samples[0][1])),
                ("tiny", {"png": encode(draw(rng, (12, 12))), "txt": samples[1][1]["txt"] + b"!"}),
                ("hangul", {"png": encode(draw(rng)), "txt": "오늘 날씨가 정말 좋아서 공원에 갔어요.".encode()})]
    write_tar(src / "0.tar", samples)
    out = tmp_path_factory.mktemp("report_out")
    curate(src, out, "report.grid=8")
    assert_contract(out)
    return out / "report.html"


def test_report_sections_and_offline_images(report):
    page = report.read_text(encoding="utf-8")
    for heading in ("Stages", "Reasons", "Distributions", "Kept samples", "Rejected samples"):
        assert f">{heading}<" in page
    for title in ("Image size", "Aspect ratio", "Text length", "Tokens per sample", "Language", "Script"):
        assert title in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 8 + 3  # a full kept grid; rejected: copy, tiny, hangul have images, zero has none
    assert all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    for reason in ("empty_image", "exact_duplicate", "image_too_small", "lang_not_allowed"):
        assert reason in page


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium is not installed (CI: apt-get install -y chromium fonts-noto-cjk)")
def test_report_opens_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    run = lambda *extra: subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",  # noqa: E731
                                         *extra, url], capture_output=True, timeout=120, text=True)
    dom = run("--dump-dom").stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load handler never ran"
    assert loaded.group(1) == loaded.group(2) == str(len(re.findall(r"<img ", dom)))
    assert int(loaded.group(1)) > 0

    shot = tmp_path / "report.png"
    run(f"--screenshot={shot}", "--window-size=1200,2600")
    img = Image.open(shot).convert("RGB")
    pixels = np.asarray(img).reshape(-1, 3)
    assert (pixels.min(axis=1) < 240).mean() > 0.05, "screenshot is (nearly) blank"
    assert len(np.unique(pixels[::7], axis=0)) > 200, "screenshot shows no images"


def test_rejected_examples_stream_the_index_and_keep_only_the_chosen_members(tmp_path):
    """60,000 index lines (~14 MB) and a 10 MB quarantine tar: the examples, round-robin over reasons, come
    with their own member's text and image, in < 4 MiB of Python allocations."""
    import json
    import os
    import tracemalloc

    from nemo_twvlm.curation.report import rejected_examples
    from nemo_twvlm.curation.storage import tar_bytes

    image = encode(draw(np.random.default_rng(0), (40, 40)), "JPEG")
    members = [(f"{i:07d}", {"jpg": image if i % 50 == 7 else os.urandom(50_000), "txt": f"第{i}張".encode(),
                             "reason.json": b"{}"}) for i in range(200)]
    (tmp_path / "quarantine" / "src").mkdir(parents=True)
    (tmp_path / "quarantine" / "src" / "dedup.tar").write_bytes(tar_bytes(members))
    reasons = ["exact_duplicate"] * 5 + ["near_duplicate_image"] * 2 + ["bad_aspect_ratio"]
    with open(tmp_path / "quarantine" / "index.jsonl", "w", encoding="utf-8") as index:
        for i in range(60_000):
            reason = reasons[i % len(reasons)]
            member = i % 200 if reason == "exact_duplicate" else 7 if reason == "near_duplicate_image" else None
            index.write(json.dumps({"source": "src", "key": f"k{i}", "index": i, "stage": "dedup", "reason": reason,
                                    "disposition": "dropped", "detail": "x" * 150,
                                    "tar": None if member is None else "quarantine/src/dedup.tar",
                                    "member": None if member is None else f"{member:07d}"}) + "\n")
    tracemalloc.start()
    try:
        got = rejected_examples(tmp_path, 6, 32, 10**7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB"
    # Round-robin in reason order: bad_aspect_ratio (no tar), exact_duplicate, near_duplicate_image, ...
    assert [e["key"] for e in got] == ["src/k7", "src/k0", "src/k5", "src/k15", "src/k1", "src/k6"]
    assert [e["text"] for e in got] == ["", "第0張", "第7張", "", "第1張", "第7張"]
    assert [e["img"] is not None for e in got] == [False, False, True, False, False, True]
