#!/usr/bin/env bash
# One-GPU smoke test and throughput probe (scripts/gpu_smoke.py): debug and 8B-proxy VLM vs a text-only
# GPT with the same LM, BF16 and FP8 (delayed, current scaling) through Transformer Engine.
# Needs a CUDA GPU with Transformer Engine (an NGC PyTorch/NeMo container with this package installed).
#
#   bash scripts/gpu_smoke.sh [--steps 10] [--proxy-layers 4] [--json results.json]
#   bash scripts/gpu_smoke.sh --device cpu            # debug model, fp32, no TE: checks the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
exec "$PY" scripts/gpu_smoke.py "$@"
