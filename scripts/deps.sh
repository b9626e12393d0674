#!/usr/bin/env bash
# scripts/deps.sh: real servers for tests and local runs, nothing downloaded into the repo.
#
#   scripts/deps.sh up       start (or reuse) PostgreSQL 5432, Kafka 9094, OpenSearch 9200; wait until they answer
#   scripts/deps.sh stop     stop the Kafka and OpenSearch processes this script started (PostgreSQL is left running)
#   (up and stop take optional server names, e.g. `scripts/deps.sh up postgres`; default: all)
#   scripts/deps.sh env      print `export NAME=value` lines for the service and the tests
#   scripts/deps.sh status   print each server's state (exit 1 if one is down)
#   scripts/deps.sh jvm kafka|opensearch   print the Java binary and the server's classpath (one per line),
#                            resolving them as `up` does, for tests that start a server of their own
#
#   --cluster (after up, stop, env or status): the same for the cluster mode instead, three Kafka
#   brokers (RF 3, min ISR 2) on 29092-29094 and three OpenSearch nodes on 29200-29202, each in its
#   own process (PostgreSQL is the same in both modes). One member at a time:
#   scripts/deps.sh cluster kill|stop|start|restart|pid NAME...   (NAME: kafka-1..3, search-1..3)
#   scripts/deps.sh cluster status
#
# PostgreSQL comes from apt (Debian's cluster). The script changes the configuration of a cluster
# it did not create only with consent (DEPS_PG_ALLOW_CHANGES=1, CI=true, or a yes on a terminal),
# and prints every change first; see scripts/deps/postgres.sh. Kafka and OpenSearch run on the JVM
# from jars that Maven resolves into its local repository (~/.m2) from the poms under scripts/deps/.
# State (logs, PID files, data, resolved classpaths) lives under $REPO/.deps/, which git ignores.
set -Eeuo pipefail
# An unexpected failure must never end the script silently.
trap 'printf "deps: ERROR unexpected failure (exit %s) at scripts/deps.sh line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STATE="$REPO/.deps"
DEPS_SRC="$SCRIPT_DIR/deps"

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
# die2 MESSAGE: bad usage or configuration (exit 2).
die2() {
  printf 'deps: ERROR %s\n' "$*" >&2
  exit 2
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

# pid_in PIDFILE MATCH: prints the PID recorded in PIDFILE if that process is alive and is really
# ours (its command line contains MATCH); removes a stale PID file.
pid_in() {
  local f=$1 pid
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

# pid_of NAME MAINCLASS: the PID of the single-node server NAME (see pid_in).
pid_of() { pid_in "$STATE/$1/$1.pid" "$2"; }

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# launch PIDFILE LOGFILE CMD...: start CMD detached (own session, survives this shell and make), record its PID.
launch() {
  local pidfile=$1 log=$2
  shift 2
  rm -f "$pidfile"
  # The inner shell writes its own PID, then execs the JVM: the PID file names the JVM itself.
  # It closes every inherited descriptor above 2 first: neither this script's lock (fd 9) nor a
  # caller's pipe may stay open in a server that outlives us.
  # shellcheck disable=SC2016 # expanded by the inner shell
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
  [ -s "$pidfile" ] || die_log "$(basename "$pidfile" .pid)" "$log" "process did not start"
}

# stop_pid NAME PIDFILE PID: TERM, wait up to STOP_WAIT seconds, then KILL; removes PIDFILE.
stop_pid() {
  local name=$1 pidfile=$2 pid=$3 t0
  t0=$(now)
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
  rm -f "$pidfile"
}

# rss PID: the resident memory of PID in MiB, for status lines.
rss() { awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || true; }

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
  while read -r c; do cands+=("$c/bin/java"); done < <(find /usr/lib/jvm -mindepth 1 -maxdepth 1 2>/dev/null | sort -V)
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
    [ -x "$JAVA" ] || JAVA=$(find /usr/lib/jvm -mindepth 3 -maxdepth 3 -path '/usr/lib/jvm/java-17-openjdk-*/bin/java' | head -n1)
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

# PostgreSQL (scripts/deps/postgres.sh) and the cluster mode (scripts/deps/cluster.sh) use the helpers above.
# shellcheck source=scripts/deps/postgres.sh
. "$DEPS_SRC/postgres.sh"

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

# kafka_write_config FILE NODE_ID BROKER_PORT CONTROLLER_PORT VOTERS RF MIN_ISR DATA_DIR: a combined
# broker and controller (KRaft) on loopback. RF and MIN_ISR apply to every topic the brokers
# create, auto-created and internal ones included, so a client never meets a weaker topic than
# the cluster promises.
kafka_write_config() {
  local file=$1 id=$2 port=$3 cport=$4 voters=$5 rf=$6 minisr=$7 data=$8
  cat >"$file" <<EOF
# Generated by scripts/deps.sh: a combined broker+controller (KRaft), loopback only.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$KAFKA_HOST:$port,CONTROLLER://$KAFKA_HOST:$cport
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
auto.create.topics.enable=true
num.partitions=12
default.replication.factor=$rf
min.insync.replicas=$minisr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$minisr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$minisr
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
EOF
}

# kafka_start NAME DIR CLUSTER_ID: starts the broker configured in DIR/server.properties (write it
# first), formatting DIR/data with CLUSTER_ID the first time. Its PID goes to DIR/NAME.pid, its
# stdout to DIR/NAME.out and its log to DIR/logs/server.log. Sets STARTED to what it did.
kafka_start() {
  local name=$1 dir=$2 cid=$3 cp
  find_java
  classpath kafka
  mkdir -p "$dir/logs"
  cp=$(cat "$STATE/kafka/classpath.txt")
  local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$DEPS_SRC/kafka/log4j2.properties" "-Dkafka.logs.dir=$dir/logs")
  STARTED=""
  if [ ! -f "$dir/data/meta.properties" ]; then
    "$JAVA" "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
      -t "$cid" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
      die_log "$name" "$dir/format.log" "formatting the storage failed"
    STARTED="formatted $dir/data, "
  fi
  launch "$dir/$name.pid" "$dir/$name.out" "$JAVA" "${jvm[@]}" -cp "$cp" "$KAFKA_MAIN" "$dir/server.properties"
  STARTED="${STARTED}started pid $(cat "$dir/$name.pid")"
}

kafka_up() {
  local dir="$STATE/kafka" t0 pid how
  mkdir -p "$dir"
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
    kafka_write_config "$dir/server.properties" 1 "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" \
      "1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" 1 1 "$dir/data"
    kafka_start kafka "$dir" "$KAFKA_CLUSTER_ID"
    how=$STARTED
    pid=$(cat "$dir/kafka.pid")
  fi
  for _ in $(seq 1 $((KAFKA_WAIT * 2))); do
    kafka_answers && break
    alive "$pid" || { rm -f "$dir/kafka.pid"; die_log kafka "$dir/logs/server.log" "process $pid exited (stdout/stderr: $dir/kafka.out)"; }
    sleep 0.5
  done
  kafka_answers || die_log kafka "$dir/logs/server.log" "no metadata on $KAFKA_HOST:$KAFKA_PORT after ${KAFKA_WAIT}s (pid $pid still running)"
  line kafka "$t0" "metadata ok on $KAFKA_HOST:$KAFKA_PORT ($how)"
}

# ---------------------------------------------------------------------------------------------- opensearch

os_health() { curl -s --max-time 3 "http://$OS_HOST:$OS_PORT/_cluster/health" 2>/dev/null || true; }
os_answers() { os_health | grep -Eq '"status":"(green|yellow)"'; }

# os_write_config CONF_DIR TRANSPORT_PORT DISCOVERY_YAML: the node's opensearch.yml. The runner
# copies its own (all-comment) opensearch.yml only when none exists, and lays its command-line
# settings (cluster name, node name, http.port, roles) over this file.
os_write_config() {
  mkdir -p "$1"
  cat >"$1/opensearch.yml" <<EOF
# Generated by scripts/deps.sh.
network.host: $OS_HOST
transport.port: $2
$3
# Writes to a missing index (or to an alias that does not exist yet) fail instead of silently
# creating an index with a dynamic mapping: the service must create its indices explicitly.
action.auto_create_index: false
# A developer disk that is 90% full must not turn the cluster red.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
}

# os_start NAME DIR CLASSPATH_PREFIX JVM_ARG... MAIN ARG...: starts an OpenSearch JVM (the runner's
# jars on the class path, after CLASSPATH_PREFIX if not empty). Its PID goes to DIR/NAME.pid and
# its log to DIR/NAME.out.
os_start() {
  local name=$1 dir=$2 cp
  find_java
  classpath opensearch
  cp=$(cat "$STATE/opensearch/classpath.txt")
  [ -z "$3" ] || cp="$3:$cp"
  shift 3
  launch "$dir/$name.pid" "$dir/$name.out" "$JAVA" -XX:+UseG1GC \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true -XX:-OmitStackTraceInFastThrow \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -cp "$cp" "$@"
}

opensearch_up() {
  local dir="$STATE/opensearch" t0 pid how
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
    os_write_config "$dir/base/node_1/config" "$OS_TRANSPORT_PORT-9400" "discovery.type: single-node"
    os_start opensearch "$dir" "" -Xms512m -Xmx1g "$OS_MAIN" \
      -basePath "$dir/base" -numOfNode 1 -clusterName "$OS_CLUSTER" -baseHttpPort $((OS_PORT - 1)) -printOnFailure
    pid=$(cat "$dir/opensearch.pid")
    how="started pid $pid"
  fi
  for _ in $(seq 1 $((OS_WAIT * 2))); do
    os_answers && break
    alive "$pid" || { rm -f "$dir/opensearch.pid"; die_log opensearch "$dir/opensearch.out" "process $pid exited"; }
    sleep 0.5
  done
  os_answers || die_log opensearch "$dir/opensearch.out" "cluster not yellow/green on $OS_PORT after ${OS_WAIT}s (pid $pid still running)"
  local st
  st=$(os_health | sed -E 's/.*"status":"([a-z]+)".*/\1/')
  line opensearch "$t0" "$st on http://$OS_HOST:$OS_PORT ($how)"
}

# shellcheck source=scripts/deps/cluster.sh
. "$DEPS_SRC/cluster.sh"

# ---------------------------------------------------------------------------------------------- commands

lock() {
  mkdir -p "$STATE/postgres" "$STATE/kafka" "$STATE/opensearch" "$STATE/cluster"
  exec 9>"$STATE/.lock"
  flock -w 900 9 || die "another scripts/deps.sh is still running (lock $STATE/.lock)"
}

usage() {
  cat >&2 <<EOF
usage: scripts/deps.sh up|stop [--cluster] [postgres|kafka|opensearch ...]
       scripts/deps.sh env|status [--cluster]
       scripts/deps.sh jvm kafka|opensearch
       scripts/deps.sh cluster kill|stop|start|restart|pid NAME...   (NAME: ${CL_MEMBERS[*]})
       scripts/deps.sh cluster status
EOF
  [ $# -eq 0 ] || die2 "$*"
  exit 2
}

ALL_SERVERS=(postgres kafka opensearch)

# parse_args ARG...: sets CLUSTER (--cluster given) and SELECTED (the servers named, default all).
CLUSTER=0
SELECTED=()
parse_args() {
  local n
  for n in "$@"; do
    case "$n" in
      --cluster) CLUSTER=1 ;;
      postgres | kafka | opensearch) SELECTED+=("$n") ;;
      *) usage "unknown server '$n' (known: ${ALL_SERVERS[*]})" ;;
    esac
  done
  [ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${ALL_SERVERS[@]}")
}
selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

cmd_up() {
  local t0 n
  parse_args "$@"
  lock
  t0=$(now)
  if [ "$CLUSTER" = 1 ]; then
    cluster_up
    line all "$t0" "cluster up; logs in $STATE/cluster; env: scripts/deps.sh env --cluster"
    return 0
  fi
  for n in "${SELECTED[@]}"; do "${n}_up"; done
  line all "$t0" "up; logs in $STATE; env: scripts/deps.sh env"
}

stop_one() { # NAME MAINCLASS
  local pid
  if ! pid=$(pid_of "$1" "$2"); then
    note "$1" "not running (no live PID in $STATE/$1)"
    return 0
  fi
  stop_pid "$1" "$STATE/$1/$1.pid" "$pid"
}

cmd_stop() {
  local n
  parse_args "$@"
  lock
  if [ "$CLUSTER" = 1 ]; then
    cluster_stop_all
    return 0
  fi
  # OpenSearch first: it is the slowest to stop and nothing depends on it here.
  for n in opensearch kafka postgres; do
    selected "$n" || continue
    case "$n" in
      opensearch) stop_one opensearch "$OS_MAIN" ;;
      kafka) stop_one kafka "$KAFKA_MAIN" ;;
      postgres) postgres_stop_hint ;;
    esac
  done
}

cmd_status() {
  local down=0 pid h
  postgres_status || down=1
  if [ "$CLUSTER" = 1 ]; then
    cluster_status || down=1
    return "$down"
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

# cmd_jvm NAME: the Java binary and the runtime classpath of scripts/deps/NAME/pom.xml, one per line on
# stdout (progress goes to stderr). Tests that start a broker of their own (a SASL_SSL listener, say) use
# the same jars as `up`, on a clean CI machine as on a laptop.
cmd_jvm() {
  case "${1:-}" in
    kafka | opensearch) ;;
    *) usage "jvm needs kafka or opensearch" ;;
  esac
  lock
  {
    find_java
    classpath "$1"
  } >&2
  printf '%s\n%s\n' "$JAVA" "$(cat "$STATE/$1/classpath.txt")"
}

cmd_env() {
  postgres_env
  if [ "$CLUSTER" = 1 ]; then
    cluster_env
  else
    cat <<EOF
export KAFKA_BROKERS=$KAFKA_HOST:$KAFKA_PORT
export ELASTICSEARCH_URL=http://$OS_HOST:$OS_PORT
EOF
  fi
  echo "export ELASTICSEARCH_COMPAT=opensearch"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) cmd_up "$@" ;;
  stop) cmd_stop "$@" ;;
  env)
    parse_args "$@"
    cmd_env
    ;;
  status)
    parse_args "$@"
    cmd_status || exit $?
    ;;
  cluster) cmd_cluster "$@" ;;
  jvm) cmd_jvm "$@" ;;
  *) usage ;;
esac
