#!/usr/bin/env bash
# The standard evhub benchmark matrix: 100-byte and 1 KiB events, 1 and 4 producers, on the
# memory backend, the local Apache Kafka broker (evhub vs raw rdkafka, `--compare-raw`) and an
# Event Hubs endpoint when one is configured. Every run has the phases produce, consume
# (`recv`), mirror (an `evhub pipe` pipeline copying the backlog into a fresh hub; on Kafka also
# a hand-written raw rdkafka mirror), latency and consume (`recv_batch`). Writes
# bench-results.json (one object per run, as printed by `evhub bench --json`).
#
# usage: scripts/bench.sh [--quick]      run the matrix, write bench-results.json, regenerate
#                                        the table in crates/evhub-cli/README.md
#        scripts/bench.sh --table        only regenerate the README table from the JSON
#
# The README's performance table (between the `bench-table` marker comments) is generated from
# the JSON by render_table below, never typed by hand. Mirror columns: evhub / raw mirror
# events/s and CPU per event, and `mirror / consume` = the run's `mirror_vs_consume_batch` (evhub
# mirror events/s / evhub `recv_batch` consume events/s, medians); `-` where a result has no
# mirror phase (older results, --no-mirror) or the raw client none (eventhubs).
#
# Environment:
#   EVHUB_BENCH_EVENTS     events per run (default 200000; --quick: 20000)
#   EVHUB_BENCH_ROUNDS     evhub/raw rounds per run, median reported (default 3; --quick: 1)
#   EVHUB_BENCH_OUT        output file (default crates/evhub-cli/bench-results.json, next to the
#                          README whose table is generated from it)
#   EVHUB_BENCH_BACKENDS   subset of "memory kafka eventhubs" (default all available)
#   EVHUB_BENCH_EVENTHUBS_CONFIG  config file (backend = "eventhubs") of a namespace or emulator
#                          that creates hubs on first use; when unset the evhub-emulator of
#                          this workspace is built and started with --auto-create-hubs
#   EVHUB_TEST_KAFKA_BOOTSTRAP  broker to use; when unset the local broker from
#                          scripts/kafka.sh is used, started (and stopped again) if needed.
#   EVHUB_BENCH_README     file whose bench-table section is regenerated (default
#                          crates/evhub-cli/README.md when EVHUB_BENCH_OUT is the default; empty:
#                          none)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/evhub/target}"

EVENTS="${EVHUB_BENCH_EVENTS:-200000}"
ROUNDS="${EVHUB_BENCH_ROUNDS:-3}"
TABLE_ONLY=0
if [ "${1:-}" = "--quick" ]; then
  EVENTS="${EVHUB_BENCH_EVENTS:-20000}"
  ROUNDS="${EVHUB_BENCH_ROUNDS:-1}"
elif [ "${1:-}" = "--table" ]; then
  TABLE_ONLY=1
elif [ -n "${1:-}" ]; then
  echo "usage: scripts/bench.sh [--quick|--table]" >&2
  exit 2
fi
OUT="${EVHUB_BENCH_OUT:-$ROOT/crates/evhub-cli/bench-results.json}"
if [ -z "${EVHUB_BENCH_OUT:-}" ]; then
  README="${EVHUB_BENCH_README-$ROOT/crates/evhub-cli/README.md}"
else
  README="${EVHUB_BENCH_README:-}"
fi
BACKENDS="${EVHUB_BENCH_BACKENDS:-memory kafka eventhubs}"

log() { echo "bench: $*" >&2; }

# Regenerates the table between `<!-- bench-table:begin -->` and `<!-- bench-table:end -->` in
# $2 from the results file $1 (as written below): one row per run, evhub / raw (evhub/raw).
render_table() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys

results_path, readme_path = sys.argv[1], sys.argv[2]
with open(results_path) as f:
    doc = json.load(f)

def num(v, digits=None):
    if v is None:
        return "-"
    if digits is None:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{digits}f}"

def ratio(ours, raw, digits=2):
    if ours is None or not raw:
        return ""
    return f" ({ours / raw:.{digits}f})"

def pair(ev, raw, key, raw_key=None, digits=None):
    ours = ev.get(key)
    if raw is None:
        return num(ours, digits)
    theirs = raw.get(raw_key or key)
    return f"{num(ours, digits)} / {num(theirs, digits)}{ratio(ours, theirs)}"

def mirror_vs_consume(r):
    # Written by `evhub bench` since the mirror phase; "-" for results from before it.
    v = r.get("mirror_vs_consume_batch")
    return "-" if v is None else f"{v:.2f}"

header = ("| backend | size | producers | produce ev/s evhub / raw (ratio) "
          "| consume `recv` ev/s evhub / raw (ratio) | consume `recv_batch` ev/s evhub / raw (ratio) "
          "| mirror ev/s evhub / raw (ratio) | mirror / consume `recv_batch` evhub "
          "| CPU µs/ev produce evhub / raw (ratio) | CPU µs/ev `recv` evhub / raw (ratio) "
          "| CPU µs/ev `recv_batch` evhub / raw (ratio) | CPU µs/ev mirror evhub / raw (ratio) "
          "| p50 / p99 ms evhub (raw) |")
rows = [header, "|" + "---|" * 13]
for r in doc["results"]:
    ev, raw, w = r["evhub"], r.get("raw"), r["workload"]
    size = w["size"]
    size = f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"
    lat = f"{num(ev.get('latency_p50_ms'), 2)} / {num(ev.get('latency_p99_ms'), 2)}"
    if raw is not None:
        lat += f" ({num(raw.get('latency_p50_ms'), 2)} / {num(raw.get('latency_p99_ms'), 2)})"
    rows.append("| " + " | ".join([
        r["backend"], size, str(w["producers"]),
        pair(ev, raw, "produce_events_per_s"),
        pair(ev, raw, "consume_events_per_s"),
        pair(ev, raw, "consume_batch_events_per_s", "consume_events_per_s"),
        pair(ev, raw, "mirror_events_per_s"),
        mirror_vs_consume(r),
        pair(ev, raw, "produce_cpu_us_per_event", digits=2),
        pair(ev, raw, "consume_cpu_us_per_event", digits=2),
        pair(ev, raw, "consume_batch_cpu_us_per_event", "consume_cpu_us_per_event", digits=2),
        pair(ev, raw, "mirror_cpu_us_per_event", digits=2),
        lat,
    ]) + " |")
note = (f"<!-- generated by scripts/bench.sh from {results_path.split('/')[-1]} "
        f"({doc.get('generated_at', '?')}, {doc.get('events', '?')} events, "
        f"{doc.get('rounds', '?')} rounds, {doc.get('cpus', '?')} CPUs); do not edit -->")
table = "\n".join([note] + rows)

with open(readme_path) as f:
    text = f.read()
begin, end = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
if not pattern.search(text):
    sys.exit(f"render_table: no {begin} ... {end} section in {readme_path}")
text = pattern.sub(lambda _: f"{begin}\n{table}\n{end}", text)
with open(readme_path, "w") as f:
    f.write(text)
print(f"bench: regenerated the table in {readme_path} ({len(rows) - 2} rows)", file=sys.stderr)
PY
}

if [ "$TABLE_ONLY" = 1 ]; then
  [ -n "$README" ] || { log "EVHUB_BENCH_README is empty: nothing to regenerate"; exit 2; }
  render_table "$OUT" "$README"
  exit 0
fi

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
    # Without --data-dir the emulator drops the oldest events beyond its memory budget (like
    # retention): give the benchmark room for every round of both clients.
    "$CARGO_TARGET_DIR/release/evhub-emulator" --port 0 --auto-create-hubs=4 --max-memory-bytes 8589934592 \
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
if [ -n "$README" ] && [ "${#runs[@]}" -gt 0 ]; then
  render_table "$OUT" "$README"
fi

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
