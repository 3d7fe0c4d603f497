#!/usr/bin/env bash
# The seed's key finding in miniature (README, "The finding in miniature"): base vs text-instruction-aligned
# debug LM, each align -> CPT with no visual instructions, plus visual SFT for reference; three seeds.
# One line per seed: finding: base_if=<f> aligned_if=<f> aligned_content=<f> aligned_content_blank=<f> vsft_if=<f> ...
# Usage: scripts/finding.sh [OUT_DIR [SEED ...]]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
# One intra-op thread per process: on shared cores a second thread spin-waits (BENCHMARKS.md, "Threads").
export NEMO_TWVLM_TORCH_THREADS="${NEMO_TWVLM_TORCH_THREADS:-1}"
exec .venv/bin/python - "$@" <<'PY'
import sys

from nemo_twvlm.launch.finding import SEEDS, run_finding
from nemo_twvlm_recipes.pretrain import twvlm_debug_align, twvlm_debug_cpt, twvlm_debug_sft, twvlm_debug_text_sft

if __name__ == "__main__":  # dist_checkpointing's writer spawns processes
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/finding"
    seeds = tuple(int(s) for s in sys.argv[2:]) or SEEDS
    run_finding(twvlm_debug_text_sft(), twvlm_debug_align(), twvlm_debug_cpt(), twvlm_debug_sft(), out, seeds)
PY
