#!/usr/bin/env bash
# The test command (README, CI): sets up the environment if needed, then runs the CPU test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/data -x`. The tests run on TWVLM_TEST_WORKERS
# pytest-xdist workers (default 2, one per core of the CI machine), a module (or a folder sharing session
# fixtures, tests/conftest.py) per worker, the longest first. Tests marked `slow` are skipped unless
# `--runslow` is given; with it, the tests marked `solo` (held to a wall-clock budget: the demo's, 2.5-6.5 min)
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
ran=0
# Pytest's 5 is "none selected" (under xdist, a path that does not exist too): a phase the arguments
# leave empty is fine (`... tests/launch/test_demo.py --runslow`), but a run where every phase is empty fails.
phase() { if .venv/bin/python -m pytest -q "$@"; then ran=1; else rc=$?; [ "$rc" = 5 ] || { ran=1; status=$rc; }; fi; }
phase -n "$workers" --dist loadscope --no-loadscope-reorder -m "not solo" "$@"
if [[ " $* " == *" --runslow "* ]]; then
    phase -m solo "$@"
fi
if [ "$ran" = 0 ]; then
    echo "test.sh: no test selected by: $* (is a path misspelt? the demo's test needs --runslow)" >&2
    exit 5
fi
exit "$status"
