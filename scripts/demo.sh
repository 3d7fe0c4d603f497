#!/usr/bin/env bash
# The main job at debug size on CPU: synthetic Taiwan data -> align -> CPT -> held-out probe.
# Last line: demo: images_acc=<float> blank_acc=<float> chance=<float> steps=<int> wall_s=<int>
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
exec .venv/bin/nemo twvlm demo "$@" --yes
