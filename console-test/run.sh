#!/usr/bin/env bash
# Browser test of the web console: a real control node and edge on the backing services, ffmpeg's test pattern
# pushed into the edge, and Debian's Chromium (headless, driven by playwright-core) using the console at /ui.
# Installs what is missing (chromium, node/npm, ffmpeg from Debian; playwright-core with `npm ci`), cleans up
# after itself, and saves a screenshot of the console to docs/console.png.
#
#   bash console-test/run.sh
#
# CONSOLE_TEST_DATABASE_URL overrides the database the control node uses (default: scripts/services.sh's).
# Logs are kept in a temporary directory, printed when the test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

started=$(date +%s)
step() { echo "== [console-test $(($(date +%s) - started))s] $*"; }

step "tools: chromium, node, npm, ffmpeg"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
# Without a font, every label in the screenshot is a box.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "playwright-core (npm ci, cached in /var/cache/livemix-npm)"
(cd console-test && npm ci --cache /var/cache/livemix-npm --prefer-offline --no-audit --no-fund --loglevel=error)

step "backing services"
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
export DATABASE_URL=${CONSOLE_TEST_DATABASE_URL:-$DATABASE_URL}

step "build livemix-control and livemix-edge"
cargo build --locked --quiet --workspace --bin livemix-control --bin livemix-edge
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

work=$(mktemp -d /tmp/livemix-console-test.XXXXXX)
pids=()
cleanup() {
  local status=$?
  # The source goes (with its recordings), so repeated runs on one database leave nothing behind.
  if [ -n "${source_id:-}" ]; then
    curl -fsS -o /dev/null -X DELETE "http://127.0.0.1:$mgmt/v1/source/$source_id?recordings=delete" -H "authorization: Bearer $token" ||
      echo "could not delete source $source_id" >&2
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      echo "---- $log (last 40 lines)"
      tail -n 40 "$log"
    done
    echo "console-test failed; logs in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # url what
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start" >&2
  exit 1
}

mgmt=$(free_port) vod=$(free_port) edge_api=$(free_port) edge=$(free_port)
run=console-$$-$(date +%s)
token=console-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
source_name=camera-$run

step "control node (management :$mgmt, VOD :$vod) and edge (:$edge)"
export LIVEMIX_EDGE_TOKEN=edge-$token LIVEMIX_CONTROL_TOPIC=$run-ctl LIVEMIX_CREATE_TOPICS=true \
  LIVEMIX_CREATE_BUCKET=true LIVEMIX_LOG=info
# Signed playback on, so the page must play through URLs minted by /v1/playback-url.
LIVEMIX_MANAGEMENT_TOKEN=$token LIVEMIX_PLAYBACK_SIGNING_KEY=signing-$token "$bin/livemix-control" \
  --management-addr "127.0.0.1:$mgmt" --vod-addr "127.0.0.1:$vod" --edge-api-addr "127.0.0.1:$edge_api" \
  --control-subscription "$run-ctl" --reply-topic "$run-reply" --reply-subscription "$run-reply" \
  --reachable-within-secs 10 >"$work/control.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$mgmt/liveness/ready" control
"$bin/livemix-edge" --listen-addr "127.0.0.1:$edge" --edge-id "$run-edge" \
  --control-url "http://127.0.0.1:$edge_api" --file-root "$work" --report-interval-secs 1 >"$work/edge.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$edge/liveness/alive" edge

step "source $source_name, fed by ffmpeg"
source_id=$(curl -fsS -X POST "http://127.0.0.1:$mgmt/v1/source" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d "{\"name\": \"$source_name\", \"segment_len\": 1, \"description\": \"test pattern\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["source"]["id"])')
ffmpeg -nostdin -hide_banner -loglevel warning -re -f lavfi -i testsrc=size=640x360:rate=25 -c:v libx264 \
  -preset veryfast -tune zerolatency -g 25 -sc_threshold 0 -pix_fmt yuv420p -f hls -hls_time 1 -hls_list_size 5 \
  -method PUT "http://127.0.0.1:$edge/v1/ingest/$source_name/index.m3u8" >"$work/ffmpeg.log" 2>&1 &
pids+=($!)

step "the console in headless Chromium"
mkdir -p docs
CONSOLE_URL="http://127.0.0.1:$mgmt/ui" MANAGEMENT_TOKEN=$token SOURCE_NAME=$source_name \
  SCREENSHOT="$root/docs/console.png" PHONE_SCREENSHOT=${PHONE_SCREENSHOT:-} \
  node --test --test-reporter=spec console-test/console.test.mjs
step "console test passed"
