#!/usr/bin/env bash
# The test command (README, CI): sets up the environment if needed, then runs the CPU test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/data -x`. The tests run on TWVLM_TEST_WORKERS
# pytest-xdist workers (default 2, one per core of the CI machine), a module (or a folder sharing session
# fixtures, tests/conftest.py) per worker, the longest first. Tests marked `slow` are skipped unless
# `--runslow` is given; with it, the tests marked `solo` (held to a wall-clock budget: the demo's, 5-7 min)
# then run alone. TWVLM_TEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
workers="${TWVLM_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
status=0
.venv/bin/python -m pytest -q -n "$workers" --dist loadgroup --no-loadscope-reorder -m "not solo" "$@" || status=$?
[ "$status" = 5 ] && status=0  # 5: none selected, e.g. `scripts/test.sh tests/launch/test_demo.py --runslow`
if [[ " $* " == *" --runslow "* ]]; then
    .venv/bin/python -m pytest -q -m solo "$@" || { solo=$?; [ "$solo" = 5 ] || status=$solo; }
fi
exit "$status"
