"""Bad samples and shards are skipped with a logged reason and a counter, never a crash.

How Energon 7.4.1 reports each failure (all reach `count_and_log_skip`, our `global_error_handler`):
  - an undecodable member (corrupt or truncated PNG, non-UTF-8 txt): webdataset's `DecodingError`, raised in
    the dataset's sample-loading MapDataset; the handler gets Energon's `RawSampleData`, not the sample dict;
  - a missing member named in `field_map`: Energon's `FieldAccessError`, same place, same `RawSampleData`;
  - an empty caption: our `BadSample("empty_caption")`, raised in `encode_sample` on the `CaptioningSample`.
A shard tarfile cannot read is met earlier, by `energon_prep.prepare`, which skips it with a logged reason.
"""
from __future__ import annotations

import io
import itertools
import logging
import re
from collections import Counter

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from nemo_twvlm.data import energon_prep
from nemo_twvlm.data.loader import train_loader, val_loader
from nemo_twvlm.data.task_encoder import SKIPPED, LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS

FIELD_MAP = {"image": "png", "caption": "txt"}  # as synthetic.py prepares its captioning folders
LOGGER = "nemo_twvlm.data.task_encoder"
CAPTION = "紅色的圓形在左上。".encode()

GOOD = ["good0", "good1", "good2", "good3", "good4", "good5", "good_rgba", "good_gray"]
BAD = {  # key -> the reason SKIPPED counts it under
    "bad_corrupt_png": "DecodingError",
    "bad_truncated_png": "DecodingError",
    "bad_caption_not_utf8": "DecodingError",
    "bad_empty_caption": "empty_caption",
    "bad_no_txt": "FieldAccessError",
    "bad_no_png": "FieldAccessError",
}
SHARD_OF = {**{k: "shard-000000.tar" for k in GOOD[:4] + list(BAD)[:3]},
            **{k: "shard-000001.tar" for k in GOOD[4:] + list(BAD)[3:]}}


def _png(rng: np.random.Generator, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def _samples(rng: np.random.Generator) -> dict[str, dict]:
    good_png = _png(rng)
    members = {key: {"png": _png(rng), "txt": CAPTION} for key in GOOD[:6]}
    members["good_rgba"] = {"png": _png(rng, "RGBA"), "txt": CAPTION}
    members["good_gray"] = {"png": _png(rng, "L"), "txt": CAPTION}
    members["bad_corrupt_png"] = {"png": rng.bytes(400), "txt": CAPTION}
    members["bad_truncated_png"] = {"png": good_png[: len(good_png) // 2], "txt": CAPTION}
    members["bad_caption_not_utf8"] = {"png": _png(rng), "txt": b"\xff\xfe caption \xfa"}
    members["bad_empty_caption"] = {"png": _png(rng), "txt": b" \n "}
    members["bad_no_txt"] = {"png": _png(rng)}
    members["bad_no_png"] = {"txt": CAPTION}
    return members


def _write(folder, split) -> None:
    folder.mkdir()
    members = _samples(np.random.default_rng(0))
    for shard in sorted(set(SHARD_OF.values())):
        with wds.TarWriter(str(folder / shard), mtime=0) as sink:
            for key in GOOD + list(BAD):
                if SHARD_OF[key] == shard:
                    sink.write({"__key__": key, **members[key]})
    counts = energon_prep.prepare(folder, sample_type="CaptioningSample", field_map=FIELD_MAP, split=split)
    assert sum(counts.values()) == len(GOOD) + len(BAD)


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    """The same 14 samples (8 good, 6 bad) in two shards, prepared once as a train and once as a val split."""
    root = tmp_path_factory.mktemp("bad_input")
    _write(root / "train", (1, 0, 0))
    _write(root / "val", (0, 1, 0))
    return root


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return LlavaTaskEncoder(tokenizer, PRESETS["debug"], 128)


def _iterate_train(path, encoder, caplog, epochs: int = 3) -> list[str]:
    """Yielded sample keys once `epochs` epochs' worth of good samples have come out."""
    SKIPPED.clear()
    keys: list[str] = []
    loader = train_loader(str(path), encoder, micro_batch_size=2, packing=True, packing_buffer_size=8)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for batch in itertools.islice(loader, 200):
            keys += [key for row in batch.keys for key in row]
            if len(keys) >= epochs * len(GOOD):
                break
    return keys


def _skip_records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.getMessage().startswith("skipped")]


def test_train_loader_skips_bad_samples_and_counts_them_by_reason(bad_dataset, encoder, caplog):
    keys = _iterate_train(bad_dataset / "train", encoder, caplog)  # no exception over 3 epochs

    assert set(keys) == set(GOOD), "every yielded key is a good sample, and every good sample is yielded"
    per_reason = Counter(BAD.values())
    assert set(SKIPPED) == set(per_reason), dict(SKIPPED)
    assert all(SKIPPED[reason] >= 2 * n for reason, n in per_reason.items()), "over two epochs' worth"
    # Loading failures happen before the 256-sample shuffle buffer, so they run many epochs ahead of what
    # comes out; still, every bad sample read is counted once: both loading reasons advance together.
    load_epochs = [SKIPPED[reason] / per_reason[reason] for reason in ("DecodingError", "FieldAccessError")]
    assert abs(load_epochs[0] - load_epochs[1]) <= 1, dict(SKIPPED)

    records = _skip_records(caplog)
    assert len(records) == sum(SKIPPED.values()), "each counted skip is logged once"
    assert all(re.match(r"skipped sample \S+ \((\w+)\)", m)[1] in SKIPPED for m in records)
    # Our own BadSample is logged with its key, shard and reason.
    assert any(m.startswith("skipped sample bad_empty_caption (empty_caption) from shard-000001.tar")
               for m in records), records[:5]


def test_val_loader_counts_each_bad_sample_exactly_once(bad_dataset, encoder, caplog):
    SKIPPED.clear()
    loader = val_loader(str(bad_dataset / "val"), encoder, micro_batch_size=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        keys = [key for batch in loader for row in batch.keys for key in row]
    assert sorted(keys) == sorted(GOOD)
    assert SKIPPED == Counter(BAD.values())
    assert len(_skip_records(caplog)) == len(BAD)


def test_skip_log_names_every_bad_sample_its_shard_and_reason(bad_dataset, encoder, caplog):
    _iterate_train(bad_dataset / "train", encoder, caplog, epochs=2)
    records = _skip_records(caplog)
    missing = [key for key, reason in BAD.items()
               if not any(m.startswith(f"skipped sample {key} ({reason}) from {SHARD_OF[key]}") for m in records)]
    assert not missing, f"no log line names {missing}; e.g. {records[:3]}"


@pytest.mark.parametrize("damage", ["not_a_tar", "cut_off_mid_member"])
def test_unreadable_shard_is_skipped_when_preparing(tmp_path, encoder, damage):
    rng = np.random.default_rng(2)
    for shard in ("shard-000000.tar", "shard-000001.tar"):
        with wds.TarWriter(str(tmp_path / shard), mtime=0) as sink:
            for i in range(4):
                sink.write({"__key__": f"{shard[6:12]}_{i}", "png": _png(rng), "txt": CAPTION})
    bad = tmp_path / "shard-000001.tar"
    bad.write_bytes(rng.bytes(4096) if damage == "not_a_tar" else bad.read_bytes()[: bad.stat().st_size * 6 // 10])

    counts = energon_prep.prepare(tmp_path, sample_type="CaptioningSample", field_map=FIELD_MAP, split=(0, 1, 0))
    assert counts == {"shard-000000.tar": 4}
    keys = [k for batch in val_loader(str(tmp_path), encoder, micro_batch_size=2) for row in batch.keys for k in row]
    assert keys == [f"000000_{i}" for i in range(4)]
