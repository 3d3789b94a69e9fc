#!/usr/bin/env bash
# The standard evhub benchmark matrix: 100-byte and 1 KiB events, 1 and 4 producers, on the
# memory backend, the local Apache Kafka broker (evhub vs raw rdkafka, `--compare-raw`) and an
# Event Hubs endpoint when one is configured. Writes bench-results.json (one object per run,
# as printed by `evhub bench --json`).
#
# usage: scripts/bench.sh [--quick]
#
# Environment:
#   EVHUB_BENCH_EVENTS     events per run (default 200000; --quick: 20000)
#   EVHUB_BENCH_ROUNDS     evhub/raw rounds per run, median reported (default 3; --quick: 1)
#   EVHUB_BENCH_OUT        output file (default bench-results.json in the repository root)
#   EVHUB_BENCH_BACKENDS   subset of "memory kafka eventhubs" (default all available)
#   EVHUB_BENCH_EVENTHUBS_CONFIG  config file (backend = "eventhubs") of a namespace or emulator
#                          that creates hubs on first use; when unset the evhub-emulator of
#                          this workspace is built and started with --auto-create-hubs
#   EVHUB_TEST_KAFKA_BOOTSTRAP  broker to use; when unset the local broker from
#                          scripts/kafka.sh is used, started (and stopped again) if needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/evhub/target}"

EVENTS="${EVHUB_BENCH_EVENTS:-200000}"
ROUNDS="${EVHUB_BENCH_ROUNDS:-3}"
if [ "${1:-}" = "--quick" ]; then
  EVENTS="${EVHUB_BENCH_EVENTS:-20000}"
  ROUNDS="${EVHUB_BENCH_ROUNDS:-1}"
elif [ -n "${1:-}" ]; then
  echo "usage: scripts/bench.sh [--quick]" >&2
  exit 2
fi
OUT="${EVHUB_BENCH_OUT:-$ROOT/bench-results.json}"
BACKENDS="${EVHUB_BENCH_BACKENDS:-memory kafka eventhubs}"

log() { echo "bench: $*" >&2; }

log "building evhub (release)"
cargo build --release --quiet -p evhub-cli
BIN="$CARGO_TARGET_DIR/release/evhub"

kafka_started=0
emulator_pid=""
cleanup() {
  if [ -n "$emulator_pid" ]; then
    kill "$emulator_pid" 2>/dev/null || true
  fi
  if [ "$kafka_started" = 1 ]; then
    log "stopping the Kafka broker this script started"
    scripts/kafka.sh stop || true
  fi
  rm -rf "${TMP:-}"
}
trap cleanup EXIT
TMP="$(mktemp -d)"

kafka_bootstrap=""
if [[ " $BACKENDS " == *" kafka "* ]]; then
  if [ -n "${EVHUB_TEST_KAFKA_BOOTSTRAP:-}" ]; then
    kafka_bootstrap="$EVHUB_TEST_KAFKA_BOOTSTRAP"
  else
    if ! scripts/kafka.sh status >/dev/null 2>&1; then
      log "starting the local Kafka broker"
      scripts/kafka.sh start >&2
      kafka_started=1
    fi
    eval "$(scripts/kafka.sh env)"
    kafka_bootstrap="${EVHUB_TEST_KAFKA_BOOTSTRAP:-}"
  fi
fi

eventhubs_config="${EVHUB_BENCH_EVENTHUBS_CONFIG:-}"
if [[ " $BACKENDS " == *" eventhubs "* ]] && [ -z "$eventhubs_config" ]; then
  log "building and starting evhub-emulator (release)"
  if cargo build --release --quiet -p evhub-emulator --bin evhub-emulator; then
    key="$(head -c 32 /dev/urandom | base64)"
    "$CARGO_TARGET_DIR/release/evhub-emulator" --port 0 --auto-create-hubs=4 \
      --key "RootManageSharedAccessKey=$key" >"$TMP/emulator.log" 2>&1 &
    emulator_pid=$!
    port=""
    for _ in $(seq 1 100); do
      port="$(grep -o 'listening on amqp://127.0.0.1:[0-9]*' "$TMP/emulator.log" | head -1 | sed 's/.*://' || true)"
      [ -n "$port" ] && break
      sleep 0.1
    done
    if [ -n "$port" ]; then
      eventhubs_config="$TMP/eventhubs.toml"
      cat >"$eventhubs_config" <<TOML
backend = "eventhubs"
connection_string = "Endpoint=sb://127.0.0.1:$port/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=$key;UseDevelopmentEmulator=true"
checkpoint_store = "memory"
TOML
    else
      log "evhub-emulator did not start: $(tail -1 "$TMP/emulator.log")"
    fi
  else
    log "evhub-emulator does not build"
  fi
fi

runs=()
failed=()
n=0
bench() {
  local name="$1" url="$2"; shift 2
  for size in 100 1024; do
    for producers in 1 4; do
      n=$((n + 1))
      local file="$TMP/$n.json"
      log "$name: $EVENTS events x $size B, $producers producer(s), $ROUNDS round(s)"
      local source=(--url "$url")
      [ -f "$url" ] && source=(--config "$url")
      if "$BIN" "${source[@]}" bench --events "$EVENTS" --size "$size" --producers "$producers" \
        --rounds "$ROUNDS" --json "$@" >"$file" 2>"$file.err"; then
        runs+=("$file")
      else
        failed+=("$name size $size producers $producers: $(tail -1 "$file.err")")
        log "FAILED: ${failed[-1]}"
      fi
      grep '^round' "$file.err" >&2 || true
    done
  done
}

for backend in $BACKENDS; do
  case "$backend" in
    memory)
      # Room for every event in one partition of the in-process hub.
      bench memory "memory://?partition_capacity=$((EVENTS + 100000))"
      ;;
    kafka)
      if [ -n "$kafka_bootstrap" ]; then
        bench kafka "kafka://$kafka_bootstrap" --compare-raw
      else
        log "kafka: SKIPPED (no broker)"
      fi
      ;;
    eventhubs)
      if [ -n "$eventhubs_config" ]; then
        # 200 events/s in the latency phase: at 2 000/s single-event sends queue up in both
        # clients and the figure would measure that queue, not the transport.
        bench eventhubs "$eventhubs_config" --compare-raw --latency-rate 200 --latency-events 1000
      else
        log "eventhubs: SKIPPED (no emulator; set EVHUB_BENCH_EVENTHUBS_CONFIG)"
      fi
      ;;
    *)
      log "unknown backend $backend"
      exit 2
      ;;
  esac
done

{
  printf '{\n"generated_at": "%s",\n"cpus": %s,\n"events": %s,\n"rounds": %s,\n"results": [\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$EVENTS" "$ROUNDS"
  first=1
  for file in "${runs[@]}"; do
    [ "$first" = 1 ] || printf ',\n'
    first=0
    cat "$file"
  done
  printf ']\n}\n'
} >"$OUT"
log "wrote $OUT (${#runs[@]} runs)"

# Summary: the evhub/raw ratios of every run that has them.
for file in "${runs[@]}"; do
  ratio="$(grep -o '"ratio":{[^}]*}' "$file" || true)"
  [ -z "$ratio" ] || log "$(grep -o '"backend":"[^"]*"' "$file" | head -1) $(grep -o '"size":[0-9]*' "$file" | head -1) $(grep -o '"producers":[0-9]*' "$file" | head -1) $ratio"
done
if [ "${#failed[@]}" -gt 0 ]; then
  log "${#failed[@]} run(s) failed:"
  printf 'bench:   %s\n' "${failed[@]}" >&2
  exit 1
fi
