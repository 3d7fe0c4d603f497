"""Adversarial inputs, one file per class of problem. They reuse the curation test inputs and runner."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "curation"))  # curation_inputs

from curation_inputs import LANGID_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def langid_model() -> Path:
    if not LANGID_MODEL.is_file():
        pytest.skip(f"{LANGID_MODEL} is missing: run scripts/fetch_langid_model.sh (setup does)")
    return LANGID_MODEL


@pytest.fixture
def log_warnings():
    """The WARNING lines curation logs during the test, read from a loguru sink of the test's own:
    another test's executor may have re-pointed loguru's stderr sink at a stream capture no longer reads."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message).rstrip("\n")), level="WARNING",
                      format="{level} | {message}")
    yield lines
    logger.remove(sink)
