#!/usr/bin/env bash
# Prints the path of a uv executable, installing uv into .tools/ with pip when none is on PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if command -v uv >/dev/null 2>&1; then
    command -v uv
    exit 0
fi
tools="$root/.tools"
if [ ! -x "$tools/bin/uv" ]; then
    python3 -m venv "$tools" >&2
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.8,<0.14" >&2
fi
echo "$tools/bin/uv"
