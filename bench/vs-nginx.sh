#!/usr/bin/env bash
# LiveMix next to nginx: one control node (release build) and nginx from Debian (1 worker, sendfile, as an
# unprivileged user) serve the same live segment and live playlist; `livemix-bench vs-nginx` loads both with wrk at
# 16, 64 and 256 connections, then runs 1,000 paced viewers polling the playlist, and writes
# bench/results/vs-nginx.{json,md}. Stops everything it started, however it ends.
#
#   bash bench/vs-nginx.sh            # about 5 minutes after the build
#   bash bench/vs-nginx.sh --smoke    # under 2 minutes: short runs, 200 viewers
#   bash bench/vs-nginx.sh --profile  # also samples the control node with perf: <out>.svg flamegraph, <out>.perf.txt
#
# Environment: CARGO_TARGET_DIR; LIVEMIX_CONTROL_BIN runs another control binary (e.g. an older build, for a
# before/after, on an empty database of its own); LIVEMIX_BENCH_OUT names the results (default
# bench/results/vs-nginx); LIVEMIX_BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '[bench/vs-nginx.sh] %s\n' "$*" >&2; }

SMOKE=
PROFILE=
EXTRA=()
for arg in "$@"; do
    case $arg in
        --smoke) SMOKE=1 ;;
        --profile) PROFILE=1 ;;
        *) EXTRA+=("$arg") ;;
    esac
done
OUT=${LIVEMIX_BENCH_OUT:-$ROOT/bench/results/vs-nginx${SMOKE:+-smoke}}

WORK=$(mktemp -d /tmp/livemix-vs-nginx.XXXXXX)
chmod 755 "$WORK"
PIDS=()
OWN_DB=
SHARED_DB_URL=
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n $OWN_DB ]]; then psql "$SHARED_DB_URL" -qc "DROP DATABASE IF EXISTS $OWN_DB" >/dev/null 2>&1 || true; fi
    if [[ $status -eq 0 && -z "${LIVEMIX_BENCH_KEEP:-}" ]]; then rm -rf "$WORK"; else log "work directory kept: $WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need() { # COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1 && ! [[ -x /usr/sbin/$1 ]]; then
        log "installing $2"
        if ! apt-get install -y -qq "$2" >&2; then apt-get update -qq >&2 && apt-get install -y -qq "$2" >&2; fi
    fi
}
need wrk wrk
need nginx nginx
need ffmpeg ffmpeg
if [[ -n $PROFILE ]]; then
    need perf linux-perf
    INFERNO=/var/cache/livemix-tools/inferno/bin
    if ! [[ -x $INFERNO/inferno-flamegraph ]]; then
        log "installing inferno (flamegraphs) under $INFERNO"
        cargo install --quiet --locked inferno --root "${INFERNO%/bin}" >&2
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "backing services"
bash scripts/services.sh up >&2
eval "$(bash scripts/services.sh env)"

log "building release binaries"
cargo build --release -p livemix-control -p livemix-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
CONTROL_BIN=${LIVEMIX_CONTROL_BIN:-$BIN/livemix-control}
if [[ -n ${LIVEMIX_CONTROL_BIN:-} ]]; then
    # Another build may not know the migrations the shared database has seen: it gets an empty database of its own.
    # Dropped at exit through the shared database: PostgreSQL cannot drop the database a session is connected to.
    SHARED_DB_URL=$DATABASE_URL
    OWN_DB=livemix_vs_nginx_$$
    psql "$SHARED_DB_URL" -qc "CREATE DATABASE $OWN_DB" >/dev/null
    DATABASE_URL=${SHARED_DB_URL%/*}/$OWN_DB
    log "$CONTROL_BIN on a database of its own ($OWN_DB)"
fi

log "making a test segment with ffmpeg"
mkdir -p "$WORK/segment"
ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i testsrc=size=1280x720:rate=25 -t 4 \
    -c:v libx264 -preset veryfast -b:v 2M -minrate 2M -maxrate 2M -bufsize 2M -x264-params nal-hrd=cbr \
    -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p \
    -f hls -hls_time 1 -hls_list_size 0 -hls_segment_filename "$WORK/segment/seg%d.ts" "$WORK/segment/index.m3u8"

mapfile -t PORTS < <("$BIN/livemix-bench" free-ports 5)
MGMT=${PORTS[0]} VOD=${PORTS[1]} EDGE_API=${PORTS[2]} NGINX_PORT=${PORTS[3]} MC_PORT=${PORTS[4]}
TAG=vsnginx-$(date +%s)-$$
export LIVEMIX_EDGE_TOKEN=bench-$RANDOM$RANDOM LIVEMIX_CREATE_TOPICS=true LIVEMIX_LOG=${LIVEMIX_LOG:-warn}
export LIVEMIX_CONTROL_TOPIC=$TAG-ctl LIVEMIX_BROADCAST_TOPIC=

# A memcached of its own, so the counters and evictions are this run's only.
MC_USER=root
if id memcache >/dev/null 2>&1; then MC_USER=memcache; fi
memcached -u "$MC_USER" -l 127.0.0.1 -p "$MC_PORT" -m 256 -I 8m >"$WORK/memcached.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null && break; sleep 0.1; done
export MEMCACHED_URL=memcache://127.0.0.1:$MC_PORT

log "starting livemix-control ($CONTROL_BIN)"
"$CONTROL_BIN" "--management-addr=127.0.0.1:$MGMT" "--vod-addr=127.0.0.1:$VOD" "--edge-api-addr=127.0.0.1:$EDGE_API" \
    "--control-subscription=$TAG-ctl" "--reply-topic=$TAG-reply" "--reply-subscription=$TAG-reply" \
    >"$WORK/control.log" 2>&1 &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MGMT/liveness/alive" 2>/dev/null && break
    kill -0 "$CONTROL_PID" 2>/dev/null || { tail -n 30 "$WORK/control.log" >&2; exit 1; }
    sleep 0.1
done

# A source with a long registered segment length keeps the posted segments listed and cached for the whole run
# (the window is 5 segment lengths), while the segments themselves say 1 s (TARGETDURATION:1).
SID=$(curl -fsS -X POST -H 'content-type: application/json' "http://127.0.0.1:$MGMT/v1/source" \
    -d "{\"name\": \"$TAG\", \"segment_len\": 120}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["source"]["id"])')
cleanup_source() { curl -fsS -o /dev/null -X DELETE "http://127.0.0.1:$MGMT/v1/source/$SID?recordings=delete" 2>/dev/null || true; }
curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$MGMT/v1/source/$SID/streaming?new_state=true"
for n in 0 1 2; do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$EDGE_API/v1/new-segment" -H "Authorization: Bearer $LIVEMIX_EDGE_TOKEN" \
        -H "Source-ID: $SID" -H "Segment-Run: 01JBENCH000000000000000000" -H "Segment-Name: seg$n.ts" -H "Segment-Seq: $n" \
        -H "Segment-Start-TS: $(date +%s).$n" -H "Segment-Length-MSec: 1000" --data-binary "@$WORK/segment/seg$n.ts"
done
LIVE=http://127.0.0.1:$VOD/v1/vod/live/$SID

# nginx serves exactly the bytes the control node serves, under the same path.
DOCS=$WORK/www/v1/vod/live/$SID
mkdir -p "$DOCS" "$WORK/nginx"
curl -fsS -o "$DOCS/vid.m3u8" "$LIVE/vid.m3u8"
curl -fsS -o "$DOCS/seg2.ts" "$LIVE/seg2.ts"
cmp -s "$DOCS/seg2.ts" "$WORK/segment/seg2.ts" || { log "the control node served other bytes"; exit 1; }
SEGMENT_BYTES=$(stat -c %s "$DOCS/seg2.ts")
PLAYLIST_BYTES=$(stat -c %s "$DOCS/vid.m3u8")
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
    }
}
CONF
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
    chown -R nobody "$WORK/nginx" "$WORK/www"
    RUN_AS=(runuser -u nobody --)
fi
"${RUN_AS[@]}" "$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/v1/vod/live/$SID/vid.m3u8" 2>/dev/null && break; sleep 0.1; done

cat >"$WORK/summary.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
LUA

COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && COMMIT="$COMMIT + uncommitted changes"
[[ -n "${LIVEMIX_CONTROL_BIN:-}" ]] && COMMIT="control binary $LIVEMIX_CONTROL_BIN (bench at $COMMIT)"
if [[ -n $SMOKE ]]; then
    LOAD=(--duration-secs 3 --viewers 200 --viewer-secs 5)
else
    LOAD=(--duration-secs 20 --viewers 1000 --viewer-secs 30)
fi

PERF_PID=
if [[ -n $PROFILE ]]; then
    # DWARF unwinding: release builds keep no frame pointers. 99 Hz keeps the data to some tens of MB.
    perf record -q -F 99 --call-graph dwarf,8192 -p "$CONTROL_PID" -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
fi

log "measuring"
"$BIN/livemix-bench" vs-nginx --livemix "$LIVE" --nginx "http://127.0.0.1:$NGINX_PORT/v1/vod/live/$SID" \
    --segment seg2.ts --wrk-script "$WORK/summary.lua" --out-json "$OUT.json" --out-md "$OUT.md" --commit "$COMMIT" \
    --note "Segment: $SEGMENT_BYTES bytes (1280x720 libx264 2 Mbit/s, 1 s); playlist: $PLAYLIST_BYTES bytes, 3 segments." \
    --note "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') from Debian: 1 worker, sendfile, tcp_nopush, access_log off, as user nobody, the files under its root." \
    --note "livemix-control release build with default settings (memcached of the run's own, PostgreSQL from scripts/services.sh), LIVEMIX_LOG=$LIVEMIX_LOG." \
    "${LOAD[@]}" "${EXTRA[@]}"
cleanup_source
if [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" || true
    log "folding the profile into $OUT.svg"
    perf script -i "$WORK/perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" >"$WORK/perf.folded"
    "$INFERNO/inferno-flamegraph" --title "livemix-control under bench/vs-nginx.sh ($COMMIT)" \
        <"$WORK/perf.folded" >"$OUT.svg"
    perf report -i "$WORK/perf.data" --no-children --sort symbol -g none --stdio 2>/dev/null \
        | grep -E '^ +[0-9]+\.[0-9]+%' | sed -E 's/[[:space:]-]+$//' | head -n 40 >"$OUT.perf.txt" || true
fi
log "results: $OUT.md"
cat "$OUT.md"
