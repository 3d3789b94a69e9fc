#!/usr/bin/env bash
# Runs Microsoft's Python SDK (azure-eventhub, pinned in
# tests/emulator_py/requirements.txt) against the evhub-emulator binary.
#
# - venv: $HOME/.cache/evhub/venv-emulator (pip runs only when the
#   requirements file changed; a stamp file records its hash)
# - builds evhub-emulator with cargo (honours CARGO_TARGET_DIR)
# - starts it on 127.0.0.1 with a free port and tests/emulator_py/emulator-test.toml
# - runs pytest, prints its summary line, and always stops the emulator
# Exit status is pytest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS="$ROOT/tests/emulator_py"
VENV="${EVHUB_EMULATOR_VENV:-$HOME/.cache/evhub/venv-emulator}"
REQUIREMENTS="$TESTS/requirements.txt"

log() { echo "emulator-py-tests: $*" >&2; }

# 1. Python environment.
# shellcheck source=lib/python-venv.sh
. "$ROOT/scripts/lib/python-venv.sh"
ensure_venv "$VENV" "$REQUIREMENTS"

# 2. Emulator binary.
log "building evhub-emulator"
(cd "$ROOT" && cargo build --quiet -p evhub-emulator --bin evhub-emulator)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/debug/evhub-emulator"
[ -x "$BIN" ] || { log "binary not found at $BIN"; exit 1; }

# 3. Start it on a free port (port 0; the port is read from its first line).
WORK="$(mktemp -d)"
EMULATOR_PID=""
cleanup() {
  if [ -n "$EMULATOR_PID" ] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
    kill -TERM "$EMULATOR_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$EMULATOR_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$EMULATOR_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN" --config "$TESTS/emulator-test.toml" --port 0 \
  >"$WORK/stdout" 2>"$WORK/emulator.log" &
EMULATOR_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT="$(sed -n 's/^evhub-emulator listening on amqp:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/stdout" | head -n1)"
  [ -n "$PORT" ] && break
  if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
    log "emulator exited early:"; cat "$WORK/emulator.log" >&2; exit 1
  fi
  sleep 0.1
done
[ -n "$PORT" ] || { log "emulator did not report its port"; cat "$WORK/emulator.log" >&2; exit 1; }
log "emulator pid $EMULATOR_PID on 127.0.0.1:$PORT"

# 4. Tests.
export EVHUB_EMULATOR_PORT="$PORT" EVHUB_EMULATOR_BIN="$BIN"
set +e
(cd "$TESTS" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@")
status=$?
set -e
if [ "$status" -ne 0 ]; then
  log "emulator log (last 40 lines):"
  tail -n 40 "$WORK/emulator.log" >&2 || true
fi
exit "$status"
