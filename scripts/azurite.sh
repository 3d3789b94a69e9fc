#!/usr/bin/env bash
# Azurite (Azure Storage emulator) for the blob checkpoint-store tests.
#
#   scripts/azurite.sh start   install (once, pinned) and start the blob service on 127.0.0.1
#   scripts/azurite.sh env     print `export EVHUB_TEST_AZURITE_*=...` lines for eval
#   scripts/azurite.sh stop    stop the instance started by `start`
#   scripts/azurite.sh status  exit 0 when the started instance answers
#
# Installed with `npm install --prefix $HOME/.cache/evhub/azurite` (npm package `azurite`,
# version pinned below). Listens on 127.0.0.1 only; the port is EVHUB_AZURITE_PORT or a free
# one picked at start. The account is Azurite's well-known development account, whose key is
# public (it is documented by Microsoft for every Azurite install).
set -euo pipefail

AZURITE_VERSION="3.37.0"
ROOT="${EVHUB_CACHE:-$HOME/.cache/evhub}/azurite"
RUN_DIR="${EVHUB_AZURITE_RUN_DIR:-$ROOT/run}"
PID_FILE="$RUN_DIR/azurite.pid"
PORT_FILE="$RUN_DIR/azurite.port"
LOG_FILE="$RUN_DIR/azurite.log"
DATA_DIR="$RUN_DIR/data"
BIN="$ROOT/node_modules/.bin/azurite-blob"
ACCOUNT="devstoreaccount1"
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

log() { echo "azurite.sh: $*" >&2; }

install() {
  local installed=""
  if [ -f "$ROOT/node_modules/azurite/package.json" ]; then
    installed="$(node -p "require('$ROOT/node_modules/azurite/package.json').version" 2>/dev/null || true)"
  fi
  if [ "$installed" = "$AZURITE_VERSION" ] && [ -x "$BIN" ]; then
    return 0
  fi
  command -v npm >/dev/null || { log "npm is required (install Node.js 18+)"; return 1; }
  mkdir -p "$ROOT"
  log "installing azurite@$AZURITE_VERSION into $ROOT"
  npm install --prefix "$ROOT" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

running() {
  [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

answers() {
  local port="$1"
  # Any HTTP answer (Azurite replies 400/403 to an unsigned request) means it is up.
  (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3 | grep -q HTTP) 2>/dev/null
}

start() {
  if running; then
    log "already running (pid $(cat "$PID_FILE"), port $(cat "$PORT_FILE"))"
    return 0
  fi
  install
  mkdir -p "$RUN_DIR" "$DATA_DIR"
  local port="${EVHUB_AZURITE_PORT:-$(free_port)}"
  # setsid: own process group, so `stop` ends exactly what was started here.
  setsid "$BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$DATA_DIR" \
    --skipApiVersionCheck --disableProductStyleUrl --silent --loose \
    >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  echo "$port" >"$PORT_FILE"
  for _ in $(seq 1 100); do
    if answers "$port"; then
      log "started on 127.0.0.1:$port (pid $(cat "$PID_FILE"))"
      return 0
    fi
    if ! running; then break; fi
    sleep 0.2
  done
  log "did not start; last log lines:"
  tail -n 20 "$LOG_FILE" >&2 || true
  stop
  return 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    local pid
    pid="$(cat "$PID_FILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    rm -rf "$DATA_DIR"
    log "stopped"
  fi
}

print_env() {
  if ! running || [ ! -f "$PORT_FILE" ]; then
    log "not running; run scripts/azurite.sh start"
    return 1
  fi
  local port
  port="$(cat "$PORT_FILE")"
  echo "export EVHUB_TEST_AZURITE_BLOB_ENDPOINT=http://127.0.0.1:$port/$ACCOUNT"
  echo "export EVHUB_TEST_AZURITE_ACCOUNT=$ACCOUNT"
  echo "export EVHUB_TEST_AZURITE_KEY='$KEY'"
  echo "export EVHUB_TEST_AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$ACCOUNT;AccountKey=$KEY;BlobEndpoint=http://127.0.0.1:$port/$ACCOUNT;'"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  status) running && answers "$(cat "$PORT_FILE")" ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
