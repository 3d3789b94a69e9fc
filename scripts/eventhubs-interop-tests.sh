#!/usr/bin/env bash
# Checkpoint interop between evhub's `eventhubs` backend and Microsoft's Python processor
# (azure-eventhub + azure-eventhub-checkpointstoreblob-aio, pinned in
# tests/eventhubs_interop/requirements.txt), on the evhub emulator and Azurite.
#
# - venv: $HOME/.cache/evhub/venv-interop (pip runs only when the requirements changed)
# - builds evhub-emulator and the evhub side (example `group_member` of evhub-eventhubs)
# - needs Azurite: uses the one described by EVHUB_TEST_AZURITE_* (scripts/azurite.sh env),
#   else starts one with scripts/azurite.sh and stops it after
# - starts the emulator on 127.0.0.1 (free port), runs pytest, always stops what it started
# Exit status is pytest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS="$ROOT/tests/eventhubs_interop"
VENV="${EVHUB_INTEROP_VENV:-$HOME/.cache/evhub/venv-interop}"
REQUIREMENTS="$TESTS/requirements.txt"

log() { echo "eventhubs-interop-tests: $*" >&2; }

# shellcheck source=lib/python-venv.sh
. "$ROOT/scripts/lib/python-venv.sh"
ensure_venv "$VENV" "$REQUIREMENTS"

log "building evhub-emulator and the evhub group member"
(cd "$ROOT" && cargo build --quiet -p evhub-emulator --bin evhub-emulator \
  && cargo build --quiet -p evhub-eventhubs --example group_member)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/debug/evhub-emulator"
MEMBER="$TARGET_DIR/debug/examples/group_member"
[ -x "$BIN" ] && [ -x "$MEMBER" ] || { log "binaries not found under $TARGET_DIR"; exit 1; }

WORK="$(mktemp -d)"
EMULATOR_PID=""
AZURITE_STARTED=0
cleanup() {
  if [ -n "$EMULATOR_PID" ] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
    kill -TERM "$EMULATOR_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$EMULATOR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$EMULATOR_PID" 2>/dev/null || true
  fi
  if [ "$AZURITE_STARTED" = 1 ]; then
    bash "$ROOT/scripts/azurite.sh" stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ -z "${EVHUB_TEST_AZURITE_CONNECTION_STRING:-}" ]; then
  if ! bash "$ROOT/scripts/azurite.sh" status >/dev/null 2>&1; then
    bash "$ROOT/scripts/azurite.sh" start
    AZURITE_STARTED=1
  fi
  eval "$(bash "$ROOT/scripts/azurite.sh" env)"
fi

"$BIN" --port 0 --no-auth --hub interop-py2ev:2 --hub interop-ev2py:2 --hub interop-both:2 --hub interop-pyleaves:2 \
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
[ -n "$PORT" ] || { log "emulator did not report its port"; exit 1; }
log "emulator pid $EMULATOR_PID on 127.0.0.1:$PORT"

export EVHUB_INTEROP_EMULATOR_PORT="$PORT" EVHUB_INTEROP_MEMBER_BIN="$MEMBER"
export EVHUB_TEST_AZURITE_CONNECTION_STRING EVHUB_TEST_AZURITE_KEY EVHUB_TEST_AZURITE_BLOB_ENDPOINT
set +e
(cd "$TESTS" && "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider "$@")
status=$?
set -e
if [ "$status" -ne 0 ]; then
  log "emulator log (last 40 lines):"
  tail -n 40 "$WORK/emulator.log" >&2 || true
fi
exit "$status"
