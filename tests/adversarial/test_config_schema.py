"""The curation config is typed: a value of the wrong type or out of range is refused when the
config is composed, naming the key, before any input is read or any output written."""
from __future__ import annotations

import re

import numpy as np
import pytest
from curation_inputs import curate, good_pairs, write_tar


@pytest.mark.parametrize("override, message", [
    ("quality.max_chars=abc", "quality.max_chars: Value 'abc' of type 'str' could not be converted to Integer"),
    ("image.min_side=-5", "image.min_side=-5 is out of range; expected >= 1"),
    ("resize.quality=500", "resize.quality=500 is out of range; expected in [1, 100]"),
    ("download.timeout_s=soon", "download.timeout_s: Value 'soon'"),
    ("text.strip_html=maybe", "text.strip_html: Value 'maybe' is not a valid bool"),
    ("lang.allowed=zh", "lang.allowed: Invalid value assigned: a single value is not a ListConfig, list or tuple"),
    ("dedup.caption_jaccard=1.5", "dedup.caption_jaccard=1.5 is out of range; expected in [0, 1]"),
    ("tokens.budget=-1", "tokens.budget=-1 is out of range; expected >= 0"),
    ("quality.min_chars=50 quality.max_chars=10", "quality.min_chars=50 is above quality.max_chars=10"),
])
def test_bad_value_is_refused_before_any_work(tmp_path, override, message):
    write_tar(tmp_path / "in" / "0.tar", good_pairs(np.random.default_rng(0), 2))
    with pytest.raises(ValueError, match=re.escape(message)):
        curate(tmp_path / "in", tmp_path / "out", *override.split())
    assert not (tmp_path / "out").exists()


def test_every_key_comes_from_the_yaml(tmp_path):
    """A config missing a key is refused naming it: the schema has no fallback values of its own."""
    from curation_inputs import yaml_config

    from nemo_twvlm.curation.config import CurationConfig

    values = yaml_config().to_dict()
    del values["quality"]["max_chars"]
    with pytest.raises(ValueError, match=re.escape("quality.max_chars: Structured config of type `QualityConfig` "
                                                   "has missing mandatory value: max_chars")):
        CurationConfig.from_dict(values, check=False)
