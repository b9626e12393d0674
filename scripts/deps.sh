#!/usr/bin/env bash
# scripts/deps.sh: real servers for tests and local runs, nothing downloaded into the repo.
#
#   scripts/deps.sh up       start (or reuse) PostgreSQL 5432, Kafka 9094, OpenSearch 9200; wait until they answer
#   scripts/deps.sh stop     stop the Kafka and OpenSearch processes this script started (PostgreSQL is left running)
#   (up and stop take optional server names, e.g. `scripts/deps.sh up postgres`; default: all)
#   scripts/deps.sh env      print `export NAME=value` lines for the service and the tests
#   scripts/deps.sh status   print each server's state (exit 1 if one is down)
#
# PostgreSQL comes from apt (Debian's cluster). Kafka and OpenSearch run on the JVM from jars that
# Maven resolves into its local repository (~/.m2) from the poms under scripts/deps/. State (logs,
# PID files, data, resolved classpaths) lives under $REPO/.deps/, which git ignores.
set -Eeuo pipefail
# An unexpected failure must never end the script silently.
trap 'printf "deps: ERROR unexpected failure (exit %s) at scripts/deps.sh line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STATE="$REPO/.deps"
DEPS_SRC="$SCRIPT_DIR/deps"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=catalog
PG_MAX_CONNECTIONS=${DEPS_PG_MAX_CONNECTIONS:-400}
KAFKA_HOST=127.0.0.1
KAFKA_PORT=9094
KAFKA_CONTROLLER_PORT=9095
# Fixed cluster id (base64url of 16 bytes) so the storage directory formats the same way every time.
KAFKA_CLUSTER_ID=Y2F0YWxvZy1kZXYta2Fmaw
OS_HOST=127.0.0.1
OS_PORT=9200
OS_TRANSPORT_PORT=9300
OS_CLUSTER=catalog-deps

KAFKA_MAIN=kafka.Kafka
OS_MAIN=org.codelibs.opensearch.runner.OpenSearchRunner

# Seconds to wait for each server to answer.
PG_WAIT=${DEPS_PG_WAIT:-30}
KAFKA_WAIT=${DEPS_KAFKA_WAIT:-120}
OS_WAIT=${DEPS_OS_WAIT:-240}
STOP_WAIT=30

# ---------------------------------------------------------------------------------------------- output

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
# line NAME START MESSAGE: one line per step, with the time it took.
line() { printf 'deps: %-10s %7s  %s\n' "$1" "$(elapsed "$2")" "$3"; }
note() { printf 'deps: %-10s %7s  %s\n' "$1" "" "$2"; }
die() {
  printf 'deps: ERROR %s\n' "$*" >&2
  exit 1
}
# die_log NAME LOGFILE MESSAGE: fail, showing the end of the server's log.
die_log() {
  {
    printf 'deps: ERROR %s: %s\n' "$1" "$3"
    if [ -f "$2" ]; then
      printf 'deps: --- last lines of %s ---\n' "$2"
      tail -n 25 "$2" | sed 's/^/    /'
    fi
  } >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------- helpers

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  local t0
  t0=$(now)
  apt-get update -qq >"$STATE/apt.log" 2>&1 || die "apt-get update failed, see $STATE/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$STATE/apt.log" 2>&1 ||
    die "apt-get install $* failed, see $STATE/apt.log"
  line apt "$t0" "installed $*"
}

# tcp_open HOST PORT: something accepts connections there.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_of NAME MAINCLASS: prints the PID recorded for NAME if that process is alive and is really
# ours (its command line names MAINCLASS); removes a stale PID file.
pid_of() {
  local f="$STATE/$1/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"; then
    printf '%s' "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# launch NAME LOGFILE CMD...: start CMD detached (own session, survives this shell and make), record its PID.
launch() {
  local name=$1 log=$2
  shift 2
  local pidfile="$STATE/$name/$name.pid"
  rm -f "$pidfile"
  # The inner shell writes its own PID, then execs the JVM: the PID file names the JVM itself.
  # It closes every inherited descriptor above 2 first: neither this script's lock (fd 9) nor a
  # caller's pipe may stay open in a server that outlives us.
  setsid bash -c '
    for fd in /proc/$$/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
    done
    echo $$ >"$0"
    exec "$@"' "$pidfile" "$@" </dev/null >"$log" 2>&1 &
  for _ in $(seq 1 50); do
    [ -s "$pidfile" ] && break
    sleep 0.1
  done
  [ -s "$pidfile" ] || die_log "$name" "$log" "process did not start"
}

# ---------------------------------------------------------------------------------------------- java / maven

JAVA=""
java_major() { # JAVA_BIN -> major version
  "$1" -XshowSettings:properties -version 2>&1 |
    awk -F'= ' '/java.specification.version/ && !seen++ { v = $2; sub(/^1\./, "", v); print v }'
}

# Kafka 4.x needs Java 17+; OpenSearch 2.19 is tested on 17 and 21. Prefer JAVA_HOME, then `java` on
# PATH, then the JDKs under /usr/lib/jvm, taking the first whose major version is 17..21.
find_java() {
  [ -n "$JAVA" ] && return 0
  local t0 c m
  t0=$(now)
  local cands=()
  [ -n "${JAVA_HOME:-}" ] && cands+=("$JAVA_HOME/bin/java")
  have java && cands+=("$(command -v java)")
  for c in $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -V); do cands+=("${c%/}/bin/java"); done
  for c in "${cands[@]}"; do
    [ -x "$c" ] || continue
    m=$(java_major "$c" || true)
    if [[ "$m" =~ ^[0-9]+$ ]] && [ "$m" -ge 17 ] && [ "$m" -le 21 ]; then
      JAVA=$c
      break
    fi
  done
  if [ -z "$JAVA" ]; then
    apt_install openjdk-17-jre-headless
    JAVA=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
    [ -x "$JAVA" ] || JAVA=$(ls /usr/lib/jvm/java-17-openjdk-*/bin/java | head -n1)
  fi
  JAVA_HOME_SEL=$(cd "$(dirname "$(readlink -f "$JAVA")")/.." && pwd)
  line java "$t0" "$JAVA_HOME_SEL (Java $(java_major "$JAVA"))"
}

# classpath NAME: resolve the runtime classpath of scripts/deps/NAME/pom.xml into .deps/NAME/classpath.txt
# (jars in ~/.m2). Re-resolves only when the pom changed or a jar went missing.
classpath() {
  local name=$1 pom="$DEPS_SRC/$1/pom.xml" out="$STATE/$1/classpath.txt" t0 stale=0 jar
  if [ ! -s "$out" ] || [ "$pom" -nt "$out" ]; then
    stale=1
  else
    local jars=()
    IFS=: read -r -a jars <"$out" || true # the file has no final newline
    for jar in "${jars[@]}"; do [ -f "$jar" ] || { stale=1; break; }; done
  fi
  [ "$stale" = 1 ] || return 0
  have mvn || apt_install maven
  t0=$(now)
  # mvn runs on the selected JDK too.
  if ! JAVA_HOME="$JAVA_HOME_SEL" mvn -q -B -f "$pom" dependency:build-classpath \
    -Dmdep.outputFile="$out.tmp" -Dmdep.includeScope=runtime >"$STATE/$name/mvn.log" 2>&1; then
    rm -f "$out.tmp"
    die_log "$name" "$STATE/$name/mvn.log" "could not resolve the classpath from Maven Central"
  fi
  mv "$out.tmp" "$out"
  line "$name" "$t0" "classpath resolved into ~/.m2 ($(tr ':' '\n' <"$out" | wc -l) jars)"
}

# ---------------------------------------------------------------------------------------------- postgres

as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres "$@"
  fi
}

pg_ready() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q; }
# Password-less over TCP from loopback, never reading a ~/.pgpass that could hide a missing `trust`
# (libpq silently ignores a password file that does not exist).
NO_PGPASS="$STATE/postgres/no-such-pgpass"
pg_trusts() { PGPASSFILE=$NO_PGPASS PGCONNECT_TIMEOUT=3 psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
psql_tcp() { PGPASSFILE=$NO_PGPASS psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atq "$@"; }

postgres_up() {
  local t0 how ver hba
  t0=$(now)
  have pg_lsclusters || apt_install postgresql
  if pg_ready; then
    how="already running"
  else
    ver=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1 }' | sort -V | tail -n1)
    if [ -z "$ver" ]; then
      ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)
      [ -n "$ver" ] || die "postgres: no PostgreSQL installed under /usr/lib/postgresql"
      pg_createcluster "$ver" main >"$STATE/postgres/createcluster.log" 2>&1 ||
        die_log postgres "$STATE/postgres/createcluster.log" "pg_createcluster $ver main failed"
    fi
    # 9>&-: the server outlives this script and must not inherit its lock.
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start >"$STATE/postgres/start.log" 2>&1 9>&- ||
      die_log postgres "$STATE/postgres/start.log" "pg_ctlcluster $ver main start failed"
    for _ in $(seq 1 "$PG_WAIT"); do pg_ready && break; sleep 1; done
    pg_ready || die_log postgres "/var/log/postgresql/postgresql-$ver-main.log" "not ready after ${PG_WAIT}s"
    how="started cluster $ver/main"
  fi
  if ! pg_trusts; then
    hba=$(as_postgres psql -Atqc 'show hba_file') || die "postgres: cannot read hba_file as user postgres"
    if grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]' "$hba"; then
      sed -i -E 's#^([[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+)[^[:space:]]+#\1trust#' "$hba"
    else
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    as_postgres psql -Atqc 'select pg_reload_conf()' >/dev/null
    for _ in $(seq 1 20); do pg_trusts && break; sleep 0.25; done
    pg_trusts || die "postgres: password-less login on $PG_HOST still refused after editing $hba"
    how="$how, loopback set to trust"
  fi
  # The test suite runs packages in parallel, each with its own databases and pools; Debian's
  # default of 100 connections is too few for that. max_connections needs a restart.
  if [ "$(psql_tcp -c 'show max_connections')" -lt "$PG_MAX_CONNECTIONS" ]; then
    psql_tcp -c "alter system set max_connections = $PG_MAX_CONNECTIONS" >/dev/null
    ver=$(psql_tcp -c "select current_setting('server_version_num')::int / 10000")
    pg_ctlcluster --skip-systemctl-redirect "$ver" main restart >"$STATE/postgres/restart.log" 2>&1 9>&- ||
      die_log postgres "$STATE/postgres/restart.log" "pg_ctlcluster $ver main restart failed"
    for _ in $(seq 1 "$PG_WAIT"); do pg_ready && break; sleep 1; done
    how="$how, max_connections=$PG_MAX_CONNECTIONS"
  fi
  if [ -z "$(psql_tcp -c "select 1 from pg_database where datname = '$PG_DB'")" ]; then
    psql_tcp -c "create database $PG_DB" >/dev/null
    how="$how, created db $PG_DB"
  fi
  line postgres "$t0" "ready on $PG_HOST:$PG_PORT ($how)"
}

# ---------------------------------------------------------------------------------------------- kafka

KPROBE="$STATE/bin/kprobe"
kprobe_build() {
  [ -x "$KPROBE" ] && [ ! "$DEPS_SRC/kprobe/main.go" -nt "$KPROBE" ] && return 0
  have go || die "kafka: go is needed to build the probe scripts/deps/kprobe"
  local t0
  t0=$(now)
  mkdir -p "$STATE/bin"
  (cd "$REPO" && go build -o "$KPROBE.tmp" ./scripts/deps/kprobe) >"$STATE/kafka/kprobe-build.log" 2>&1 ||
    die_log kafka "$STATE/kafka/kprobe-build.log" "go build ./scripts/deps/kprobe failed"
  mv "$KPROBE.tmp" "$KPROBE"
  line kprobe "$t0" "built $KPROBE"
}
kafka_answers() { "$KPROBE" -q -b "$KAFKA_HOST:$KAFKA_PORT" -timeout 2s >/dev/null 2>&1; }

kafka_write_config() {
  local dir="$STATE/kafka"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/deps.sh: one combined broker+controller (KRaft), loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=12
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
EOF
}

kafka_up() {
  local dir="$STATE/kafka" log="$STATE/kafka/kafka.out" t0 pid how
  mkdir -p "$dir/logs"
  kprobe_build
  t0=$(now)
  if pid=$(pid_of kafka "$KAFKA_MAIN"); then
    how="running, pid $pid"
  elif kafka_answers; then
    line kafka "$t0" "reusing a broker on $KAFKA_HOST:$KAFKA_PORT not started by deps.sh"
    return 0
  else
    tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is taken by something that does not answer Kafka metadata"
    tcp_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT" && die "kafka: controller port $KAFKA_CONTROLLER_PORT is taken"
    find_java
    classpath kafka
    t0=$(now)
    kafka_write_config
    local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
      "-Dlog4j2.configurationFile=$DEPS_SRC/kafka/log4j2.properties" "-Dkafka.logs.dir=$dir/logs")
    if [ ! -f "$dir/data/meta.properties" ]; then
      "$JAVA" "${jvm[@]}" -cp "$(cat "$dir/classpath.txt")" kafka.tools.StorageTool format \
        -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
        die_log kafka "$dir/format.log" "formatting the storage failed"
      how="formatted $dir/data, "
    fi
    launch kafka "$log" "$JAVA" "${jvm[@]}" -cp "$(cat "$dir/classpath.txt")" "$KAFKA_MAIN" "$dir/server.properties"
    pid=$(cat "$dir/kafka.pid")
    how="${how:-}started pid $pid"
  fi
  for _ in $(seq 1 $((KAFKA_WAIT * 2))); do
    kafka_answers && break
    alive "$pid" || { rm -f "$dir/kafka.pid"; die_log kafka "$dir/logs/server.log" "process $pid exited (stdout/stderr: $log)"; }
    sleep 0.5
  done
  kafka_answers || die_log kafka "$dir/logs/server.log" "no metadata on $KAFKA_HOST:$KAFKA_PORT after ${KAFKA_WAIT}s (pid $pid still running)"
  line kafka "$t0" "metadata ok on $KAFKA_HOST:$KAFKA_PORT ($how)"
}

# ---------------------------------------------------------------------------------------------- opensearch

os_health() { curl -s --max-time 3 "http://$OS_HOST:$OS_PORT/_cluster/health" 2>/dev/null || true; }
os_answers() { os_health | grep -Eq '"status":"(green|yellow)"'; }

os_write_config() {
  local conf="$STATE/opensearch/base/node_1/config"
  mkdir -p "$conf"
  # The runner copies its own (all-comment) opensearch.yml only when none exists, and lays its
  # command-line settings (cluster name, node name, http.port, roles) over this file.
  cat >"$conf/opensearch.yml" <<EOF
# Generated by scripts/deps.sh.
network.host: $OS_HOST
transport.port: $OS_TRANSPORT_PORT-9400
discovery.type: single-node
# Writes to a missing index (or to an alias that does not exist yet) fail instead of silently
# creating an index with a dynamic mapping: the service must create its indices explicitly.
action.auto_create_index: false
# A developer disk that is 90% full must not turn the cluster red.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
}

opensearch_up() {
  local dir="$STATE/opensearch" log="$STATE/opensearch/opensearch.out" t0 pid how
  mkdir -p "$dir"
  t0=$(now)
  if pid=$(pid_of opensearch "$OS_MAIN"); then
    how="running, pid $pid"
  elif os_answers; then
    line opensearch "$t0" "reusing a server on http://$OS_HOST:$OS_PORT not started by deps.sh"
    return 0
  else
    # The runner silently moves to the next free port when 9200 is taken: refuse instead.
    tcp_open "$OS_HOST" "$OS_PORT" && die "opensearch: port $OS_PORT is taken by something that is not a healthy cluster"
    find_java
    classpath opensearch
    t0=$(now)
    os_write_config
    launch opensearch "$log" "$JAVA" -Xms512m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
      -Dfile.encoding=UTF-8 -Djna.nosys=true -XX:-OmitStackTraceInFastThrow \
      -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
      -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
      -cp "$(cat "$dir/classpath.txt")" "$OS_MAIN" \
      -basePath "$dir/base" -numOfNode 1 -clusterName "$OS_CLUSTER" -baseHttpPort $((OS_PORT - 1)) -printOnFailure
    pid=$(cat "$dir/opensearch.pid")
    how="started pid $pid"
  fi
  for _ in $(seq 1 $((OS_WAIT * 2))); do
    os_answers && break
    alive "$pid" || { rm -f "$dir/opensearch.pid"; die_log opensearch "$log" "process $pid exited"; }
    sleep 0.5
  done
  os_answers || die_log opensearch "$log" "cluster not yellow/green on $OS_PORT after ${OS_WAIT}s (pid $pid still running)"
  local st
  st=$(os_health | sed -E 's/.*"status":"([a-z]+)".*/\1/')
  line opensearch "$t0" "$st on http://$OS_HOST:$OS_PORT ($how)"
}

# ---------------------------------------------------------------------------------------------- commands

lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 900 9 || die "another scripts/deps.sh is still running (lock $STATE/.lock)"
}

ALL_SERVERS=(postgres kafka opensearch)

# select_servers NAME...: sets SELECTED to the servers named (default: all), checked.
SELECTED=()
select_servers() {
  [ $# -gt 0 ] || set -- "${ALL_SERVERS[@]}"
  local n
  for n in "$@"; do
    case "$n" in
      postgres | kafka | opensearch) SELECTED+=("$n") ;;
      *) die "unknown server '$n' (known: ${ALL_SERVERS[*]})" ;;
    esac
  done
}

cmd_up() {
  local t0 n
  select_servers "$@"
  lock
  t0=$(now)
  mkdir -p "$STATE/postgres" "$STATE/kafka" "$STATE/opensearch"
  for n in "${SELECTED[@]}"; do "${n}_up"; done
  line all "$t0" "up; logs in $STATE; env: scripts/deps.sh env"
}

stop_one() { # NAME MAINCLASS
  local name=$1 t0 pid
  t0=$(now)
  if ! pid=$(pid_of "$name" "$2"); then
    note "$name" "not running (no live PID in $STATE/$name)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((STOP_WAIT * 10))); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    line "$name" "$t0" "killed pid $pid (no exit ${STOP_WAIT}s after TERM)"
  else
    line "$name" "$t0" "stopped pid $pid"
  fi
  rm -f "$STATE/$name/$name.pid"
}

cmd_stop() {
  local n
  select_servers "$@"
  lock
  # OpenSearch first: it is the slowest to stop and nothing depends on it here.
  for n in opensearch kafka postgres; do
    [[ " ${SELECTED[*]} " == *" $n "* ]] || continue
    case "$n" in
      opensearch) stop_one opensearch "$OS_MAIN" ;;
      kafka) stop_one kafka "$KAFKA_MAIN" ;;
      postgres) note postgres "left running (stop it with: pg_ctlcluster <version> main stop)" ;;
    esac
  done
}

cmd_status() {
  local down=0 pid h
  if have pg_isready && pg_ready; then
    note postgres "up      $PG_HOST:$PG_PORT"
  else
    note postgres "down    $PG_HOST:$PG_PORT"
    down=1
  fi

  pid=$(pid_of kafka "$KAFKA_MAIN" || true)
  local kp="" kout=""
  if [ -x "$KPROBE" ]; then
    kout=$("$KPROBE" -b "$KAFKA_HOST:$KAFKA_PORT" -timeout 2s 2>/dev/null) && kp=ok
  else
    tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && kp=port && kout="port open (probe not built yet)"
  fi
  if [ -n "$pid" ] && [ -n "$kp" ]; then
    note kafka "up      $KAFKA_HOST:$KAFKA_PORT pid $pid $kout"
  elif [ -n "$pid" ]; then
    note kafka "starting/unhealthy: pid $pid alive, no metadata on $KAFKA_HOST:$KAFKA_PORT"
    down=1
  elif [ -n "$kp" ]; then
    note kafka "up      $KAFKA_HOST:$KAFKA_PORT (not started by deps.sh) $kout"
  else
    note kafka "down    $KAFKA_HOST:$KAFKA_PORT"
    down=1
  fi

  pid=$(pid_of opensearch "$OS_MAIN" || true)
  h=$(os_health | sed -nE 's/.*"status":"([a-z]+)".*/\1/p')
  if [ -n "$pid" ] && [ -n "$h" ]; then
    note opensearch "up      http://$OS_HOST:$OS_PORT pid $pid status=$h"
  elif [ -n "$pid" ]; then
    note opensearch "starting/unhealthy: pid $pid alive, no cluster health on $OS_PORT"
    down=1
  elif [ -n "$h" ]; then
    note opensearch "up      http://$OS_HOST:$OS_PORT (not started by deps.sh) status=$h"
  else
    note opensearch "down    http://$OS_HOST:$OS_PORT"
    down=1
  fi
  return "$down"
}

cmd_env() {
  cat <<EOF
export DATABASE_URL=postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB?sslmode=disable
export KAFKA_BROKERS=$KAFKA_HOST:$KAFKA_PORT
export ELASTICSEARCH_URL=http://$OS_HOST:$OS_PORT
export ELASTICSEARCH_COMPAT=opensearch
EOF
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) cmd_up "$@" ;;
  stop) cmd_stop "$@" ;;
  env) cmd_env ;;
  status) cmd_status || exit $? ;;
  *)
    echo "usage: $0 up|stop [postgres|kafka|opensearch ...] | env | status" >&2
    exit 2
    ;;
esac
