#!/usr/bin/env bash
# The test command: sets up .venv on first use, then runs the whole suite. ComfyUI integration tests run when
# COMFYUI_ROOT points at a ComfyUI checkout (see scripts/comfy-test-env.sh) and are skipped, loudly, otherwise.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -q -rs "$@"
