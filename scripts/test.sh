#!/usr/bin/env bash
# The test command (README, CI): sets up the environment if needed, then runs the CPU test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/data -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
exec .venv/bin/python -m pytest -q "$@"
