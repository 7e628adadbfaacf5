#!/usr/bin/env bash
# LiveMix benchmark: starts the backing services, builds release binaries, starts one control node and one edge
# on free loopback ports with their own topics, runs livemix-bench (a camera fleet + players, then a replay of a
# recording) and writes bench/RESULTS.md. Stops everything it started, however it ends.
#
#   bash bench/run.sh                     # defaults: 50 cameras, 100 players, 60 s (about 2-3 minutes)
#   bash bench/run.sh --sources 20 --players 50 --duration-secs 30 --out /tmp/quick.md
#
# Extra arguments go to `livemix-bench run` (`target/release/livemix-bench run --help` lists them).
# Environment: CARGO_TARGET_DIR (where the binaries are built), LIVEMIX_BENCH_KEEP=1 keeps the work directory
# (node logs) even when the run succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="bash bench/run.sh${*:+ $*}"

log() { printf '[bench/run.sh] %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/livemix-bench.XXXXXX)
PIDS=()
BENCH_PID=
cleanup() {
    local status=$?
    # The bench first, while the control node still answers: it deletes the sources it registered.
    if [[ -n "$BENCH_PID" ]]; then
        kill "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -eq 0 && -z "${LIVEMIX_BENCH_KEEP:-}" ]]; then
        rm -rf "$WORK"
    else
        log "node logs kept in $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "backing services"
bash scripts/services.sh up >&2
eval "$(bash scripts/services.sh env)"

log "building release binaries"
cargo build --release -p livemix-control -p livemix-edge -p livemix-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

# One real 1-second MPEG-TS segment, 1280x720 at 2 Mbit/s (CBR, so about 250 KB), made once.
log "making a test segment with ffmpeg"
mkdir -p "$WORK/segment"
ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i testsrc=size=1280x720:rate=25 -t 3 \
    -c:v libx264 -preset veryfast -b:v 2M -minrate 2M -maxrate 2M -bufsize 2M -x264-params nal-hrd=cbr \
    -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p \
    -f hls -hls_time 1 -hls_list_size 0 -hls_segment_filename "$WORK/segment/seg%d.ts" "$WORK/segment/index.m3u8"
SEGMENT=$WORK/segment/seg1.ts
DURATION=$(awk -F'[:,]' '/^#EXTINF/ {n++; if (n == 2) {print $2; exit}}' "$WORK/segment/index.m3u8")

mapfile -t PORTS < <("$BIN/livemix-bench" free-ports 5)
MGMT=${PORTS[0]} VOD=${PORTS[1]} EDGE_API=${PORTS[2]} EDGE=${PORTS[3]} MC_PORT=${PORTS[4]}
TAG=bench-$(date +%s)-$$
export LIVEMIX_EDGE_TOKEN=bench-$RANDOM$RANDOM
export LIVEMIX_CREATE_TOPICS=true
export LIVEMIX_CONTROL_TOPIC=$TAG-ctl
export LIVEMIX_BROADCAST_TOPIC=$TAG-events
export LIVEMIX_LOG=${LIVEMIX_LOG:-info}
mkdir -p "$WORK/ingest"

CONTROL_ARGS=(
    "--management-addr=127.0.0.1:$MGMT" "--vod-addr=127.0.0.1:$VOD" "--edge-api-addr=127.0.0.1:$EDGE_API"
    "--control-subscription=$TAG-ctl" "--reply-topic=$TAG-reply" "--reply-subscription=$TAG-reply"
)
EDGE_ARGS=(
    "--listen-addr=127.0.0.1:$EDGE" "--edge-id=$TAG-edge" "--control-url=http://127.0.0.1:$EDGE_API"
    "--file-root=$WORK/ingest"
)

wait_alive() { # URL NAME PID
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null "$1/liveness/alive" 2>/dev/null; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then
            tail -n 30 "$WORK/$2.log" >&2
            log "$2 exited during start-up"
            return 1
        fi
        sleep 0.1
    done
    log "$2 never answered on $1"
    return 1
}

# A memcached of the bench's own: the fleet writes ~13 MB/s of live segments, which would evict other users' items
# from the shared one, and its counters then count only this run.
MC_MEMORY_MB=${LIVEMIX_BENCH_MEMCACHED_MB:-1024}
MC_USER=root
if id memcache >/dev/null 2>&1; then MC_USER=memcache; fi
memcached -u "$MC_USER" -l 127.0.0.1 -p "$MC_PORT" -m "$MC_MEMORY_MB" -I 8m >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
PIDS+=("$MC_PID")
for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null; then break; fi
    sleep 0.1
done
export MEMCACHED_URL=memcache://127.0.0.1:$MC_PORT

log "starting livemix-control and livemix-edge (logs in $WORK)"
"$BIN/livemix-control" "${CONTROL_ARGS[@]}" >"$WORK/control.log" 2>&1 &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
wait_alive "http://127.0.0.1:$MGMT" control "$CONTROL_PID"
"$BIN/livemix-edge" "${EDGE_ARGS[@]}" >"$WORK/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_alive "http://127.0.0.1:$EDGE" edge "$EDGE_PID"

COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    COMMIT="$COMMIT + uncommitted changes"
fi

# CPU of the backing services too (shared with other users of this machine, if any).
WATCH=(--watch "memcached=$MC_PID")
if pid=$(pgrep -o -x postgres); then WATCH+=(--watch-tree "postgresql=$pid"); fi

# Settings given through the environment (LIVEMIX_DB_MAX_CONNECTIONS=30 bash bench/run.sh ...), for the report.
OVERRIDES=$(env | grep -E '^LIVEMIX_' | grep -vE '^LIVEMIX_(EDGE_TOKEN|CREATE_TOPICS|CONTROL_TOPIC|BROADCAST_TOPIC|LOG|BUCKET|BENCH_.*)=' \
    | sort | tr '\n' ' ' || true)

log "running the bench"
"$BIN/livemix-bench" run \
    --management-url "http://127.0.0.1:$MGMT" --vod-url "http://127.0.0.1:$VOD" \
    --edge-url "http://127.0.0.1:$EDGE" --control-pid "$CONTROL_PID" --edge-pid "$EDGE_PID" \
    --segment-file "$SEGMENT" --segment-duration "${DURATION:-1.0}" \
    --name-prefix "$TAG" --commit "$COMMIT" --command "$COMMAND" \
    --note "Release builds (\`cargo build --release\`), one \`livemix-control\` and one \`livemix-edge\` with default settings except addresses and topics: \`livemix-control ${CONTROL_ARGS[*]}\`, \`livemix-edge ${EDGE_ARGS[*]}\`; \`LIVEMIX_LOG=$LIVEMIX_LOG\`${OVERRIDES:+; other settings from the environment: \`${OVERRIDES% }\`}." \
    --note "Backing services from \`scripts/services.sh\` on the same machine: PostgreSQL $(psql --version 2>/dev/null | awk '{print $3}') (shared), the Pub/Sub emulator, moto as S3; memcached $(memcached -h 2>/dev/null | awk 'NR==1 {print $2}') of the bench's own (-m $MC_MEMORY_MB -I 8m). The bench, both nodes and the services share the machine's $(nproc) cores." \
    --edge-cache-bytes "${LIVEMIX_EDGE_CACHE_BYTES:-536870912}" \
    "${WATCH[@]}" --out "$ROOT/bench/RESULTS.md" \
    "$@" &
# In the background so that a signal to this script stops it (and everything else) at once.
BENCH_PID=$!
wait "$BENCH_PID"
