#!/usr/bin/env bash
# One command from nothing to a live stream: starts the backing services, builds and starts a control node and
# an edge, registers two cameras fed by ffmpeg's test pattern (one pushing the seed's way with file://
# segments, one uploading over HTTP), turns streaming on and prints what to play. Ctrl-C stops it all.
#
#   bash scripts/demo.sh
#
# Ports: management 8080, VOD 8081, edge-facing 8082 (control), 9080 (edge). Logs and segments: ./data/demo
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=${LIVEMIX_DEMO_DIR:-$PWD/data/demo}
TOKEN=${LIVEMIX_EDGE_TOKEN:-demo-edge-token}
mkdir -p "$DEMO/ingest/camera-0"
pids=()
cleanup() {
  echo "[demo] stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_for() { # url what
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "[demo] $2 did not start; see $DEMO/$2.log" >&2
  exit 1
}

bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
echo "[demo] building"
cargo build --workspace --bins --quiet
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

export LIVEMIX_CREATE_TOPICS=true LIVEMIX_CREATE_BUCKET=true
# The demo edge has its own credential (edge id livemix-edge-demo); the management API has no token, so the
# control node serves it on 127.0.0.1 only. The edge has no ingest token either, so it too listens on 127.0.0.1 only.
# Sources registered without an edge are bound to the demo edge (LIVEMIX_DEFAULT_EDGE).
LIVEMIX_EDGE_TOKENS="livemix-edge-demo:$TOKEN" LIVEMIX_DEFAULT_EDGE=livemix-edge-demo \
  "$bin/livemix-control" --reply-subscription livemix-control-reply-demo >"$DEMO/control.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:8080/liveness/ready control
LIVEMIX_EDGE_TOKEN=$TOKEN "$bin/livemix-edge" --edge-id livemix-edge-demo --control-url http://127.0.0.1:8082 \
  --file-root "$DEMO/ingest" >"$DEMO/edge.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:9080/liveness/alive edge

source_id() { # name: registers the source unless it exists, prints its id
  curl -fsS "http://127.0.0.1:8080/v1/source?source_name=$1" | python3 -c '
import json, sys
sources = json.load(sys.stdin)["sources"]
print(sources[0]["id"] if sources else "")' | grep . ||
    curl -fsS -X POST http://127.0.0.1:8080/v1/source -H 'content-type: application/json' \
      -d "{\"name\": \"$1\", \"segment_len\": 2, \"description\": \"demo test pattern\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["source"]["id"])'
}
cam0=$(source_id camera-0)
cam1=$(source_id camera-1)

input=(-nostdin -hide_banner -loglevel error -re -f lavfi -i "testsrc=size=640x360:rate=30" -c:v libx264
  -preset veryfast -g 60 -sc_threshold 0 -pix_fmt yuv420p -f hls -hls_time 2 -hls_list_size 5
  -hls_flags delete_segments -hls_start_number_source epoch)
# The seed's way: segments on disk next to the edge, playlist POSTed with the source name and prefix.
ffmpeg "${input[@]}" -hls_segment_filename "$DEMO/ingest/camera-0/camera-0-%d.ts" \
  -headers $'Video-Source-Name: camera-0\r\nMPEG-TS-URI-Prefix: file://'"$DEMO"$'/ingest/camera-0/\r\n' \
  -method POST http://127.0.0.1:9080/v1/playlist >"$DEMO/ffmpeg-camera-0.log" 2>&1 &
pids+=($!)
# No shared disk: ffmpeg uploads segments and playlist to the edge.
ffmpeg "${input[@]}" -method PUT http://127.0.0.1:9080/v1/ingest/camera-1/index.m3u8 \
  >"$DEMO/ffmpeg-camera-1.log" 2>&1 &
pids+=($!)

sleep 3
for id in "$cam0" "$cam1"; do
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:8080/v1/source/$id/streaming?new_state=true"
done

cat <<MSG

LiveMix is running (logs in $DEMO).
  Watch camera-0:   ffplay http://127.0.0.1:8081/v1/vod/live/$cam0/vid.m3u8
  Watch camera-1:   ffplay http://127.0.0.1:8081/v1/vod/live/$cam1/vid.m3u8
  Record 10 s:      curl -s -X POST http://127.0.0.1:8080/v1/source/$cam0/recording
                    curl -s -X POST http://127.0.0.1:8080/v1/recording/<id>/stop
  Replay:           ffplay http://127.0.0.1:8081/v1/vod/recording/<id>/vid.m3u8
  Sources:          curl -s http://127.0.0.1:8080/v1/source
Ctrl-C stops everything (the backing services keep running: scripts/services.sh down).
MSG
wait "${pids[0]}"
