#!/usr/bin/env bash
# The standalone `livemix` binary as a first `cargo run --release --bin livemix -- --demo` builds it: without the
# cloud backends (S3, Pub/Sub, memcached and their SDKs). Called by .ci/run; each part also runs on its own:
#
#   bash .ci/standalone.sh check        the dependency tree of what a command at the root selects (the workspace's
#                                       default-members) holds no cloud SDK; clippy of the code without them
#   bash .ci/standalone.sh build DIR    `cargo build --bin livemix` at the root, as the quick start runs it (debug),
#                                       compiles no cloud SDK; livemix-control and livemix-edge without their `cloud`
#                                       feature; the three binaries copied to DIR
#   bash .ci/standalone.sh smoke DIR    DIR/livemix --demo until its recording replays, then SIGTERM; DIR's
#                                       livemix-control and livemix-edge refuse S3, memcached and Pub/Sub with the
#                                       "built without ... support" error (exit 1, no panic)
#
# The build is debug on purpose: it reuses the dependencies the workspace's test build compiles (only the ~40
# crates whose features differ compile twice), where a release build would compile all ~240 again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/livemix-target}
log() { echo "[standalone] $*"; }
die() {
  echo "[standalone] FAILED: $*" >&2
  exit 1
}

# The crates in the cloud backends' dependency trees, from a list of crate names. aws-lc-rs and aws-lc-sys are not
# among them: reqwest's `rustls` feature uses aws-lc as its TLS provider.
cloud_crates() { grep -E '^(aws-|google-cloud-|tonic|prost|memcache)' | grep -v '^aws-lc-' | sort -u || true; }

check() {
  local tree cloud
  # No -p: the packages a bare command at the root selects, as `cargo run --bin livemix` does.
  tree=$(cargo tree --locked -e normal --prefix none)
  cloud=$(cloud_crates <<<"$tree")
  [ -z "$cloud" ] || die "what a command at the root builds depends on cloud SDKs again:"$'\n'"$cloud"
  log "dependency tree: $(sort -u <<<"$tree" | wc -l) lines (cargo tree -e normal --prefix none | sort -u), no cloud SDK"
  # Lib and bin targets only: the test targets pull livemix-testkit, which turns the cloud backends on.
  cargo clippy --locked --no-default-features -p livemix -p livemix-control -p livemix-edge -- -D warnings
}

build() {
  local out=${1:?output directory} built cloud
  # Exactly the quick start's selection (no -p), so a change to the workspace's default members or to the
  # features shows here; the artifacts cargo reports (fresh ones too) are the crates the command compiles.
  built=$(cargo build --locked --bin livemix --message-format=json-render-diagnostics \
    | grep -o '"reason":"compiler-artifact","package_id":"[^"]*"' | sed 's/.*#//; s/@.*//; s/"$//' | sort -u)
  cloud=$(cloud_crates <<<"$built")
  [ -z "$cloud" ] || die "cargo build --bin livemix compiled cloud SDKs:"$'\n'"$cloud"
  log "cargo build --bin livemix: $(wc -l <<<"$built") crates, no cloud SDK"
  # The same libraries (no feature differs), so only the two binaries link.
  cargo build --locked --no-default-features -p livemix-control -p livemix-edge --bins
  # Copied at once: the workspace's next build links its own (cloud) binaries to the same paths.
  mkdir -p "$out"
  cp "$CARGO_TARGET_DIR"/debug/{livemix,livemix-control,livemix-edge} "$out"/
  log "built livemix, livemix-control and livemix-edge without cloud features into $out"
}

# Polls `$@` once a second for up to $1 seconds.
within() {
  local limit=$1
  shift
  for _ in $(seq "$limit"); do
    "$@" && return 0
    sleep 1
  done
  return 1
}

# `$bin` started with `$@` (and the environment given) must exit 1 saying `$expect`, without a panic.
refuses() {
  local expect=$1 out rc=0
  shift
  out=$(timeout 60 env -u DATABASE_URL -u MEMCACHED_URL -u LIVEMIX_BUCKET -u LIVEMIX_IN_PROCESS_BUS \
    -u PUBSUB_EMULATOR_HOST LIVEMIX_LOG=warn "$@" 2>&1 </dev/null) || rc=$?
  if [ "$rc" -ne 1 ] || ! grep -qF "$expect" <<<"$out" || grep -q panicked <<<"$out"; then
    die "$* exited $rc, expected 1 with \"$expect\":"$'\n'"$out"
  fi
  log "refused as expected: $expect"
}

# Whether the playlist at $1 lists a segment.
has_segments() {
  local body
  body=$(curl -fsS "$1") && grep -q '^#EXTINF' <<<"$body"
}

stopped() { ! kill -0 "$1" 2>/dev/null; }

smoke() {
  local dir=${1:?directory of the binaries} replay live segment rc=0
  work=$(mktemp -d) pid=
  trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
  # Port 0 everywhere: the binary prints the addresses it got.
  env -u DATABASE_URL -u MEMCACHED_URL "$dir/livemix" --demo --data-dir "$work/data" \
    --management-addr 127.0.0.1:0 --vod-addr 127.0.0.1:0 --edge-api-addr 127.0.0.1:0 --ingest-addr 127.0.0.1:0 \
    >"$work/out" 2>&1 </dev/null &
  pid=$!
  if ! within 180 grep -q '^demo: recording .* stopped' "$work/out"; then
    cat "$work/out"
    die "livemix --demo did not record within 180 s"
  fi
  live=$(sed -n 's/^ *Live: *ffplay //p' "$work/out")
  replay=$(sed -n 's/^ *Replay: *ffplay \([^ ]*\).*/\1/p' "$work/out")
  if [ -z "$live" ] || [ -z "$replay" ]; then
    die "no playback URLs in the demo's output:"$'\n'"$(cat "$work/out")"
  fi
  has_segments "$live" || die "the live playlist $live has no segment"
  # The recording's segments reach the object directory through the in-process bus shortly after it stops.
  within 60 has_segments "$replay" || die "the recording playlist $replay has no segment"
  segment=$(curl -fsS "$replay" | grep -v '^#' | sed -n 1p)
  case $segment in http*) ;; *) segment="${replay%/*}/$segment" ;; esac
  curl -fsS -o "$work/segment.ts" "$segment" || die "recorded segment $segment does not download"
  # MPEG-TS: 188-byte packets starting with the sync byte 0x47.
  [ "$(head -c 1 "$work/segment.ts" | od -An -tx1 | tr -d ' ')" = 47 ] || die "recorded segment $segment is not MPEG-TS"
  kill -TERM "$pid"
  within 30 stopped "$pid" || die "livemix did not stop within 30 s of SIGTERM"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || die "livemix exited $rc after SIGTERM:"$'\n'"$(tail -n 20 "$work/out")"
  pid=
  log "livemix --demo: live and recorded playlists play ($replay), SIGTERM stops it cleanly"

  local db="sqlite://$work/control.db?mode=rwc"
  refuses "built without memcached support" env DATABASE_URL="$db" MEMCACHED_URL=memcache://127.0.0.1:11211 \
    "$dir/livemix-control"
  refuses "built without S3 support" env DATABASE_URL="$db" LIVEMIX_BUCKET=livemix "$dir/livemix-control"
  refuses "built without Pub/Sub support" env DATABASE_URL="$db" "$dir/livemix-control"
  refuses "built without S3 support" "$dir/livemix-edge" --edge-id ci-edge --control-url http://127.0.0.1:9 \
    --spool-dir "$work/spool" --bucket livemix
  refuses "built without Pub/Sub support" "$dir/livemix-edge" --edge-id ci-edge --control-url http://127.0.0.1:9 \
    --spool-dir "$work/spool"
}

case ${1:-} in
  check) check ;;
  build) build "${2:-}" ;;
  smoke) smoke "${2:-}" ;;
  *) die "usage: bash .ci/standalone.sh check | build DIR | smoke DIR" ;;
esac
