# shellcheck shell=bash
# scripts/deps/cluster.sh: the cluster mode of scripts/deps.sh, sourced by it (not run).
#
# Three Apache Kafka brokers and three OpenSearch nodes on loopback, each in a JVM of its own, so
# that a drill can SIGKILL exactly one member and start it again:
#
#   member    what                                        ports                                state
#   kafka-N   broker+controller, node.id N, 1 of 3 voters  broker 29091+N, controller 29191+N   .deps/cluster/kafka-N/
#   search-N  OpenSearch node "search-N" (manager+data)    HTTP 29199+N, transport 29299+N      .deps/cluster/search-N/
#
# Kafka: every topic the brokers create (auto-created and internal ones included) gets replication
# factor 3 and min.insync.replicas 2, so one broker can be down while acks=all writes go on.
# OpenSearch: three cluster-manager-eligible data nodes, so one can die without losing the quorum;
# an index gets OpenSearch's default of one replica per shard, so it keeps every shard too.
# PostgreSQL is the same server in both modes (scripts/deps/postgres.sh).

CL_DIR="$STATE/cluster"
# base64url of "catalog-cluster!": a fixed id, so a member whose data was deleted formats into the same cluster.
CL_KAFKA_CLUSTER_ID=Y2F0YWxvZy1jbHVzdGVyIQ
CL_OS_CLUSTER=catalog-deps-cluster
CL_SIZE=3
CL_MIN_ISR=2
CL_MEMBERS=(kafka-1 kafka-2 kafka-3 search-1 search-2 search-3)
# The Kafka topic and OpenSearch index that readiness is checked on: created with the cluster's
# defaults, they show that those defaults (RF 3, one replica) are really in effect.
CL_PROBE_TOPIC=_deps_probe
CL_PROBE_INDEX=deps-probe
CL_SEARCH_HEAP=${DEPS_CLUSTER_SEARCH_HEAP:-512m}
# Seconds to wait for the cluster to be ready after starting members.
CL_WAIT=${DEPS_CLUSTER_WAIT:-300}
SEARCH_NODE_SRC="$DEPS_SRC/opensearch/SearchNode.java"
SEARCH_NODE_CLASSES="$CL_DIR/classes"

cl_kafka_port() { echo $((29091 + $1)); }
cl_kafka_cport() { echo $((29191 + $1)); }
cl_search_port() { echo $((29199 + $1)); }
cl_search_tport() { echo $((29299 + $1)); }

# cl_list FORMAT: the members' addresses, comma-separated; FORMAT gets the member number.
cl_list() {
  local i out=()
  for i in $(seq 1 "$CL_SIZE"); do out+=("$(eval "$1")"); done
  (IFS=,; echo "${out[*]}")
}
# shellcheck disable=SC2016 # expanded by cl_list
cl_brokers() { cl_list 'echo "$KAFKA_HOST:$(cl_kafka_port "$i")"'; }
# shellcheck disable=SC2016
cl_voters() { cl_list 'echo "$i@$KAFKA_HOST:$(cl_kafka_cport "$i")"'; }
# shellcheck disable=SC2016
cl_search_urls() { cl_list 'echo "http://$OS_HOST:$(cl_search_port "$i")"'; }
# shellcheck disable=SC2016
cl_transports() { cl_list 'echo "\"$OS_HOST:$(cl_search_tport "$i")\""'; }

# cl_member NAME: checks NAME and sets M_NAME, M_KIND (kafka|search), M_ID, M_DIR, M_MATCH (what
# the member's command line contains), M_PORTS and M_ADDR (for output).
cl_member() {
  case "$1" in
    kafka-[1-3]) M_KIND=kafka ;;
    search-[1-3]) M_KIND=search ;;
    *) usage "unknown cluster member '$1' (known: ${CL_MEMBERS[*]})" ;;
  esac
  M_NAME=$1
  M_ID=${1#*-}
  M_DIR="$CL_DIR/$1"
  if [ "$M_KIND" = kafka ]; then
    M_MATCH="$M_DIR/server.properties"
    M_PORTS="$(cl_kafka_port "$M_ID") $(cl_kafka_cport "$M_ID")"
    M_ADDR="broker $KAFKA_HOST:$(cl_kafka_port "$M_ID"), controller :$(cl_kafka_cport "$M_ID")"
  else
    M_MATCH="$M_DIR/base"
    M_PORTS="$(cl_search_port "$M_ID") $(cl_search_tport "$M_ID")"
    M_ADDR="http://$OS_HOST:$(cl_search_port "$M_ID"), transport :$(cl_search_tport "$M_ID")"
  fi
}
# cl_pid: the live PID of the member set by cl_member.
cl_pid() { pid_in "$M_DIR/$M_NAME.pid" "$M_MATCH"; }

# search_node_build: compiles SearchNode.java (the one-node-per-JVM launcher) when it changed.
search_node_build() {
  local cls="$SEARCH_NODE_CLASSES/SearchNode.class" javac t0
  [ -f "$cls" ] && [ ! "$SEARCH_NODE_SRC" -nt "$cls" ] && return 0
  find_java
  classpath opensearch
  javac="$JAVA_HOME_SEL/bin/javac"
  [ -x "$javac" ] || apt_install "openjdk-$(java_major "$JAVA")-jdk-headless"
  [ -x "$javac" ] || die "search: no javac next to $JAVA to compile $SEARCH_NODE_SRC"
  t0=$(now)
  mkdir -p "$SEARCH_NODE_CLASSES"
  "$javac" -nowarn -d "$SEARCH_NODE_CLASSES" -cp "$(cat "$STATE/opensearch/classpath.txt")" "$SEARCH_NODE_SRC" \
    >"$CL_DIR/javac.log" 2>&1 || die_log search "$CL_DIR/javac.log" "javac $SEARCH_NODE_SRC failed"
  line search "$t0" "compiled $SEARCH_NODE_SRC"
}

# The members this command started (cl_start), whose return the waits check one by one.
STARTED_MEMBERS=()

# cl_start NAME: starts the member unless it runs; does not wait for it.
cl_start() {
  local pid p
  cl_member "$1"
  if pid=$(cl_pid); then
    note "$M_NAME" "running, pid $pid ($M_ADDR)"
    return 0
  fi
  for p in $M_PORTS; do
    tcp_open 127.0.0.1 "$p" && die "$M_NAME: port $p is taken by a process that is not $M_NAME (no live PID in $M_DIR)"
  done
  mkdir -p "$M_DIR"
  if [ "$M_KIND" = kafka ]; then
    kafka_write_config "$M_DIR/server.properties" "$M_ID" "$(cl_kafka_port "$M_ID")" "$(cl_kafka_cport "$M_ID")" \
      "$(cl_voters)" "$CL_SIZE" "$CL_MIN_ISR" "$M_DIR/data"
    kafka_start "$M_NAME" "$M_DIR" "$CL_KAFKA_CLUSTER_ID"
  else
    search_node_build
    # Bootstrapping names the first voting nodes by transport address: every JVM's runner would
    # otherwise call its node "Node 1" before SearchNode renames it, and addresses are what is fixed.
    os_write_config "$M_DIR/base/node_1/config" "$(cl_search_tport "$M_ID")" "node.attr.deps_member: $M_NAME
discovery.seed_hosts: [$(cl_transports)]
cluster.initial_cluster_manager_nodes: [$(cl_transports)]"
    os_start "$M_NAME" "$M_DIR" "$SEARCH_NODE_CLASSES" "-Xms$CL_SEARCH_HEAP" "-Xmx$CL_SEARCH_HEAP" "-Ddeps.node.name=$M_NAME" SearchNode \
      -basePath "$M_DIR/base" -numOfNode 1 -clusterName "$CL_OS_CLUSTER" \
      -baseHttpPort $(($(cl_search_port "$M_ID") - 1)) -printOnFailure
    STARTED="started pid $(cat "$M_DIR/$M_NAME.pid")"
  fi
  STARTED_MEMBERS+=("$M_NAME")
  note "$M_NAME" "$STARTED ($M_ADDR)"
}

# cl_check_alive KIND: dies, with the end of its log, when a started member of KIND has exited.
cl_check_alive() {
  local n
  for n in "${CL_MEMBERS[@]}"; do
    [[ "$n" == "$1"-* ]] || continue
    cl_member "$n"
    [ -f "$M_DIR/$M_NAME.pid" ] || continue
    cl_pid >/dev/null && continue
    if [ "$M_KIND" = kafka ]; then
      die_log "$M_NAME" "$M_DIR/logs/server.log" "process exited (stdout/stderr: $M_DIR/$M_NAME.out)"
    else
      die_log "$M_NAME" "$M_DIR/$M_NAME.out" "process exited"
    fi
  done
}

# cl_kafka_probe: one probe of the whole Kafka cluster; prints its summary or its error.
cl_kafka_probe() {
  "$KPROBE" -b "$(cl_brokers)" -brokers "$CL_SIZE" -topic "$CL_PROBE_TOPIC" -isr "$CL_SIZE" -min-isr "$CL_MIN_ISR" -no-urp -timeout 3s 2>&1
}

# cl_kafka_wait: until every broker started by this command serves metadata itself, every broker
# is registered, each partition of the probe topic (created with the brokers' defaults) has 3
# replicas, all in sync, and no partition of any topic is under-replicated (a restarted broker
# has caught up).
cl_kafka_wait() {
  local t0 res="" n ok
  t0=$(now)
  for _ in $(seq 1 $((CL_WAIT * 2))); do
    ok=1
    for n in "${STARTED_MEMBERS[@]}"; do
      [[ "$n" == kafka-* ]] || continue
      cl_member "$n"
      res=$("$KPROBE" -b "$KAFKA_HOST:$(cl_kafka_port "$M_ID")" -timeout 2s 2>&1) || { ok=0; break; }
    done
    if [ "$ok" = 1 ] && res=$(cl_kafka_probe); then
      line kafka "$t0" "ready: $res"
      return 0
    fi
    cl_check_alive kafka
    sleep 0.5
  done
  die "kafka: cluster not ready after ${CL_WAIT}s: $res (logs: $CL_DIR/kafka-*/logs/server.log)"
}

# cl_search_get PATH: GET PATH from the first search node that answers; fails when none does.
cl_search_get() {
  local i
  for i in $(seq 1 "$CL_SIZE"); do
    curl -sf --max-time 5 "http://$OS_HOST:$(cl_search_port "$i")$1" 2>/dev/null && return 0
  done
  return 1
}

# json_field NAME: the value of a top-level scalar field of the JSON object on stdin.
json_field() { sed -nE 's/.*"'"$1"'":"?([^",}]*)"?[,}].*/\1/p'; }

# cl_search_green PORT: the node on PORT sees all nodes and a green cluster (sets H to its health).
cl_search_green() {
  H=$(curl -sf --max-time 5 "http://$OS_HOST:$1/_cluster/health?wait_for_nodes=$CL_SIZE&wait_for_status=green&timeout=2s" 2>/dev/null) &&
    [ "$(json_field number_of_nodes <<<"$H")" = "$CL_SIZE" ] && [ "$(json_field status <<<"$H")" = green ]
}

# cl_search_wait: until each node started by this command (or, if none, any node) sees all nodes
# and green health, with the probe index created with the cluster's default replica count: green
# means every replica is assigned.
cl_search_wait() {
  local t0 n i ports=() p ok
  t0=$(now)
  for n in "${STARTED_MEMBERS[@]}"; do
    [[ "$n" == search-* ]] || continue
    cl_member "$n"
    ports+=("$(cl_search_port "$M_ID")")
  done
  H=""
  for _ in $(seq 1 $((CL_WAIT * 2))); do
    ok=1
    if [ ${#ports[@]} -gt 0 ]; then
      for p in "${ports[@]}"; do cl_search_green "$p" || { ok=0; break; }; done
    else
      ok=0
      for i in $(seq 1 "$CL_SIZE"); do cl_search_green "$(cl_search_port "$i")" && { ok=1; break; }; done
    fi
    if [ "$ok" = 1 ] && ! cl_search_get "/$CL_PROBE_INDEX" >/dev/null; then
      for i in $(seq 1 "$CL_SIZE"); do
        curl -sf --max-time 10 -X PUT "http://$OS_HOST:$(cl_search_port "$i")/$CL_PROBE_INDEX" >/dev/null 2>&1 && break
      done
    elif [ "$ok" = 1 ]; then
      line search "$t0" "ready: green, $CL_SIZE nodes, $(cl_search_shards)"
      return 0
    fi
    cl_check_alive search
    sleep 0.5
  done
  die "search: cluster not green with $CL_SIZE nodes after ${CL_WAIT}s: ${H:-no node answers} (logs: $CL_DIR/search-*/search-*.out)"
}

# cl_search_shards: where the probe index's shard copies are, e.g. "deps-probe p@search-1 r@search-3".
cl_search_shards() {
  printf '%s' "$CL_PROBE_INDEX"
  cl_search_get "/_cat/shards/$CL_PROBE_INDEX?h=prirep,state,node" | awk '{ printf " %s@%s", $1, ($2 == "STARTED" ? $3 : $2) }'
}

# cl_wait KIND...: waits for the kinds named (kafka, search), in that order.
cl_wait() {
  [[ " $* " != *" kafka "* ]] || cl_kafka_wait
  [[ " $* " != *" search "* ]] || cl_search_wait
}

cluster_up() {
  local n kinds=()
  if selected postgres; then postgres_up; fi
  mkdir -p "$CL_DIR"
  if selected kafka; then
    kprobe_build
    for n in kafka-1 kafka-2 kafka-3; do cl_start "$n"; done
    kinds+=(kafka)
  fi
  if selected opensearch; then
    for n in search-1 search-2 search-3; do cl_start "$n"; done
    kinds+=(search)
  fi
  cl_wait "${kinds[@]}"
}

# cl_kill NAME: SIGKILL, as a crash would; returns once the process is gone.
cl_kill() {
  local pid t0
  cl_member "$1"
  t0=$(now)
  if ! pid=$(cl_pid); then
    note "$M_NAME" "not running (no live PID in $M_DIR)"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && die "$M_NAME: pid $pid still alive 5s after SIGKILL"
  rm -f "$M_DIR/$M_NAME.pid"
  line "$M_NAME" "$t0" "killed pid $pid with SIGKILL ($M_ADDR)"
}

# cl_stop NAME: graceful stop (TERM, KILL after STOP_WAIT seconds), as in a rolling restart.
cl_stop() {
  local pid
  cl_member "$1"
  if ! pid=$(cl_pid); then
    note "$M_NAME" "not running (no live PID in $M_DIR)"
    return 0
  fi
  stop_pid "$M_NAME" "$M_DIR/$M_NAME.pid" "$pid"
}

cluster_stop_all() {
  local n stopping=() pid
  # TERM to all at once: brokers stopped one by one would each move leadership to the next one
  # about to stop, and the last two would wait for a controller quorum that is already gone.
  for n in "${CL_MEMBERS[@]}"; do
    cl_member "$n"
    if pid=$(cl_pid); then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$n:$pid")
    else
      note "$n" "not running (no live PID in $M_DIR)"
    fi
  done
  for n in "${stopping[@]}"; do
    cl_member "${n%%:*}"
    stop_pid "$M_NAME" "$M_DIR/$M_NAME.pid" "${n#*:}"
  done
}

# cluster_status: one line per member and per cluster; 1 if any member is down or a cluster is not healthy.
cluster_status() {
  local n pid down=0 kout h names
  if [ ! -x "$KPROBE" ]; then
    kout="not probed: $KPROBE is not built yet (scripts/deps.sh up --cluster builds it)"
    down=1
  elif ! kout=$("$KPROBE" -b "$(cl_brokers)" -timeout 3s 2>&1); then
    down=1
  fi
  names=$(cl_search_get "/_cat/nodes?h=name" | tr '\n' ' ' || true)
  for n in "${CL_MEMBERS[@]}"; do
    cl_member "$n"
    if pid=$(cl_pid); then
      local in=""
      if [ "$M_KIND" = kafka ]; then
        [[ ",$(sed -nE 's/.* broker_ids=([0-9,]*).*/\1/p' <<<"$kout")," == *",$M_ID,"* ]] && in=", registered"
      else
        [[ " $names" == *" $M_NAME "* ]] && in=", in the cluster"
      fi
      note "$M_NAME" "up      pid $pid, $(rss "$pid")$in; $M_ADDR"
      [ -n "$in" ] || down=1
    else
      note "$M_NAME" "down    $M_ADDR"
      down=1
    fi
  done
  note kafka "${kout:-no metadata}"
  if h=$(cl_search_get "/_cluster/health"); then
    note search "$(json_field status <<<"$h") nodes=$(json_field number_of_nodes <<<"$h") active_shards=$(json_field active_shards <<<"$h") unassigned_shards=$(json_field unassigned_shards <<<"$h") relocating_shards=$(json_field relocating_shards <<<"$h")"
    [[ "$(json_field status <<<"$h")" =~ ^(green|yellow)$ ]] || down=1
  else
    note search "no node answers on $(cl_search_urls)"
    down=1
  fi
  return "$down"
}

cluster_env() {
  cat <<EOF
export KAFKA_BROKERS=$(cl_brokers)
# ELASTICSEARCH_URL takes one node; DEPS_CLUSTER_SEARCH_URLS lists all of them (search-1..$CL_SIZE in order).
export ELASTICSEARCH_URL=http://$OS_HOST:$(cl_search_port 1)
export DEPS_CLUSTER_SEARCH_URLS=$(cl_search_urls)
EOF
}

# cmd_cluster ACTION NAME...: one member at a time, for drills.
cmd_cluster() {
  local action=${1:-} n kinds=() pid
  [ $# -gt 0 ] && shift
  case "$action" in
    status)
      [ $# -eq 0 ] || usage "cluster status takes no member names"
      cluster_status || exit $?
      return 0
      ;;
    kill | stop | start | restart | pid) ;;
    *) usage "unknown cluster action '$action'" ;;
  esac
  [ $# -gt 0 ] || usage "cluster $action needs member names (${CL_MEMBERS[*]})"
  for n in "$@"; do
    cl_member "$n"
    [[ " ${kinds[*]} " == *" $M_KIND "* ]] || kinds+=("$M_KIND")
  done
  case "$action" in
    pid)
      for n in "$@"; do
        cl_member "$n"
        pid=$(cl_pid) || die "$n: not running"
        echo "$pid"
      done
      ;;
    # No lock: a drill kills mid-flight, even while another deps.sh command waits.
    kill) for n in "$@"; do cl_kill "$n"; done ;;
    stop)
      lock
      for n in "$@"; do cl_stop "$n"; done
      ;;
    start | restart)
      lock
      [[ " ${kinds[*]} " != *" kafka "* ]] || kprobe_build
      for n in "$@"; do
        [ "$action" = start ] || cl_stop "$n"
        cl_start "$n"
      done
      cl_wait "${kinds[@]}"
      ;;
  esac
}
