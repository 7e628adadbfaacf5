#!/usr/bin/env bash
# Resource exhaustion by unauthenticated clients: starts the backing services, builds release binaries, starts one
# control node and one edge (with tokens, each under a soft descriptor limit of 1,024) and runs
# `livemix-bench exhaustion` against them: 200 clients trickling 8 MB bodies without a token at the edge, then
# 2,000 idle sockets on the control node's VOD port. Writes bench/results/security.md.
#
#   bash bench/exhaustion.sh [--trickled 200 --idle 2000 ...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "[exhaustion-bench] $*" >&2; }

bash scripts/services.sh up >&2
eval "$(bash scripts/services.sh env)"
log "building release binaries"
cargo build --release -p livemix-control -p livemix-edge -p livemix-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

mapfile -t PORTS < <("$BIN/livemix-bench" free-ports 4)
MGMT=${PORTS[0]} VOD=${PORTS[1]} EDGE_API=${PORTS[2]} EDGE=${PORTS[3]}
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
TAG=bench-exhaustion-$$
EDGE_ID=$TAG-edge
EDGE_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_MANAGEMENT_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_INGEST_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export LIVEMIX_CREATE_TOPICS=true LIVEMIX_LOG=${LIVEMIX_LOG:-warn} LIVEMIX_CONTROL_TOPIC=$TAG-ctl

wait_alive() { # URL NAME
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "$1/liveness/alive" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 30 "$WORK/$2.log" >&2
    log "$2 never answered on $1"
    return 1
}

# Each server starts under the soft limit many hosts give a service (1,024) and raises it to the hard limit itself;
# the bench client keeps this shell's limit (it opens thousands of sockets).
LIVEMIX_MANAGEMENT_TOKEN=$BENCH_MANAGEMENT_TOKEN LIVEMIX_EDGE_TOKENS="$EDGE_ID:$EDGE_TOKEN" \
    bash -c 'ulimit -Sn 1024 && exec "$@"' livemix-control "$BIN/livemix-control" \
    --management-addr "127.0.0.1:$MGMT" --vod-addr "0.0.0.0:$VOD" --edge-api-addr "127.0.0.1:$EDGE_API" \
    --control-subscription "$TAG-ctl" --reply-topic "$TAG-reply" --reply-subscription "$TAG-reply" \
    --broadcast-topic= >"$WORK/control.log" 2>&1 &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
wait_alive "http://127.0.0.1:$MGMT" control
LIVEMIX_EDGE_TOKEN=$EDGE_TOKEN LIVEMIX_INGEST_TOKEN=$BENCH_INGEST_TOKEN \
    bash -c 'ulimit -Sn 1024 && exec "$@"' livemix-edge "$BIN/livemix-edge" \
    --listen-addr "127.0.0.1:$EDGE" --edge-id "$EDGE_ID" --control-url "http://127.0.0.1:$EDGE_API" \
    >"$WORK/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_alive "http://127.0.0.1:$EDGE" edge
log "control (pid $CONTROL_PID) and edge (pid $EDGE_PID) ready; descriptor limits after start (soft hard): control $(awk '/Max open files/ {print $4, $5}' "/proc/$CONTROL_PID/limits"), edge $(awk '/Max open files/ {print $4, $5}' "/proc/$EDGE_PID/limits")"

"$BIN/livemix-bench" exhaustion --edge "http://127.0.0.1:$EDGE" --edge-pid "$EDGE_PID" \
    --management "http://127.0.0.1:$MGMT" --vod "http://127.0.0.1:$VOD" --control-pid "$CONTROL_PID" \
    --edge-id "$EDGE_ID" "$@"
