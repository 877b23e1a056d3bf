#!/usr/bin/env bash
# The main job on the embedded default: generates clips, trims, precomputes, pre-trains a tiny base, trains a
# LoRA on a concept, checks learning, binding and bleed, sweeps strengths and writes the LoRA file. Extra arguments
# go to `python -m trainer_core.demo`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m trainer_core.demo "$@"
