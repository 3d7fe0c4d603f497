"""Fixtures shared across test folders: the committed debug tokenizer, a small synthetic blend, the debug LLaVA."""
from __future__ import annotations

import os
from pathlib import Path

# Curator's executors import cosmos_xenna, whose python_log swaps loguru's handlers for one on the sys.stderr
# of that moment. First imported inside a test that captures output, that stream closes with the test and
# every later log line fails ("Logging error in Loguru Handler #1"); imported here, it is pytest's
# session-long capture.
import cosmos_xenna.utils.python_log  # noqa: F401
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


# Under pytest-xdist (`--dist loadscope`, scripts/test.sh) a module's tests stay on one worker, so a module
# fixture is built once; these folders share session fixtures, so each stays on one worker too.
SHARED_SESSION_FIXTURES = ("conversion",)
# The longest modules start first, so no worker is left with one of them at the end.
LONGEST_FIRST = ("tests/training/test_resume.py", "tests/training/test_pipeline_parallel.py",
                 "tests/launch/test_train.py")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _work_unit(nodeid: str) -> str:
    module = _module(nodeid)
    folder = module.split("/")[1]
    return folder if folder in SHARED_SESSION_FIXTURES else module


@pytest.hookimpl(optionalhook=True)  # xdist's hook: without xdist (`-p no:xdist`) it is simply unused
def pytest_xdist_make_scheduler(config, log):
    """loadscope, its unit a module or a SHARED_SESSION_FIXTURES folder. (loadgroup's xdist_group marks no
    longer group anything: pytest 9.2 derives node ids from `_id`, and xdist 3.8 renames `_nodeid`, so one
    module's tests went to both workers and its module fixtures, training runs among them, were built twice.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleOrFolderScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return ModuleOrFolderScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    import torch

    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: opt in with --runslow"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return  # in-process runs keep pytest's own order
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item.nodeid), len(rank)))


@pytest.fixture(scope="session")
def tokenizer():
    from nemo_twvlm.data.tokenizer import load_tokenizer

    return load_tokenizer(REPO / "data" / "tokenizer")


@pytest.fixture(scope="session")
def synthetic_blend(tmp_path_factory) -> Path:
    """pairs/, pairs_val/, interleaved/ and blend.yaml, Energon-prepared (about half a second to write)."""
    from nemo_twvlm.data.synthetic import write_dataset

    out = tmp_path_factory.mktemp("synthetic_blend")
    write_dataset(out, train_pairs=200, val_pairs=20, interleaved_docs=60)
    return out


@pytest.fixture(scope="session")
def debug_model():
    """The debug-preset LLaVA (fp32, megatron's local attention, eval mode) in a one-rank gloo process group."""
    import torch

    from nemo_twvlm.model.llava import build_llava
    from nemo_twvlm.presets import PRESETS
    from nemo_twvlm.compat.distributed import init_single_process

    init_single_process(seed=1234)
    torch.manual_seed(0)
    return build_llava(PRESETS["debug"], image_token_index=5, use_te=False).eval()
