from __future__ import annotations

from pathlib import Path

import pytest
from curation_inputs import LANGID_MODEL


@pytest.fixture(scope="session")
def langid_model() -> Path:
    if not LANGID_MODEL.is_file():
        pytest.skip(f"{LANGID_MODEL} is missing: run scripts/fetch_langid_model.sh (setup does)")
    return LANGID_MODEL
