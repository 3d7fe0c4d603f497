"""A dataset where every sample is unusable ends in one error naming the folder and counting the skip
reasons, for training (where Energon would raise FatalSampleError after 100 failures in a row) and for
validation (where a pass would silently yield nothing)."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import webdataset as wds

from nemo_twvlm.data import energon_prep
from nemo_twvlm.data.loader import NoUsableSamples, train_loader, val_loader
from nemo_twvlm.data.task_encoder import LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS
from tests.data.test_bad_input import BAD, FIELD_MAP, _samples


@pytest.fixture(scope="module")
def all_bad(tmp_path_factory):
    """The six bad samples of tests/data/test_bad_input.py and nothing else, as a val split; for training,
    with more empty captions (Energon gives up after 100 failed encodings in a row: fewer epochs to get there)."""
    members = _samples(np.random.default_rng(0))
    more = {f"bad_empty_caption_{i}": members["bad_empty_caption"] for i in range(9)}
    members.update(more)
    root = tmp_path_factory.mktemp("all_bad")
    for split, ratio, keys in (("train", (1, 0, 0), [*BAD, *more]), ("val", (0, 1, 0), list(BAD))):
        (root / split).mkdir()
        with wds.TarWriter(str(root / split / "shard-000000.tar"), mtime=0) as sink:
            for key in keys:
                sink.write({"__key__": key, **members[key]})
        energon_prep.prepare(root / split, sample_type="CaptioningSample", field_map=FIELD_MAP, split=ratio)
    return root


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return LlavaTaskEncoder(tokenizer, PRESETS["debug"], 128)


def _reasons(message: str) -> dict[str, int]:
    return {reason: int(n) for reason, n in re.findall(r"(\w+) (\d+)", message.split("skipped: ", 1)[1])}


def test_validation_with_no_usable_sample_names_the_folder_and_counts_each_reason(all_bad, encoder):
    with pytest.raises(NoUsableSamples) as error:
        list(val_loader(str(all_bad / "val"), encoder, micro_batch_size=2))
    assert str(error.value).startswith(f"no usable samples in {all_bad / 'val'} (6 skipped: ")
    assert _reasons(str(error.value)) == {"DecodingError": 3, "FieldAccessError": 2, "empty_caption": 1}


def test_training_with_no_usable_sample_is_no_fatal_sample_error(all_bad, encoder):
    loader = train_loader(str(all_bad / "train"), encoder, micro_batch_size=2, packing=False, packing_buffer_size=8)
    with pytest.raises(NoUsableSamples, match=rf"^no usable samples in {all_bad / 'train'} \(\d+ skipped: ") as error:
        list(itertools.islice(loader, 1))
    assert set(_reasons(str(error.value))) <= set(BAD.values()) and "empty_caption" in str(error.value)
    assert callable(loader.save_state_rank)  # still Energon's savable loader to megatron
