#!/usr/bin/env bash
# LiveMix end to end on a kind cluster: the Helm chart in dev mode, the operator's CRDs, ffmpeg pushing HLS into an
# edge, live playback through the ingress, and a recording played back. See kind-test/README.md.
#
#   kind-test/run.sh            create a cluster, run everything, delete the cluster
#   kind-test/run.sh --keep     keep the cluster (and the release) afterwards, to look around
#   kind-test/run.sh --reuse    use the cluster if it exists (and keep it); images are rebuilt and reloaded
#
# Needs docker, kind, kubectl, helm and curl; ffmpeg and ffprobe on the PATH too, or else (Linux) they run from
# $LIVEMIX_FFMPEG_IMAGE with `docker run --network host`.
#
# Environment (all optional):
#   LIVEMIX_KIND_CLUSTER     cluster name                                   (default livemix-e2e)
#   LIVEMIX_KIND_NODE_IMAGE  kindest/node image; default: kind's own
#   LIVEMIX_KIND_HTTP_PORT   host port of the ingress controller            (default 8088)
#   LIVEMIX_KIND_EDGE_PORT   local port of the port-forward to the edge     (default 19080)
#   LIVEMIX_NAMESPACE        namespace of the release                       (default livemix)
#   LIVEMIX_RELEASE          Helm release name                              (default livemix)
#   LIVEMIX_IMAGE_TAG        tag of the three images built here             (default kind)
#   LIVEMIX_SKIP_BUILD       1: do not build the images (they must exist with that tag)
#   LIVEMIX_FFMPEG_IMAGE     ffmpeg image of the in-cluster Job             (default jrottenberg/ffmpeg:7.1-ubuntu2404)
#   LIVEMIX_INGRESS_NGINX    ingress-nginx release of the kind manifest     (default controller-v1.13.2)
#   LIVEMIX_TIMEOUT          seconds to wait for each condition             (default 300)
#   LIVEMIX_RECORD_SEGMENTS  segments to record before stopping             (default 4)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${LIVEMIX_KIND_CLUSTER:-livemix-e2e}
NODE_IMAGE=${LIVEMIX_KIND_NODE_IMAGE:-}
HTTP_PORT=${LIVEMIX_KIND_HTTP_PORT:-8088}
EDGE_PORT=${LIVEMIX_KIND_EDGE_PORT:-19080}
NAMESPACE=${LIVEMIX_NAMESPACE:-livemix}
RELEASE=${LIVEMIX_RELEASE:-livemix}
TAG=${LIVEMIX_IMAGE_TAG:-kind}
SKIP_BUILD=${LIVEMIX_SKIP_BUILD:-0}
FFMPEG_IMAGE=${LIVEMIX_FFMPEG_IMAGE:-jrottenberg/ffmpeg:7.1-ubuntu2404}
INGRESS_NGINX=${LIVEMIX_INGRESS_NGINX:-controller-v1.13.2}
TIMEOUT=${LIVEMIX_TIMEOUT:-300}
RECORD_SEGMENTS=${LIVEMIX_RECORD_SEGMENTS:-4}

CHART=$ROOT/charts/livemix
VOD_URL=http://localhost:$HTTP_PORT
COMPONENTS=(control edge operator)
# The chart's resource-name prefix: the release name if it contains "livemix", else <release>-livemix.
if [[ $RELEASE == *livemix* ]]; then FULLNAME=$RELEASE; else FULLNAME=$RELEASE-livemix; fi
EDGE_SERVICE=$FULLNAME-edge

# Sources of crds/examples/: camera-0 streams from the start and is pushed by an ffmpeg Job in the cluster;
# "entrance" (control-node name studio-b.entrance) starts with streaming off and is pushed from this machine
# through a port-forward, then switched on.
JOB_SOURCE=camera-0
PF_RESOURCE=entrance
PF_SOURCE=studio-b.entrance
RECORDING=lobby-morning

KEEP=0
REUSE=0
for arg in "$@"; do
    case $arg in
        --keep) KEEP=1 ;;
        --reuse) REUSE=1; KEEP=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) printf 'unknown argument: %s (try --help)\n' "$arg" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livemix-kind.XXXXXX")
STARTED=$SECONDS
CREATED_CLUSTER=0
CLUSTER_UP=0
FAILED=1
BACKGROUND_PIDS=()
RESULTS=()

log() { printf '[kind-test %4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
die() { printf '[kind-test %4ds] FAILED: %s\n' "$((SECONDS - STARTED))" "$*" >&2; exit 1; }
pass() { RESULTS+=("PASS  $*"); log "PASS: $*"; }

kc() { kubectl --context "kind-$CLUSTER" "$@"; }
kn() { kc -n "$NAMESPACE" "$@"; }
hm() { helm --kube-context "kind-$CLUSTER" "$@"; }

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

cleanup() {
    local status=$?
    set +eu
    local pid
    # Only the processes this script started (port-forward, ffmpeg), by their ids.
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        kill "$pid" 2>/dev/null
    done
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        wait "$pid" 2>/dev/null
    done
    if ((FAILED && CLUSTER_UP)); then
        diagnostics
    fi
    if ((KEEP)); then
        log "keeping cluster kind-$CLUSTER (delete it with: kind delete cluster --name $CLUSTER)"
    elif ((CREATED_CLUSTER)); then
        log "deleting cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    summary
    if ((FAILED)) && ((status == 0)); then
        status=1
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

summary() {
    printf '\n===== LiveMix kind end-to-end: %s in %ds =====\n' "$( ((FAILED)) && echo FAILED || echo PASSED)" \
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
    [[ $(uname -s) == Linux ]] || die "ffmpeg and ffprobe are required on the PATH (the docker fallback needs Linux host networking)"
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
    body=$(curl -fsS --max-time 3 "http://127.0.0.1:$EDGE_PORT/v1/source") && grep -qF "\"name\":\"$1\"" <<<"$body"
}

# True when no VideoSource or Recording is left in the namespace.
no_livemix_resources() { [[ -z $(kn get videosources,recordings -o name 2>/dev/null) ]]; }

# ---------------------------------------------------------------------------------------------------- steps

check_tools() {
    need docker "https://docs.docker.com/get-docker/"
    need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    need kubectl "https://kubernetes.io/docs/tasks/tools/"
    need helm "https://helm.sh/docs/intro/install/"
    need curl
    docker info >/dev/null 2>&1 || die "docker does not answer (is the daemon running, may this user use it?)"
    setup_ffmpeg
    log "tools: $(kind version), helm $(helm version --short 2>/dev/null), kubectl $(kubectl version --client 2>/dev/null | head -n1)"
}

create_cluster() {
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
    pass "kind cluster $CLUSTER ($(kc version 2>/dev/null | grep -i '^server version' || echo 'server version unknown'))"
}

install_ingress() {
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
    local component
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
    pass "images livemix-{control,edge,operator}:$TAG built and loaded"
}

install_chart() {
    log "helm upgrade --install $RELEASE (dev mode) into namespace $NAMESPACE"
    # The CRDs come from the chart's crds/ directory.
    hm upgrade --install "$RELEASE" "$CHART" -n "$NAMESPACE" --create-namespace \
        -f "$CHART/ci/dev-values.yaml" -f "$ROOT/kind-test/values.yaml" \
        --set-string "image.tag=$TAG" --set-string "operator.vodPublicUrl=$VOD_URL" \
        --wait --timeout "$((TIMEOUT * 3))s"
    kc get crd videosources.livemix.io recordings.livemix.io >/dev/null
    pass "helm install $RELEASE (dev mode, CRDs from the chart): every workload ready"
    hm test "$RELEASE" -n "$NAMESPACE" --timeout "${TIMEOUT}s" --logs >"$WORK/helm-test.log" 2>&1 || {
        cat "$WORK/helm-test.log" >&2
        die "helm test failed"
    }
    pass "helm test: control ready, management API answers with the release token"
}

apply_sources() {
    kn apply -f "$ROOT/crds/examples/videosource.yaml" -f "$ROOT/crds/examples/videosource-named.yaml" >/dev/null
    local vs
    for vs in "$JOB_SOURCE" "$PF_RESOURCE"; do
        wait_for "VideoSource $vs to be Ready" field_is "videosource/$vs" \
            '{.status.conditions[?(@.type=="Ready")].status}' True
    done
    pass "VideoSources $JOB_SOURCE and $PF_RESOURCE registered in the control node (Ready)"
}

# ffmpeg in the cluster pushes camera-0 into the edge Service.
push_from_job() {
    local edge_url="http://$EDGE_SERVICE:9080" args=() arg
    while IFS= read -r arg; do args+=("$arg"); done < <(ffmpeg_input_args 2)
    args+=("$edge_url/v1/ingest/$JOB_SOURCE/index.m3u8")
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
    kn port-forward "svc/$EDGE_SERVICE" "$EDGE_PORT:9080" >"$WORK/port-forward.log" 2>&1 &
    BACKGROUND_PIDS+=($!)
    wait_for "the port-forward to $EDGE_SERVICE" curl -fsS --max-time 3 "http://127.0.0.1:$EDGE_PORT/liveness/alive"
    local args=() arg
    while IFS= read -r arg; do args+=("$arg"); done < <(ffmpeg_input_args 4)
    "${FFMPEG[@]}" "${args[@]}" "http://127.0.0.1:$EDGE_PORT/v1/ingest/$PF_SOURCE/index.m3u8" \
        </dev/null >"$WORK/ffmpeg-port-forward.log" 2>&1 &
    BACKGROUND_PIDS+=($!)
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
    pass "live $vs through the ingress: $url ($codec)"
}

switch_on_streaming() {
    [[ $(jsonpath "videosource/$PF_RESOURCE" '{.status.streaming}') != true ]] \
        || die "VideoSource $PF_RESOURCE should start with streaming off (crds/examples/videosource-named.yaml)"
    wait_for "VideoSource $PF_RESOURCE to be reachable" field_is "videosource/$PF_RESOURCE" '{.status.reachable}' true
    kn patch videosource "$PF_RESOURCE" --type merge -p '{"spec":{"streaming":true}}' >/dev/null
    pass "VideoSource $PF_RESOURCE switched to streaming: true"
}

record_and_replay() {
    kn apply -f "$ROOT/crds/examples/recording.yaml" >/dev/null
    wait_for "Recording $RECORDING to be active" field_is "recording/$RECORDING" '{.status.active}' true
    log "recording until $RECORDING has $RECORD_SEGMENTS segments"
    wait_for "Recording $RECORDING to reach $RECORD_SEGMENTS segments" field_at_least "recording/$RECORDING" \
        '{.status.segments}' "$RECORD_SEGMENTS"
    pass "Recording $RECORDING active, $(jsonpath "recording/$RECORDING" '{.status.segments}') segments so far"

    kn patch recording "$RECORDING" --type merge -p '{"spec":{"stopped":true}}' >/dev/null
    wait_for "Recording $RECORDING to stop" field_is "recording/$RECORDING" '{.status.active}' false
    local url packets duration
    url=$(jsonpath "recording/$RECORDING" '{.status.playlistUrl}')
    [[ $url == "$VOD_URL"/v1/vod/recording/* ]] || die "Recording $RECORDING has playlistUrl '$url'"
    wait_for "the recording playlist at $url" check_playlist "$url" vod
    # Read every packet of every segment (no decoding): the whole recording is playable.
    packets=$(limited "${FFPROBE[@]}" -v error -select_streams v:0 -count_packets \
        -show_entries stream=nb_read_packets -of csv=p=0 "$url" 2>"$WORK/ffprobe-recording.log") || {
        cat "$WORK/ffprobe-recording.log" >&2
        die "ffprobe could not read the recording at $url"
    }
    packets=$(grep -m1 . <<<"$packets" || true) # one line per HLS program
    duration=$(limited "${FFPROBE[@]}" -v error -show_entries format=duration -of csv=p=0 "$url" 2>/dev/null || true)
    local expected=$((30 * 2 * (RECORD_SEGMENTS - 1))) # 30 frames/s, 2 s segments
    if ! [[ $packets =~ ^[0-9]+$ ]] || ((packets < expected)); then
        die "the recording at $url has '$packets' video packets, expected at least $expected"
    fi
    pass "replayed recording $RECORDING: $url ($packets video packets, ${duration%%.*}s)"
}

delete_resources() {
    kn delete job "ffmpeg-$JOB_SOURCE" --ignore-not-found --wait=false >/dev/null
    kn delete recording "$RECORDING" --wait=false >/dev/null
    kn delete videosource "$JOB_SOURCE" "$PF_RESOURCE" --wait=false >/dev/null
    # The finalizers stop the recording and delete the sources in the control node before the objects go.
    wait_for "the Recording and VideoSources to be deleted" no_livemix_resources
    pass "Recording and VideoSources deleted (finalizers cleaned up in the control node)"
}

# ---------------------------------------------------------------------------------------------------- main

check_tools
create_cluster
install_ingress
build_images
install_chart
apply_sources
push_from_job
play_live "$JOB_SOURCE"
push_through_port_forward
switch_on_streaming
play_live "$PF_RESOURCE"
record_and_replay
delete_resources
FAILED=0
log "VOD API through the ingress: $VOD_URL/v1/vod/..."
