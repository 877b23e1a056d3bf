#!/usr/bin/env bash
# comfy-test-env.sh - run the pack's ComfyUI integration tests (tests/comfy) on CPU against a ComfyUI checkout.
#
# Usage: scripts/comfy-test-env.sh [COMFYUI_ROOT [WORKDIR]] [-- PYTEST_ARGS...]
#   COMFYUI_ROOT  a ComfyUI v0.20.x source tree (default: $COMFYUI_ROOT)
#   WORKDIR       where the CPU env is cached (default: $COMFY_TEST_WORKDIR, else .comfy-env in the repo, git-ignored)
#   PYTEST_ARGS   passed to pytest (default: -q); e.g. -- -x -k lora
#
# First run (~2 min, ~2.5 GB): builds WORKDIR with ../shared/tools/comfyui-cpu-env (a venv with CPU torch, ComfyUI's
# requirements and stub libraries for PyPI's CUDA-only torchvision/torchaudio), then installs the pack's
# requirements under its torch constraint. Later runs reuse it until ComfyUI's or the pack's requirements change.
# Tests run with LTX23_REQUIRE_COMFY=1: a ComfyUI that does not import fails them instead of skipping them.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
positional=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do positional+=("$1"); shift; done
[ $# -gt 0 ] && shift
pytest_args=("$@")
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(-q)
[ ${#positional[@]} -le 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }

root=${positional[0]:-${COMFYUI_ROOT:-}}
[ -n "$root" ] || { echo "comfy-test-env: give the ComfyUI checkout as an argument or in COMFYUI_ROOT" >&2; exit 2; }
root=$(realpath -- "$root")
[ -f "$root/main.py" ] && [ -f "$root/requirements.txt" ] || { echo "comfy-test-env: $root is not a ComfyUI tree" >&2; exit 2; }
work=$(realpath -m -- "${positional[1]:-${COMFY_TEST_WORKDIR:-$repo/.comfy-env}}")
tool=$repo/../shared/tools/comfyui-cpu-env
log() { echo "[comfy-test-env] $*" >&2; }

# The env depends on the ComfyUI tree it was built for, that tree's requirements and the build tool itself.
env_want=$( { echo "$root"; cat "$root/requirements.txt" "$tool"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$work/.env.sha256" 2>/dev/null)" != "$env_want" ]; then
  [ -x "$tool" ] || { echo "comfy-test-env: $tool not found (the shared folder sits beside the repo)" >&2; exit 1; }
  log "building the CPU env for $root in $work"
  "$tool" "$work" "$root" >/dev/null
  rm -f "$work/.pack.sha256"
  echo "$env_want" > "$work/.env.sha256"
fi

pack_want=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$work/.pack.sha256" 2>/dev/null)" != "$pack_want" ]; then
  log "installing the pack's requirements"
  "$work/venv/bin/python" -m pip install --quiet -c "$work/constraints.txt" \
    -r "$repo/requirements.txt" -r "$repo/requirements-dev.txt"
  echo "$pack_want" > "$work/.pack.sha256"
fi

# shellcheck source=/dev/null  # written by comfyui-cpu-env: LD_LIBRARY_PATH, COMFYUI_ROOT, PATH
source "$work/env.sh"
cd "$repo"
# Given test paths replace the default tests/comfy.
targets=(tests/comfy)
for arg in "${pytest_args[@]}"; do
  case "$arg" in tests/comfy/*|./tests/comfy/*) targets=() ;; esac
done
LTX23_REQUIRE_COMFY=1 exec "$work/venv/bin/python" -m pytest "${targets[@]}" "${pytest_args[@]}"
