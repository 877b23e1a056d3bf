#!/usr/bin/env bash
# The main job on the embedded default: generates sample clips, trims, precomputes and trains a LoRA on a tiny
# built-in LTX-2.3-shaped model, then writes the LoRA file. Extra arguments go to `python -m trainer_core.demo`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m trainer_core.demo "$@"
