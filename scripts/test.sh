#!/usr/bin/env bash
# The test command (README, CI): sets up the environment if needed, then runs the CPU test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/data -x`. Tests run on $TWVLM_TEST_WORKERS
# pytest-xdist workers (default 0: in this process; under 2 workers the CLI dry-run tests that read rich output fail, see the issue note), a test module (or a folder sharing session
# fixtures, tests/conftest.py) per worker at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
workers="${TWVLM_TEST_WORKERS:-0}"
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
