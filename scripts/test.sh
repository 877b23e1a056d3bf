#!/usr/bin/env bash
# The test command (CI runs exactly this): the core suite in .venv (set up on first use), then the ComfyUI
# integration tests (tests/comfy) whenever a ComfyUI tree is available: $COMFYUI_ROOT, else ../shared/comfyui beside
# the repo. Their CPU env is built once by scripts/comfy-test-env.sh into .comfy-env (or $COMFY_TEST_WORKDIR) and
# reused; they run with LTX23_REQUIRE_COMFY=1, so a ComfyUI that does not import fails instead of skipping. Running
# as root without Chromium installs Debian's chromium for the browser test. Arguments go to pytest: test paths under
# tests/comfy to the ComfyUI run, other paths to the core run (a run none of the given paths is for is left out),
# options to both. Exit status: non-zero when a run fails or collects no tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
log() { echo "[test.sh] $*" >&2; }

# Runs one pytest command, keeps its output and its status; pytest's 5 ("no tests collected") counts as a failure.
declare -A status=() verdict=()
run_suite() {
  local name=$1; shift
  set +e
  "$@" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  set -e
  status[$name]=$rc
  verdict[$name]=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error|deselected)|no tests ran' "$logs/$name.log" \
    | tail -n1 | sed -E 's/^=+ //; s/ =+$//')
  [ "$rc" -eq 5 ] && verdict[$name]="no tests collected (pytest exit 5)"
  return 0
}

opts=() core_paths=() comfy_paths=()
for arg in "$@"; do
  case "$arg" in
    tests/comfy*|./tests/comfy*) comfy_paths+=("$arg") ;;
    -*) opts+=("$arg") ;;
    *) if [ -e "${arg%%::*}" ]; then core_paths+=("$arg"); else opts+=("$arg"); fi ;;
  esac
done
want_core=1 want_comfy=1
if [ $((${#core_paths[@]} + ${#comfy_paths[@]})) -gt 0 ]; then
  [ ${#core_paths[@]} -gt 0 ] || want_core=0
  [ ${#comfy_paths[@]} -gt 0 ] || want_comfy=0
fi

if [ $want_core = 1 ]; then
  run_suite core "$root/.venv/bin/python" -m pytest -q -rs --ignore=tests/comfy "${opts[@]}" "${core_paths[@]}"
else
  status[core]=0; verdict[core]="not asked for"
fi

comfy_root=${COMFYUI_ROOT:-$root/../shared/comfyui}
if [ $want_comfy = 0 ]; then
  status[comfy]=0; verdict[comfy]="not asked for"
elif [ -f "$comfy_root/main.py" ]; then
  if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "${CHROMIUM:-}" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's chromium for the browser test"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || log "could not install chromium; the browser test will skip and say why"
    else
      log "no Chromium: the browser test will skip (as root: apt-get install -y chromium, or set \$CHROMIUM)"
    fi
  fi
  if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${CHROMIUM:-}" ]; then
    export LTX23_REQUIRE_BROWSER=1
  fi
  run_suite comfy bash "$root/scripts/comfy-test-env.sh" "$comfy_root" -- -q -rs "${opts[@]}" "${comfy_paths[@]}"
else
  reason="no ComfyUI tree at ${COMFYUI_ROOT:-../shared/comfyui}; set COMFYUI_ROOT to a ComfyUI v0.20.x checkout"
  if [ "${LTX23_REQUIRE_COMFY:-}" = "1" ]; then
    status[comfy]=1; verdict[comfy]="FAILED: $reason (LTX23_REQUIRE_COMFY=1)"
  else
    status[comfy]=0; verdict[comfy]="NOT RUN: $reason"
  fi
fi

echo
echo "=== test summary ==="
rc=0
for name in core comfy; do
  label=$([ "$name" = core ] && echo "core tests (tests/)" || echo "ComfyUI tests (tests/comfy)")
  printf '%-30s exit %s: %s\n' "$label" "${status[$name]}" "${verdict[$name]:-no pytest summary line}"
  [ "${status[$name]}" -eq 0 ] || rc=1
done
exit $rc
