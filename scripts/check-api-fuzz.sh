#!/usr/bin/env bash
# The API contract, attacked by a tool nobody here wrote: Schemathesis (PyPI) reads docs/openapi/*.json, generates
# requests (examples, boundary values, schema-valid and schema-invalid data, stateful sequences) and checks every
# reply against the document: no 5xx, status codes, content types, headers and bodies as declared, bad input
# refused with a 4xx, valid input accepted, authentication enforced, no hang.
#
#   standalone  the `livemix` binary on a temporary data directory, with a management token:
#               the management and VOD documents (its edge-facing API takes only its own edge's per-process
#               token, which it never shows, so the edge-facing document is fuzzed on the split deployment)
#   split       `livemix-control` on the real services (scripts/services.sh up) with a management token and a
#               per-edge token: the management, VOD and edge-facing documents
#
# Prints the number of generated cases per API and deployment; exits non-zero on any failure. A failure is a bug
# in a handler or in the document (the #[utoipa::path] annotations, the shapes in livemix-common): fix it there and
# regenerate the documents (cargo run -p livemix-control --bin livemix-openapi -- docs/openapi).
#
# Installs what is missing on Debian as root: python3-venv; schemathesis into a venv; the backing services.
#
# Environment:
#   LIVEMIX_FUZZ_VENV        venv of schemathesis               (default /var/tmp/livemix-venv-fuzz)
#   LIVEMIX_FUZZ_EXAMPLES    max examples per operation          (default 60)
#   LIVEMIX_FUZZ_WORKERS     concurrent schemathesis workers     (default 1: with more, Python 3.11 can fail
#                            in Hypothesis with "AST constructor recursion depth mismatch", a CPython bug)
#   LIVEMIX_FUZZ_ONLY        standalone or split: one deployment (default both)
#   LIVEMIX_FUZZ_SEED        Schemathesis's seed: the same cases on every run (default 28); change it to explore
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LIVEMIX_FUZZ_VENV:-/var/tmp/livemix-venv-fuzz}
PACKAGES=(schemathesis==4.32.5)
EXAMPLES=${LIVEMIX_FUZZ_EXAMPLES:-60}
WORKERS=${LIVEMIX_FUZZ_WORKERS:-1}
ONLY=${LIVEMIX_FUZZ_ONLY:-}
SEED=${LIVEMIX_FUZZ_SEED:-28}
MIN_CASES=1000

log() { printf '[check-api-fuzz] %s\n' "$*"; }
die() { printf '[check-api-fuzz] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

started=$SECONDS
ensure_venv
cd "$ROOT"
log "building livemix and livemix-control"
cargo build --quiet -p livemix -p livemix-control --bins
BIN=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

WORK=$(mktemp -d /tmp/livemix-api-fuzz.XXXXXX)
pids=()
cleanup() {
    local pid kind name
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    # The split run's topics and subscriptions go too: an emulator that keeps every test's streams slows down.
    if [[ -n ${suffix:-} && -n ${PUBSUB_EMULATOR_HOST:-} ]]; then
        for kind in subscriptions topics; do
            for name in control reply broadcast; do
                curl -fsS --max-time 5 -X DELETE -o /dev/null \
                    "http://$PUBSUB_EMULATOR_HOST/v1/projects/${PUBSUB_PROJECT_ID:-livemix-dev}/$kind/livemix-$name-$suffix" \
                    2>/dev/null || true
            done
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # url what log
    local _
    for _ in $(seq 1 150); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.2
    done
    tail -n 30 "$3" >&2
    die "$2 did not start (log above)"
}

# Every check runs (the default of the configuration below); these operations skip one that cannot pass for reasons the document cannot express; every entry says why. Everything else runs
# with all of Schemathesis's checks.
cat >"$WORK/schemathesis.toml" <<'TOML'
# A range (start, end) is refused when start is not before end, when start is in the future or when it is longer
# than LIVEMIX_MAX_RANGE: relations between two parameters and the clock, which JSON Schema cannot state. Every
# other check still runs on these operations; the 400s are the declared JSON error.
[[operations]]
include-path = "/v1/source/{id}/coverage"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/v1/vod/source/{source_id}/{file}"
checks.positive_data_acceptance.enabled = false

# A source's edge binding is a property of the source, not a resource of its own: DELETE releases it and GET then
# answers 200 with `"edge_id": null`, as documented (SourceEdgeReply), where use_after_free expects a 404.
[[operations]]
include-path = "/v1/source/{id}/edge"
checks.use_after_free.enabled = false

# start_time_epoch must be no later than tomorrow: a bound relative to the clock.
[[operations]]
include-path = "/v1/source/{id}/recording"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
TOML

# Segments are forwarded as video/mp2t, a media type Schemathesis has no serializer for: raw bytes, as sent.
cat >"$WORK/hooks.py" <<'PY'
import schemathesis


@schemathesis.serializer("video/mp2t")
def mp2t(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
PY
export SCHEMATHESIS_HOOKS=$WORK/hooks.py

failed=0
summary=()

# fuzz DEPLOYMENT API URL [TOKEN]
fuzz() {
    local deployment=$1 api=$2 url=$3 token=${4:-} out cases examples
    # The VOD and edge-facing APIs have a handful of operations: more examples each to pass MIN_CASES.
    case $api in
        management) examples=$EXAMPLES ;;
        *) examples=$((EXAMPLES * 6)) ;;
    esac
    out=$WORK/$deployment-$api.txt
    local args=(--config-file "$WORK/schemathesis.toml" --no-color run "$ROOT/docs/openapi/$api.json" --url "$url"
        --workers "$WORKERS" --max-examples "$examples" --request-timeout 10 --max-response-time 10
        --seed "$SEED" --no-shrink --output-truncate false --suppress-health-check all)
    [[ -n $token ]] && args+=(--header "Authorization: Bearer $token")
    log "$deployment: $api API at $url"
    local rc=0
    # The token is filtered out of Schemathesis's output (output sanitization is on by default).
    # From $WORK: Schemathesis keeps a .schemathesis directory in the working directory.
    (cd "$WORK" && "$VENV/bin/st" "${args[@]}") >"$out" 2>&1 || rc=$?
    # Which phases ran (examples, coverage, fuzzing, stateful through the documents' links).
    sed -n '/^Test Phases:/,/^$/p' "$out" | sed -n 's/^ \+/    /p' || true
    cases=$(grep -oE '^ *[0-9]+ generated' "$out" | grep -oE '[0-9]+' | tail -n 1 || true)
    cases=${cases:-0}
    if ((rc != 0)); then
        sed -n '/^=\+ FAILURES\|^=\+ ERRORS/,$p' "$out" | head -n 300 >&2
        [[ -s $out ]] && tail -n 40 "$out" >&2
        summary+=("$deployment $api: $cases cases, FAILED")
        failed=1
    elif ((cases < MIN_CASES)); then
        summary+=("$deployment $api: $cases cases, fewer than $MIN_CASES")
        failed=1
    else
        summary+=("$deployment $api: $cases cases, no failure")
    fi
    log "${summary[-1]}"
}

MGMT_TOKEN=fuzz-management-$RANDOM$RANDOM
EDGE_TOKEN=fuzz-edge-$RANDOM$RANDOM

if [[ -z $ONLY || $ONLY == standalone ]]; then
    mp=$(free_port) vp=$(free_port) ep=$(free_port) ip=$(free_port)
    mkdir -p "$WORK/standalone"
    "$BIN/livemix" --data-dir="$WORK/standalone" --management-addr="127.0.0.1:$mp" --vod-addr="127.0.0.1:$vp" \
        --edge-api-addr="127.0.0.1:$ep" --ingest-addr="127.0.0.1:$ip" --management-token "$MGMT_TOKEN" \
        >"$WORK/standalone.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$mp/liveness/ready" standalone "$WORK/standalone.log"
    fuzz standalone management "http://127.0.0.1:$mp" "$MGMT_TOKEN"
    fuzz standalone vod "http://127.0.0.1:$vp"
    kill -TERM "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
fi

if [[ -z $ONLY || $ONLY == split ]]; then
    bash "$ROOT/scripts/services.sh" up >"$WORK/services.log" 2>&1 || { tail -n 30 "$WORK/services.log" >&2; die "services did not start"; }
    eval "$(bash "$ROOT/scripts/services.sh" env)"
    mp=$(free_port) vp=$(free_port) ep=$(free_port)
    suffix=fuzz-$$
    # A bucket and Pub/Sub topics of its own: the fuzzer runs garbage collection and deletes, and must not reach
    # what other tests on the same services hold.
    LIVEMIX_EDGE_TOKENS="fuzz-edge:$EDGE_TOKEN" LIVEMIX_MANAGEMENT_TOKEN="$MGMT_TOKEN" \
        LIVEMIX_CREATE_TOPICS=true LIVEMIX_CREATE_BUCKET=true LIVEMIX_BUCKET="livemix-$suffix" \
        "$BIN/livemix-control" --management-addr="127.0.0.1:$mp" --vod-addr="127.0.0.1:$vp" \
        --edge-api-addr="127.0.0.1:$ep" --control-topic "livemix-control-$suffix" \
        --control-subscription "livemix-control-$suffix" --reply-topic "livemix-reply-$suffix" \
        --reply-subscription "livemix-reply-$suffix" --broadcast-topic "livemix-broadcast-$suffix" \
        >"$WORK/control.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$mp/liveness/ready" livemix-control "$WORK/control.log"
    fuzz split management "http://127.0.0.1:$mp" "$MGMT_TOKEN"
    fuzz split vod "http://127.0.0.1:$vp"
    fuzz split edge "http://127.0.0.1:$ep" "$EDGE_TOKEN"
fi

log "generated cases per API and deployment:"
for line in "${summary[@]}"; do log "  $line"; done
log "took $((SECONDS - started)) s"
((failed == 0)) || die "Schemathesis found failures (above)"
log "no failure"
