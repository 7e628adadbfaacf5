#!/usr/bin/env bash
# The recordings' lifecycle at scale: starts the backing services, builds release binaries, starts one control
# node and runs `livemix-bench lifecycle` against it (delete a source of 10,000 recorded segments, a retention pass
# over 100,000, a GC scan of 100,000 objects). Writes bench/results/lifecycle.md.
#
#   bash bench/lifecycle.sh                         the full sizes
#   bash bench/lifecycle.sh --delete-segments 1000 --retention-segments 10000 --gc-objects 5000   smaller
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "[lifecycle-bench] $*" >&2; }

bash scripts/services.sh up >&2
eval "$(bash scripts/services.sh env)"
log "building release binaries"
cargo build --release -p livemix-control -p livemix-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

mapfile -t PORTS < <("$BIN/livemix-bench" free-ports 3)
MGMT=${PORTS[0]} VOD=${PORTS[1]} EDGE=${PORTS[2]}
WORK=$(mktemp -d)
trap 'kill "$CONTROL_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
topic=bench-lifecycle-$$
LIVEMIX_CREATE_TOPICS=true LIVEMIX_CREATE_BUCKET=true "$BIN/livemix-control" \
    --management-addr "127.0.0.1:$MGMT" --vod-addr "127.0.0.1:$VOD" --edge-api-addr "127.0.0.1:$EDGE" \
    --edge-token bench-lifecycle-token --control-topic "$topic" --control-subscription "$topic" \
    --reply-topic "$topic-reply" --reply-subscription "$topic-reply" --broadcast-topic= \
    --retention-interval-secs 86400 --gc-interval-secs 0 --deletion-interval-secs 1 \
    >"$WORK/control.log" 2>&1 &
CONTROL_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MGMT/liveness/ready" 2>/dev/null && break
    sleep 0.2
done
log "control node ready on :$MGMT (pid $CONTROL_PID)"
"$BIN/livemix-bench" lifecycle --management "http://127.0.0.1:$MGMT" --control-pid "$CONTROL_PID" "$@"
