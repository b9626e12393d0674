#!/usr/bin/env bash
# scripts/drill.sh: the scale-out drill (`make drill`, docs/RUNBOOK.md "Scaling out").
#
# Brings up the cluster mode of scripts/deps.sh (three Kafka brokers with RF 3 and
# min.insync.replicas 2, three OpenSearch nodes), runs wiring/drill (build tag drill) against
# it with bin/catalog, and stops the cluster again if this script started it
# (DRILL_KEEP_CLUSTER=1 keeps it). The drill prints `drill-log:` progress lines, one
# `drill-step:` line per step and a final `drill: ... lost=0 stale=0 phantom=0 resurrected=0 ...`
# summary with each step's convergence time and longest write gap.
#
# Settings (optional): DRILL_WRITE_RATE (writes/s, default 200), DRILL_PORT_BASE (replicas
# listen on BASE+1..BASE+7 and BASE+101..BASE+107, default 19100), DRILL_LOG_DIR (replica
# logs, default .deps/drill/logs), DRILL_KEEP=1 (keep the drill's database, topics and
# indices), DRILL_TIMEOUT (go test -timeout, default 20m).
set -euo pipefail
cd "$(dirname "$0")/.."

was_up=0
if bash scripts/deps.sh status --cluster >/dev/null 2>&1; then
  was_up=1
fi
stop_cluster() {
  if [ "$was_up" = 0 ] && [ "${DRILL_KEEP_CLUSTER:-}" != 1 ]; then
    bash scripts/deps.sh stop --cluster || true
  fi
}
trap stop_cluster EXIT

bash scripts/deps.sh up --cluster
eval "$(bash scripts/deps.sh env --cluster)"
export CATALOG_BIN="${CATALOG_BIN:-$PWD/bin/catalog}"
export DRILL_LOG_DIR="${DRILL_LOG_DIR:-$PWD/.deps/drill/logs}"
rm -rf "$DRILL_LOG_DIR"
mkdir -p "$DRILL_LOG_DIR"
go test -tags drill -count=1 -timeout "${DRILL_TIMEOUT:-20m}" -v -run '^TestScaleOutDrill$' ./wiring/drill/
