#!/usr/bin/env bash
# Runs a real single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1 for the evhub-kafka tests.
#
#   scripts/kafka.sh start   fetch the broker through Maven (cached), format a
#                            fresh data dir, start it and wait until it answers
#   scripts/kafka.sh env     print `export EVHUB_TEST_*=...` lines for the tests
#   scripts/kafka.sh stop    stop the broker started by `start` (idempotent)
#   scripts/kafka.sh status  say whether it runs
#   scripts/kafka.sh kill    SIGKILL the broker, keeping its data dir (fault drills)
#   scripts/kafka.sh resume  start the broker again on the same data dir (not re-formatted)
#
# Listeners (all 127.0.0.1; ports overridable by env):
#   PLAINTEXT   $EVHUB_KAFKA_PORT            (19092)  backend `kafka`
#   SASL_SSL    $EVHUB_KAFKA_SASL_SSL_PORT   (19093)  backend `eventhubs-kafka`:
#               PLAIN, user `$ConnectionString`, password = a test Event Hubs
#               connection string, certificate made by keytool (CA as PEM)
#   CONTROLLER  $EVHUB_KAFKA_CONTROLLER_PORT (19094)
#   OAUTH       $EVHUB_KAFKA_OAUTH_PORT      (19095)  SASL_PLAINTEXT OAUTHBEARER,
#               the broker's unsecured-JWT validator (token callback tests)
#
# Cache:  $EVHUB_KAFKA_CACHE_DIR (default $HOME/.cache/evhub/kafka)/<version>/libs
#         plus broker-cds.jsa, a class-data-sharing archive written by the first run that
#         roughly halves later JVM start-ups (EVHUB_KAFKA_CDS=0 disables it)
# State:  $EVHUB_KAFKA_STATE_DIR (default $HOME/.cache/evhub/run/kafka): pid,
#         config, certificates, data and logs of the running broker.
set -euo pipefail

KAFKA_VERSION="${EVHUB_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"
CACHE_ROOT="${EVHUB_KAFKA_CACHE_DIR:-$HOME/.cache/evhub/kafka}"
LIBS_DIR="$CACHE_ROOT/$KAFKA_VERSION/libs"
STATE_DIR="${EVHUB_KAFKA_STATE_DIR:-$HOME/.cache/evhub/run/kafka}"
PLAINTEXT_PORT="${EVHUB_KAFKA_PORT:-19092}"
SASL_SSL_PORT="${EVHUB_KAFKA_SASL_SSL_PORT:-19093}"
CONTROLLER_PORT="${EVHUB_KAFKA_CONTROLLER_PORT:-19094}"
OAUTH_PORT="${EVHUB_KAFKA_OAUTH_PORT:-19095}"
START_TIMEOUT="${EVHUB_KAFKA_START_TIMEOUT:-90}"
HEAP="${EVHUB_KAFKA_HEAP:-512m}"
HOST=127.0.0.1

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- fetch -------------------------------------------------------------------

# java, keytool and mvn come from Debian packages; install them when missing.
ensure_tools() {
  local missing=()
  command -v java >/dev/null && command -v keytool >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "could not install ${missing[*]}; install a Java 17+ runtime and Maven"
}

fetch_broker() {
  ensure_tools
  if [ -f "$LIBS_DIR/.complete" ]; then
    return 0
  fi
  local work="$CACHE_ROOT/$KAFKA_VERSION/fetch"
  rm -rf "$work" "$LIBS_DIR.tmp"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>evhub.test</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies"
  local t0=$SECONDS
  (cd "$work" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR.tmp") >"$work/mvn.log" 2>&1 \
    || { tail -n 40 "$work/mvn.log" >&2; die "maven could not fetch the Kafka broker (log: $work/mvn.log)"; }
  ls "$LIBS_DIR.tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 \
    || die "kafka_2.13-$KAFKA_VERSION.jar missing after the maven fetch"
  touch "$LIBS_DIR.tmp/.complete"
  rm -rf "$LIBS_DIR"
  mv "$LIBS_DIR.tmp" "$LIBS_DIR"
  log "fetched $(ls "$LIBS_DIR" | wc -l) jars in $((SECONDS - t0)) s into $LIBS_DIR"
}

# --- state helpers -------------------------------------------------------------

pid_alive() {
  local pid
  [ -f "$STATE_DIR/pid" ] || return 1
  pid="$(cat "$STATE_DIR/pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be our broker's JVM.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $STATE_DIR/server.properties"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

random_b64url() { head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

make_secrets() {
  # Kept across restarts of the same state dir so an exported env stays valid.
  if [ ! -f "$STATE_DIR/secrets.env" ]; then
    {
      echo "STOREPASS=$(random_b64url 18)"
      echo "SAS_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
      echo "ADMIN_PASSWORD=$(random_b64url 18)"
    } >"$STATE_DIR/secrets.env"
    chmod 600 "$STATE_DIR/secrets.env"
  fi
  # shellcheck disable=SC1091
  . "$STATE_DIR/secrets.env"
  CONNECTION_STRING="Endpoint=sb://$HOST:$SASL_SSL_PORT/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=$SAS_KEY"
}

make_certs() {
  local tls="$STATE_DIR/tls"
  if [ -f "$tls/broker.p12" ] && [ -f "$tls/ca.pem" ]; then
    return 0
  fi
  rm -rf "$tls"
  mkdir -p "$tls"
  local kt=(keytool -noprompt -storetype PKCS12 -storepass "$STOREPASS")
  # A CA (basicConstraints CA:true) that signs the broker certificate; the
  # tests trust the CA through librdkafka's ssl.ca.location.
  "${kt[@]}" -genkeypair -keystore "$tls/ca.p12" -alias ca -keyalg RSA -keysize 2048 \
    -validity 3650 -dname "CN=evhub test CA" -ext bc:c >/dev/null 2>&1
  "${kt[@]}" -exportcert -rfc -keystore "$tls/ca.p12" -alias ca -file "$tls/ca.pem" >/dev/null 2>&1
  "${kt[@]}" -genkeypair -keystore "$tls/broker.p12" -alias broker -keyalg RSA -keysize 2048 \
    -validity 3650 -dname "CN=$HOST" >/dev/null 2>&1
  "${kt[@]}" -certreq -keystore "$tls/broker.p12" -alias broker -file "$tls/broker.csr" >/dev/null 2>&1
  "${kt[@]}" -gencert -keystore "$tls/ca.p12" -alias ca -infile "$tls/broker.csr" \
    -outfile "$tls/broker.pem" -rfc -validity 3650 \
    -ext "SAN=IP:$HOST,DNS:localhost" -ext "EKU=serverAuth" >/dev/null 2>&1
  "${kt[@]}" -importcert -keystore "$tls/broker.p12" -alias ca -file "$tls/ca.pem" >/dev/null 2>&1
  "${kt[@]}" -importcert -keystore "$tls/broker.p12" -alias broker -file "$tls/broker.pem" >/dev/null 2>&1
  [ -s "$tls/ca.pem" ] || die "keytool did not produce $tls/ca.pem"
}

write_config() {
  local data="$STATE_DIR/data"
  # JAAS values are quoted; the connection string holds ';' and '='.
  cat >"$STATE_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PLAINTEXT_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,OAUTH://$HOST:$OAUTH_PORT
advertised.listeners=PLAINTEXT://$HOST:$PLAINTEXT_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,OAUTH://$HOST:$OAUTH_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT,OAUTH:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT

listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_\$ConnectionString="$CONNECTION_STRING";
ssl.keystore.type=PKCS12
ssl.keystore.location=$STATE_DIR/tls/broker.p12
ssl.keystore.password=$STOREPASS
ssl.key.password=$STOREPASS
ssl.client.auth=none

listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";

log.dirs=$data
num.partitions=4
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=1000
group.min.session.timeout.ms=1000
log.segment.bytes=16777216
log.retention.check.interval.ms=60000
num.network.threads=2
num.io.threads=4
EOF
  cat >"$STATE_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $STATE_DIR/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
EOF
}

java_args=()
# Class data sharing: the first broker run records the classes it loaded into an archive at
# exit; later runs map it, which shortens JVM start-up. A stale or broken archive is ignored by
# the JVM (it warns and starts without it).
CDS_ARCHIVE="$CACHE_ROOT/$KAFKA_VERSION/broker-cds.jsa"
set_java_args() {
  local cds=()
  if [ "${1:-}" = broker ] && [ "${EVHUB_KAFKA_CDS:-1}" != 0 ]; then
    if [ -s "$CDS_ARCHIVE" ]; then
      cds=(-XX:SharedArchiveFile="$CDS_ARCHIVE" -Xlog:cds=off -Xlog:cds+dynamic=off)
    else
      cds=(-XX:ArchiveClassesAtExit="$CDS_ARCHIVE")
      touch "$STATE_DIR/cds-dumping"
    fi
  fi
  java_args=("${cds[@]}" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
    -cp "$LIBS_DIR/*")
}

# --- commands ------------------------------------------------------------------

cmd_start() {
  if pid_alive; then
    log "already running (pid $(cat "$STATE_DIR/pid"))"
    return 0
  fi
  fetch_broker
  for p in "$PLAINTEXT_PORT" "$SASL_SSL_PORT" "$CONTROLLER_PORT" "$OAUTH_PORT"; do
    port_open "$p" && die "port $HOST:$p is already in use (set EVHUB_KAFKA_*_PORT)"
  done
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  make_secrets
  make_certs
  # A fresh data dir each start: tests never see a previous run's topics.
  rm -rf "$STATE_DIR/data" "$STATE_DIR/logs"
  mkdir -p "$STATE_DIR/logs"
  write_config
  cat >"$STATE_DIR/ports.env" <<EOF
PLAINTEXT_PORT=$PLAINTEXT_PORT
SASL_SSL_PORT=$SASL_SSL_PORT
CONTROLLER_PORT=$CONTROLLER_PORT
OAUTH_PORT=$OAUTH_PORT
EOF

  local t0 cluster_id
  t0=$(date +%s%N)
  cluster_id="$(random_b64url 16)"
  set_java_args
  java "${java_args[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$STATE_DIR/server.properties" >"$STATE_DIR/logs/format.log" 2>&1 \
    || { cat "$STATE_DIR/logs/format.log" >&2; die "formatting the KRaft data dir failed"; }

  set_java_args broker
  nohup java "${java_args[@]}" kafka.Kafka "$STATE_DIR/server.properties" \
    >"$STATE_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/pid"

  local deadline=$((SECONDS + START_TIMEOUT))
  until grep -q "Kafka Server started" "$STATE_DIR/logs/server.log" 2>/dev/null \
    && port_open "$PLAINTEXT_PORT" && port_open "$SASL_SSL_PORT" && port_open "$OAUTH_PORT"; do
    if ! pid_alive; then
      tail -n 40 "$STATE_DIR/logs/stdout.log" "$STATE_DIR/logs/server.log" >&2 2>/dev/null || true
      rm -f "$STATE_DIR/pid"
      die "broker exited during start-up (logs in $STATE_DIR/logs)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$STATE_DIR/logs/server.log" >&2 2>/dev/null || true
      cmd_stop
      die "broker did not answer within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  local ms=$((($(date +%s%N) - t0) / 1000000))
  echo "$ms" >"$STATE_DIR/start_ms"
  log "Apache Kafka $KAFKA_VERSION up in ${ms} ms (pid $(cat "$STATE_DIR/pid"); logs $STATE_DIR/logs)"
}

cmd_stop() {
  if [ ! -f "$STATE_DIR/pid" ]; then
    log "not running"
    return 0
  fi
  if pid_alive; then
    local pid
    pid="$(cat "$STATE_DIR/pid")"
    kill -TERM "$pid" 2>/dev/null || true
    # Writing the class-data archive at exit takes a while on the first run.
    local tries=150
    [ -f "$STATE_DIR/cds-dumping" ] && tries=450
    for _ in $(seq 1 "$tries"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "broker did not stop within $((tries / 5)) s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      # An archive cut off mid-write must not be used by the next start.
      [ -f "$STATE_DIR/cds-dumping" ] && rm -f "$CDS_ARCHIVE"
      sleep 0.5
    fi
    log "stopped (pid $pid)"
  else
    log "not running (stale pid file removed)"
  fi
  rm -f "$STATE_DIR/pid" "$STATE_DIR/cds-dumping"
}

cmd_kill() {
  pid_alive || die "broker not running"
  local pid
  pid="$(cat "$STATE_DIR/pid")"
  kill -KILL "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # An archive cut off mid-write must not be used by the next start.
  if [ -f "$STATE_DIR/cds-dumping" ]; then rm -f "$CDS_ARCHIVE" "$STATE_DIR/cds-dumping"; fi
  log "killed (pid $pid, SIGKILL); data kept in $STATE_DIR/data"
}

cmd_resume() {
  if pid_alive; then
    log "already running (pid $(cat "$STATE_DIR/pid"))"
    return 0
  fi
  [ -f "$STATE_DIR/server.properties" ] && [ -d "$STATE_DIR/data" ] \
    || die "no data dir to resume from; run 'scripts/kafka.sh start'"
  local t0
  t0=$(date +%s%N)
  set_java_args broker
  echo "--- resumed $(date -u +%FT%TZ)" >>"$STATE_DIR/logs/server.log"
  local mark
  mark=$(wc -l <"$STATE_DIR/logs/server.log")
  nohup java "${java_args[@]}" kafka.Kafka "$STATE_DIR/server.properties" \
    >>"$STATE_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/pid"
  local deadline=$((SECONDS + START_TIMEOUT))
  until tail -n +"$mark" "$STATE_DIR/logs/server.log" | grep -q "Kafka Server started" \
    && port_open "$PLAINTEXT_PORT"; do
    pid_alive || die "broker exited while resuming (logs in $STATE_DIR/logs)"
    ((SECONDS < deadline)) || die "broker did not answer within ${START_TIMEOUT}s after resume"
    sleep 0.2
  done
  log "resumed in $((($(date +%s%N) - t0) / 1000000)) ms (pid $(cat "$STATE_DIR/pid"))"
}

cmd_env() {
  pid_alive || die "broker not running; run 'scripts/kafka.sh start' first"
  # shellcheck disable=SC1091
  . "$STATE_DIR/ports.env"
  make_secrets
  cat <<EOF
export EVHUB_TEST_KAFKA_BOOTSTRAP='$HOST:$PLAINTEXT_PORT'
export EVHUB_TEST_EHKAFKA_BOOTSTRAP='$HOST:$SASL_SSL_PORT'
export EVHUB_TEST_EHKAFKA_CONNECTION_STRING='$CONNECTION_STRING'
export EVHUB_TEST_KAFKA_CA_PEM='$STATE_DIR/tls/ca.pem'
export EVHUB_TEST_KAFKA_OAUTH_BOOTSTRAP='$HOST:$OAUTH_PORT'
export EVHUB_TEST_KAFKA_CONTROL='$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka.sh'
EOF
}

cmd_status() {
  if pid_alive; then
    echo "running (pid $(cat "$STATE_DIR/pid"), started in $(cat "$STATE_DIR/start_ms" 2>/dev/null || echo '?') ms)"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) cmd_status ;;
  kill) cmd_kill ;;
  resume) cmd_resume ;;
  fetch) fetch_broker ;;
  *) echo "usage: $0 start|stop|env|status|kill|resume|fetch" >&2; exit 2 ;;
esac
