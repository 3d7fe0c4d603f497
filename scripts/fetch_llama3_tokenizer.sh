#!/usr/bin/env bash
# Fetch Meta's Llama-3 tokenizer (its BPE ranks, tokenizer.model in tiktoken's format: the vocabulary
# Llama-3-Taiwan-70B keeps) at setup time, from PyPI only: the 2.2 MB file ships inside Meta's
# llama-models 0.3.0 wheel (no model hub is reachable, or wanted). Tests and benchmarks build the
# published Hugging Face layout from it (tests/conversion/llama3_layout.py). Idempotent; the checksum
# pins the exact file.
#   usage: scripts/fetch_llama3_tokenizer.sh [DEST]   (default .venv/share/nemo_twvlm/llama3/tokenizer.model)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${VENV:-.venv}/share/nemo_twvlm/llama3/tokenizer.model}
SHA256=82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55
PYTHON=${PYTHON:-${VENV:-.venv}/bin/python}

if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
    echo "fetch_llama3_tokenizer: $DEST is up to date"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "llama-models==0.3.0"
"$PYTHON" - "$tmp"/llama_models-0.3.0-*.whl "$tmp/tokenizer.model" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("llama_models/llama3/tokenizer.model"))
PY
echo "$SHA256  $tmp/tokenizer.model" | sha256sum -c --status || {
    echo "fetch_llama3_tokenizer: checksum mismatch for llama3/tokenizer.model from llama-models==0.3.0" >&2; exit 1; }
mkdir -p "$(dirname "$DEST")"
mv "$tmp/tokenizer.model" "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
echo "fetch_llama3_tokenizer: wrote $DEST"
