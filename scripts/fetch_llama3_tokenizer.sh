#!/usr/bin/env bash
# Fetch Meta's Llama-3 tokenizer (its BPE ranks, tokenizer.model in tiktoken's format: the vocabulary
# Llama-3-Taiwan-70B keeps) at setup time, from PyPI only: the 2.2 MB file ships inside Meta's
# llama-models 0.3.0 wheel (no model hub is reachable, or wanted). Tests and benchmarks build the
# published Hugging Face layout from it (tests/conversion/llama3_layout.py). Idempotent; the checksum
# pins the exact file.
#   usage: scripts/fetch_llama3_tokenizer.sh [DEST]   (default .venv/share/nemo_twvlm/llama3/tokenizer.model)
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/fetch_from_wheel.sh fetch_llama3_tokenizer "llama-models==0.3.0" \
    llama_models/llama3/tokenizer.model 82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55 \
    "${1:-${VENV:-.venv}/share/nemo_twvlm/llama3/tokenizer.model}"
