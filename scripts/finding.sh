#!/usr/bin/env bash
# The seed's key finding in miniature (README, "The finding in miniature"): base vs text-instruction-aligned
# debug LM, each align -> CPT with no visual instructions, plus visual SFT for reference; three seeds.
# One line per seed: finding: base_if=<f> aligned_if=<f> aligned_content=<f> aligned_content_blank=<f> vsft_if=<f> ...
# Usage: scripts/finding.sh [OUT_DIR [SEED,...]]   (`nemo twvlm finding out_dir=... seeds=1,2,3`)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
# One intra-op thread per process: on shared cores a second thread spin-waits (BENCHMARKS.md, "Threads").
export NEMO_TWVLM_TORCH_THREADS="${NEMO_TWVLM_TORCH_THREADS:-1}"
exec .venv/bin/python -m nemo_twvlm.launch.cli finding "out_dir=${1:-runs/finding}" ${2:+"seeds=$2"} --yes
