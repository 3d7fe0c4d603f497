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
