"""Every bad input of the issue's acceptance list is counted under a named reason, never a crash,
and stats.json's invariant holds in every run."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from curation_inputs import (
    assert_contract,
    curate,
    draw,
    encode,
    good_pairs,
    png_bomb,
    rejections,
    write_tar,
    zh_caption,
)

# key -> (reason, disposition) each bad sample must be counted under
EXPECTED = {
    "bad_corrupt_jpeg": ("corrupt_image", "quarantined"),
    "bad_truncated_jpeg": ("truncated_image", "quarantined"),
    "bad_truncated_png": ("truncated_image", "quarantined"),
    "bad_zero_byte_image": ("empty_image", "quarantined"),
    "bad_zero_byte_caption": ("empty_caption", "quarantined"),
    "bad_blank_caption": ("empty_caption", "quarantined"),
    "bad_bomb": ("decompression_bomb", "quarantined"),
    "bad_not_utf8": ("caption_not_utf8", "quarantined"),
    "bad_no_caption": ("missing_caption", "quarantined"),
    "bad_no_image": ("missing_image", "quarantined"),
    "bad_tiny_image": ("image_too_small", "dropped"),
    "bad_panorama": ("bad_aspect_ratio", "dropped"),
    "bad_only_url": ("empty_after_cleaning", "dropped"),
    "bad_korean": ("lang_not_allowed", "dropped"),
    "bad_laughter": ("char_repetition", "dropped"),
    "dup_exact": ("exact_duplicate", "dropped"),
    "dup_near_image": ("near_duplicate_image", "dropped"),
    "dup_near_caption": ("near_duplicate_caption", "dropped"),
}
TRUNCATED_TAR_KEYS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("bad_in")
    good = good_pairs(rng, 6)
    jpeg = encode(draw(rng), "JPEG", quality=90)
    png = encode(draw(rng))
    caption = lambda: zh_caption(rng).encode()  # noqa: E731
    original_img = draw(rng, (96, 96))
    original_caption = zh_caption(rng)
    bad = [
        ("bad_corrupt_jpeg", {"jpg": b"\xff\xd8\xff\xe0" + rng.bytes(600), "txt": caption()}),
        ("bad_truncated_jpeg", {"jpg": jpeg[: len(jpeg) // 2], "txt": caption()}),
        ("bad_truncated_png", {"png": png[: len(png) * 2 // 3], "txt": caption()}),
        ("bad_zero_byte_image", {"png": b"", "txt": caption()}),
        ("bad_zero_byte_caption", {"png": encode(draw(rng)), "txt": b""}),
        ("bad_blank_caption", {"png": encode(draw(rng)), "txt": b" \n\t "}),
        ("bad_bomb", {"png": png_bomb(), "txt": caption()}),
        ("bad_not_utf8", {"png": encode(draw(rng)), "txt": b"\xff\xfe \xe7\xb4\x85\xfa caption"}),
        ("bad_no_caption", {"png": encode(draw(rng))}),
        ("bad_no_image", {"txt": caption()}),
        ("bad_tiny_image", {"png": encode(draw(rng, (16, 16))), "txt": caption()}),
        ("bad_panorama", {"png": encode(draw(rng, (400, 64))), "txt": caption()}),
        ("bad_only_url", {"png": encode(draw(rng)), "txt": b"<a href='x'>https://example.com/a.jpg</a>"}),
        ("bad_korean", {"png": encode(draw(rng)), "txt": "오늘 날씨가 정말 좋아서 공원에 산책을 갔어요.".encode()}),
        ("bad_laughter", {"png": encode(draw(rng)), "txt": "哈哈哈哈哈哈哈哈哈哈哈哈哈哈".encode()}),
        ("orig", {"png": encode(original_img), "txt": original_caption.encode()}),
        # The same pixels (lossless re-encode) and the same caption up to spacing and punctuation.
        ("dup_exact", {"png": encode(original_img, compress_level=1), "txt": f" {original_caption}!! ".encode()}),
        # The same picture, downscaled and JPEG-compressed, with a different caption.
        ("dup_near_image", {"jpg": encode(original_img.resize((80, 80)), "JPEG", quality=70), "txt": caption()}),
    ]
    text = zh_caption(rng)
    bad += [("cap_orig", {"png": encode(draw(rng)), "txt": text.encode()}),
            ("dup_near_caption", {"png": encode(draw(rng)), "txt": (text[:-1] + "喔。").encode()})]
    # Fine samples whose text needs work: HTML entities and URLs cleaned, Simplified converted.
    fixable = [
        ("fix_html", {"png": encode(draw(rng)), "txt": f"&lt;b&gt;{zh_caption(rng)}&lt;/b&gt; https://t.co/x".encode()}),
        ("fix_simplified", {"png": encode(draw(rng)), "txt": "台湾的软件和鼠标都很好用，我们今天去买。".encode()}),
        ("fix_english", {"png": encode(draw(rng)), "txt": b"Night markets sell fried chicken and stinky tofu."}),
        ("fix_json_caption", {"png": encode(draw(rng)), "json": json.dumps({"caption": zh_caption(rng)}).encode()}),
    ]
    write_tar(src / "a" / "00000.tar", good[:3] + bad + fixable)
    for folder, prefix, inside in (("b", "trunc", True), ("e", "cut", False)):
        full = write_tar(src / folder / "00000.tar", good_pairs(rng, TRUNCATED_TAR_KEYS, prefix))
        data = full.read_bytes()
        with tarfile.open(full) as tar:
            png = tar.getmember(f"{prefix}0003.png")  # cut inside its data, or just before its header
        full.write_bytes(data[: png.offset_data + png.size // 2 if inside else png.offset])
    (src / "c").mkdir()
    (src / "c" / "not_a_tar.tar").write_bytes(b"this is not a tar file" * 40)
    write_tar(src / "d" / "00000.tar", good[3:])
    out = tmp_path_factory.mktemp("bad_out")
    return curate(src, out, "shards.samples_per_shard=4"), out


def test_stats_contract_and_invariant(run):
    stats, out = run
    assert assert_contract(out) == stats
    assert stats["kept"] >= 6 + 1 + 2 + 4  # good, orig, cap_orig, the fixable ones


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_bad_sample_counted_under_its_reason(run, key):
    stats, out = run
    reason, disposition = EXPECTED[key]
    entry = rejections(out)[key]
    assert (entry["reason"], entry["disposition"]) == (reason, disposition), entry
    assert stats[disposition][reason] >= 1


@pytest.mark.parametrize("source, quarantined_key, kept", [("b__00000", "trunc0003", 3), ("e__00000", "cut0002", 2)])
def test_truncated_tar_keeps_complete_samples(run, source, quarantined_key, kept):
    """Cut inside a member: the samples before it are kept, the one it belongs to is quarantined
    as truncated_tar. Cut exactly between members: the last sample read may be missing parts, so
    it is the one quarantined. Nothing after the cut can be known."""
    _, out = run
    entries = [e for e in rejections(out).values() if e["source"] == source]
    assert [(e["key"], e["reason"]) for e in entries] == [(quarantined_key, "truncated_tar")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(s["samples"] for s in manifest["shards"] if s["name"].startswith(f"{source}-")) == kept


def test_unreadable_tar(run):
    stats, _ = run
    assert stats["quarantined"]["unreadable_tar"] == 1


def test_quarantine_keeps_payload_and_reason(run):
    _, out = run
    entry = rejections(out)["bad_not_utf8"]
    with tarfile.open(out / entry["tar"]) as tar:
        names = tar.getnames()
        reason = json.loads(tar.extractfile(f"{entry['member']}.reason.json").read())
        assert tar.extractfile(f"{entry['member']}.txt").read().startswith(b"\xff\xfe")
    assert f"{entry['member']}.png" in names
    assert reason["reason"] == "caption_not_utf8" and reason["key"] == "bad_not_utf8"


def _kept(out) -> dict[str, dict]:
    kept = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    txt = tar.extractfile(member.name[:-4] + "txt").read().decode()
                    kept[meta["key"]] = meta | {"txt": txt}
    return kept


def test_text_is_cleaned_and_simplified_converted(run):
    _, out = run
    kept = _kept(out)
    assert "&lt;" not in kept["fix_html"]["txt"] and "http" not in kept["fix_html"]["txt"]
    assert kept["fix_simplified"]["txt"] == "臺灣的軟體和滑鼠都很好用，我們今天去買。"
    assert kept["fix_simplified"]["script"] == "zh-Hans" and kept["fix_simplified"]["converted"] == "s2twp"
    assert kept["fix_english"]["lang"] == "en"
    assert kept["fix_json_caption"]["lang"] == "zh"
    assert all(meta["script"] in ("zh-Hant", "ambiguous") for key, meta in kept.items() if key.startswith("good"))


def test_simplified_dropped_when_configured(tmp_path, langid_model):
    rng = np.random.default_rng(1)
    write_tar(tmp_path / "in" / "0.tar", good_pairs(rng, 2) + [
        ("hans", {"png": encode(draw(rng)), "txt": "红色的圆形在左上，这是我们的照片。".encode()}),
        ("mixed", {"png": encode(draw(rng)), "txt": "这个東西很好吃，我们喜歡台北。".encode()})])
    stats = curate(tmp_path / "in", tmp_path / "out", "script.simplified=drop")
    assert stats["dropped"] == {"zh_hans": 1, "zh_mixed_script": 1}
    assert stats["kept"] == 2
    assert_contract(tmp_path / "out")
