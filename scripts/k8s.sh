#!/usr/bin/env bash
# A local Kubernetes cluster for LiveMix development and tests (see README.md, "Kubernetes", for a machine
# with no cluster"): etcd, kube-apiserver and kube-controller-manager as local processes on 127.0.0.1 and, with
# --node, this machine as one real node (scripts/lib/node.sh): containerd, the kubelet, kube-scheduler,
# kube-proxy, CoreDNS and the Traefik ingress controller, so pods really run. Without --node no pod runs, but CRDs,
# CRs, status, finalizers, RBAC, garbage collection (ownerReferences), namespace deletion and helm installs are real.
#
#   scripts/k8s.sh up       build the binaries if not cached, start everything, wait for /readyz, write a kubeconfig
#   scripts/k8s.sh up --node  the same plus the node; Ready with DNS, an ingress (INGRESS_URL in `env`) and a
#                           dynamic provisioner (StorageClass local-path, the default: volumes are directories
#                           under $LIVEMIX_K8S_STATE/local-path)
#   scripts/k8s.sh down     stop what this script started and remove the node's traces from the host (bridge,
#                           iptables chains, mounts, network namespaces, sysctls) and the local-path volumes'
#                           directory; keeps etcd data, certificates and the image store
#   scripts/k8s.sh expose PORT...  pods reach these host loopback ports at the node address (PostgreSQL...)
#   scripts/k8s.sh host-state  print what the node changes on the host (links, iptables, netns, mounts,
#                           sysctls): the same before `up --node` and after `down`
#   scripts/k8s.sh status   print each process up/down and /readyz; exit non-zero if not ready
#   scripts/k8s.sh env      print `export NAME=value` lines: eval "$(scripts/k8s.sh env)"
#   scripts/k8s.sh build    only build (or check) the cached binaries
#   scripts/k8s.sh purge    down, then delete the state directory (not the build cache)
#
# The binaries are built once from the Go modules (no prebuilt binary is downloaded) into a cache OUTSIDE the
# repository and reused by every later `up`: a scratch Go module there requires k8s.io/kubernetes at a pinned
# release, replaces each k8s.io/* staging module (listed as v0.0.0 in k8s.io/kubernetes's go.mod) by its matching
# v0.X.Y release, and requires go.etcd.io/etcd/server/v3 at the etcd release that Kubernetes release is tested
# with. The first build takes 10-20 minutes on 2 cores (see the build log); later `up`s take a few seconds.
# Needs Go >= 1.25 (`go` on PATH or /usr/local/go/bin/go) with its module proxy, openssl and curl.
#
# Environment (all optional):
#   LIVEMIX_K8S_VERSION        k8s.io/kubernetes release            (default v1.34.12)
#   LIVEMIX_ETCD_VERSION       go.etcd.io/etcd/server/v3 release    (default v3.6.4)
#   LIVEMIX_K8S_CACHE          build cache                          (default /var/cache/livemix-k8s)
#   LIVEMIX_K8S_STATE          state, certificates, logs, etcd data (default /var/tmp/livemix-k8s)
#   LIVEMIX_K8S_API_PORT       kube-apiserver secure port           (default 6443)
#   LIVEMIX_K8S_ETCD_PORT      etcd client port                     (default 23790)
#   LIVEMIX_K8S_ETCD_PEER_PORT etcd peer port                       (default 23800)
#   LIVEMIX_K8S_KCM_PORT       kube-controller-manager secure port  (default 10257)
#   LIVEMIX_K8S_CONTROLLER_MANAGER  0 = do not run kube-controller-manager (default 1)
#   LIVEMIX_K8S_TIMEOUT        seconds to wait for each process to become ready (default 180)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=${LIVEMIX_K8S_VERSION:-v1.34.12}
ETCD_VERSION=${LIVEMIX_ETCD_VERSION:-v3.6.4}
CACHE=${LIVEMIX_K8S_CACHE:-/var/cache/livemix-k8s}
STATE=${LIVEMIX_K8S_STATE:-/var/tmp/livemix-k8s}
HOST=127.0.0.1
API_PORT=${LIVEMIX_K8S_API_PORT:-6443}
ETCD_PORT=${LIVEMIX_K8S_ETCD_PORT:-23790}
ETCD_PEER_PORT=${LIVEMIX_K8S_ETCD_PEER_PORT:-23800}
KCM_PORT=${LIVEMIX_K8S_KCM_PORT:-10257}
RUN_KCM=${LIVEMIX_K8S_CONTROLLER_MANAGER:-1}
TIMEOUT=${LIVEMIX_K8S_TIMEOUT:-180}
SERVICE_CIDR=10.96.0.0/12
SERVICE_IP=10.96.0.1 # first address of SERVICE_CIDR: the `kubernetes` Service
SA_ISSUER=https://kubernetes.default.svc.cluster.local

BUILD_DIR=$CACHE/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION
BIN=$BUILD_DIR/bin
SRC=$BUILD_DIR/src
BUILD_LOG=$BUILD_DIR/build.log
PKI=$STATE/pki
KUBECONFIG_FILE=$STATE/kubeconfig
ETCD_DATA=$STATE/etcd-data
ETCD_LOG=$STATE/etcd.log
ETCD_PID=$STATE/etcd.pid
API_LOG=$STATE/kube-apiserver.log
API_PID=$STATE/kube-apiserver.pid
KCM_LOG=$STATE/kube-controller-manager.log
KCM_PID=$STATE/kube-controller-manager.pid
# The directories of the node's PersistentVolumes (scripts/k8s-addons/local-path.yaml names the default one).
LOCAL_PATH_DIR=$STATE/local-path
LOCAL_PATH_DEFAULT=/var/tmp/livemix-k8s/local-path

# name:package of each binary built into $BIN.
TARGETS=(
    "kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver"
    "kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager"
    "kubectl:k8s.io/kubernetes/cmd/kubectl"
    "kube-scheduler:k8s.io/kubernetes/cmd/kube-scheduler"
    "kube-proxy:k8s.io/kubernetes/cmd/kube-proxy"
    "kubelet:k8s.io/kubernetes/cmd/kubelet"
    "etcd:go.etcd.io/etcd/server/v3"
)

log() { printf '[k8s] %s\n' "$*"; }
die() { printf '[k8s] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"
# shellcheck source=scripts/lib/node.sh
. "$ROOT/scripts/lib/node.sh"

# shellcheck source=scripts/lib/time.sh
. "$ROOT/scripts/lib/time.sh"

# ---------------------------------------------------------------------------------------------------- build

find_go() {
    local go
    go=$(command -v go || true)
    [[ -n $go ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; }
    [[ -n $go ]] || die "Go not found (neither 'go' on PATH nor /usr/local/go/bin/go); Go >= 1.25 is needed to build Kubernetes $K8S_VERSION"
    local v
    v=$("$go" env GOVERSION) || die "'$go env GOVERSION' failed"
    [[ $v =~ ^go1\.([0-9]+) ]] || die "cannot parse the Go version '$v' of $go"
    (( BASH_REMATCH[1] >= 25 )) || die "$go is $v; building Kubernetes $K8S_VERSION needs Go >= 1.25"
    GO=$go
}

binaries_present() {
    local t
    for t in "${TARGETS[@]}"; do
        [[ -x $BIN/${t%%:*} ]] || return 1
    done
}

# Writes $SRC/go.mod: the scratch module that pins every piece.
write_go_mod() {
    local json kmod goline godebug staging_version m
    log "resolving k8s.io/kubernetes@$K8S_VERSION"
    json=$(cd "$SRC" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>>"$BUILD_LOG") \
        || die "'go mod download k8s.io/kubernetes@$K8S_VERSION' failed; see $BUILD_LOG"
    kmod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$json")
    [[ -f $kmod ]] || die "could not find the go.mod of k8s.io/kubernetes@$K8S_VERSION in: $json"
    goline=$(grep -m1 -E '^go [0-9.]+$' "$kmod") || die "no go directive in $kmod"
    godebug=$(grep -E '^godebug ' "$kmod" || true)
    [[ $K8S_VERSION =~ ^v1\.([0-9]+\.[0-9]+)$ ]] || die "LIVEMIX_K8S_VERSION must look like v1.34.12, not $K8S_VERSION"
    staging_version=v0.${BASH_REMATCH[1]}
    {
        printf '// Generated by scripts/k8s.sh of LiveMix: builds kube-apiserver, kube-controller-manager,\n'
        printf '// kubectl and etcd from their Go modules.\nmodule livemix.local/k8s-tools\n\n%s\n' "$goline"
        [[ -z $godebug ]] || printf '%s\n' "$godebug"
        printf '\nrequire (\n\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n\n' "$K8S_VERSION" "$ETCD_VERSION"
        printf '// k8s.io/kubernetes requires its staging modules as v0.0.0, replaced to ./staging in its own repo.\n'
        printf 'replace (\n'
        # `k8s.io/NAME v0.0.0` lines of the require blocks.
        while read -r m; do
            printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"
        done < <(awk '$1 ~ /^k8s\.io\/[a-z0-9-]+$/ && $2 == "v0.0.0" {print $1}' "$kmod")
        printf ')\n'
    } >"$SRC/go.mod"
    grep -q '=> k8s.io/api ' "$SRC/go.mod" || die "found no k8s.io/* staging module in $kmod"
}

# go_build NAME PACKAGE LDFLAGS: builds $BIN/NAME, printing progress every 30 s.
go_build() {
    local name=$1 pkg=$2 ldflags=$3 t pid n
    t=$(now_us)
    log "building $name ($pkg) ..."
    printf '\n==== %s: go build %s\n' "$(date -u +%FT%TZ)" "$pkg" >>"$BUILD_LOG"
    (cd "$SRC" && exec "$GO" build -v -trimpath -mod=mod -ldflags "$ldflags" -o "$BIN/.$name.new" "$pkg") \
        >>"$BUILD_LOG" 2>&1 &
    pid=$!
    # shellcheck disable=SC2064 # the pid is meant to be expanded now
    trap "kill $pid 2>/dev/null || true" EXIT
    while ! wait_pid_for "$pid" 30; do
        n=$(grep -c -v -e '^go: ' -e '^====' "$BUILD_LOG" || true)
        log "  ... still building $name after $(since "$t") ($n lines in $BUILD_LOG)"
    done
    if ! wait "$pid"; then
        trap - EXIT
        tail -n 25 "$BUILD_LOG" >&2 || true
        die "building $name failed; full log: $BUILD_LOG (scratch module: $SRC)"
    fi
    trap - EXIT
    mv -f "$BIN/.$name.new" "$BIN/$name"
    log "built $name in $(since "$t") ($(du -h "$BIN/$name" | cut -f1))"
}


build() {
    binaries_present && return 0
    if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w $CACHE ]]; then
        die "cannot write the build cache $CACHE; set LIVEMIX_K8S_CACHE to a writable directory outside the repository"
    fi
    find_go
    local lock=$CACHE/.build.lock
    exec 9>"$lock"
    if ! flock -n 9; then
        log "another build holds $lock; waiting for it"
        flock 9
    fi
    if binaries_present; then exec 9>&-; return 0; fi

    local t k8s_ldflags key val minor t_name
    t=$(now_us)
    mkdir -p "$SRC" "$BIN"
    : >"$BUILD_LOG"
    log "building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $BIN, once: on 2 cores this takes"
    log "  about 10-20 minutes (~600 MB of modules, then compiling); log: $BUILD_LOG"
    # A Go build cache of its own (~3 GB), removed once every binary is built: kept after a failure so that
    # a retry resumes where it stopped.
    export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS='' GO111MODULE=on GOCACHE=$BUILD_DIR/go-build
    write_go_mod

    # The version stamps Kubernetes' own build sets (hack/lib/version.sh): without them the server reports
    # v0.0.0-master, which breaks helm's kubeVersion checks.
    minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    k8s_ldflags="-s -w"
    for key in "gitVersion=$K8S_VERSION" gitMajor=1 "gitMinor=$minor" gitTreeState=clean \
        "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
        val=${key#*=}
        key=${key%%=*}
        k8s_ldflags+=" -X k8s.io/client-go/pkg/version.$key=$val -X k8s.io/component-base/version.$key=$val"
    done

    local target
    for target in "${TARGETS[@]}"; do
        t_name=${target%%:*}
        [[ -x $BIN/$t_name ]] && continue
        if [[ $t_name == etcd ]]; then
            go_build "$t_name" "${target#*:}" "-s -w"
        else
            go_build "$t_name" "${target#*:}" "$k8s_ldflags"
        fi
    done
    {
        printf 'kubernetes %s\netcd %s\n' "$K8S_VERSION" "$ETCD_VERSION"
        "$GO" version
        printf 'built %s in %s\n' "$(date -u +%FT%TZ)" "$(since "$t")"
    } >"$BUILD_DIR/VERSIONS"
    rm -rf "$GOCACHE"
    exec 9>&-
    log "build done in $(since "$t"): $(cd "$BIN" && echo *)"
}

# ---------------------------------------------------------------------------------------------------- pki

# make_ca NAME CN: a self-signed CA, $PKI/NAME.{key,crt}.
make_ca() {
    openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
    printf '%s\n' '[req]' 'distinguished_name = dn' '[dn]' '[ca]' \
        'basicConstraints = critical, CA:TRUE' 'keyUsage = critical, keyCertSign, cRLSign, digitalSignature' \
        'subjectKeyIdentifier = hash' >"$PKI/$1.cnf"
    openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
        -config "$PKI/$1.cnf" -extensions ca -out "$PKI/$1.crt"
    rm -f "$PKI/$1.cnf"
}

# sign NAME SUBJECT EXTENSIONS [CA]: a key and a certificate signed by CA (default ca), in $PKI.
sign() {
    local name=$1 subj=$2 ext=$3 ca=${4:-ca}
    openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
    printf '%s\n' "$ext" >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$PKI/$name.ext" \
        -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

PKI_FILES=(ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key controller-manager.crt
    controller-manager.key front-proxy-ca.crt front-proxy-ca.key front-proxy-client.crt front-proxy-client.key
    sa.key sa.pub tokens.csv kubelet.crt kubelet-serving.crt scheduler.crt kube-proxy.crt
    apiserver-kubelet-client.crt)

pki_complete() {
    local f
    for f in "${PKI_FILES[@]}"; do
        [[ -s $PKI/$f ]] || return 1
    done
}

gen_pki() {
    command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"
    local t
    t=$(now_us)
    rm -rf "$PKI"
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    make_ca ca livemix-k8s-ca
    local common='basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
authorityKeyIdentifier = keyid'
    # kube-apiserver serving certificate
    sign apiserver "/CN=kube-apiserver" "$common
extendedKeyUsage = serverAuth
subjectAltName = IP:$HOST, IP:$NODE_IP, DNS:localhost, IP:$SERVICE_IP, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
    # cluster admin: group system:masters
    sign admin "/O=system:masters/CN=admin" "$common
extendedKeyUsage = clientAuth"
    # kube-controller-manager's identity (bound by the default RBAC policy)
    sign controller-manager "/CN=system:kube-controller-manager" "$common
extendedKeyUsage = clientAuth"
    # aggregation layer (front proxy): its own CA and the client certificate kube-apiserver proxies with
    make_ca front-proxy-ca livemix-k8s-front-proxy-ca
    sign front-proxy-client "/CN=front-proxy-client" "$common
extendedKeyUsage = clientAuth" front-proxy-ca
    # service-account token signing key pair
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    # a static bearer token for the admin too (curl, tools that take a token)
    printf '%s,admin-token,admin-token,"system:masters"\n' "$(openssl rand -hex 24)" >"$PKI/tokens.csv"
    node_pki
    chmod 600 "$PKI"/*.key "$PKI/tokens.csv"
    log "generated certificates and keys in $PKI in $(since "$t")"
}

b64() { base64 -w0 <"$1"; }

# write_kubeconfig FILE CERT_NAME USER
write_kubeconfig() {
    local file=$1 cert=$2 user=$3
    (umask 077 && cat >"$file.new") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: livemix
  cluster:
    server: https://$HOST:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$PKI/$cert.crt")
    client-key-data: $(b64 "$PKI/$cert.key")
contexts:
- name: livemix
  context:
    cluster: livemix
    user: $user
    namespace: default
current-context: livemix
preferences: {}
EOF
    mv -f "$file.new" "$file"
}

# ---------------------------------------------------------------------------------------------------- processes

# our_pid PIDFILE NAME: prints the pid if the pid file names a live process running our cached NAME binary.
our_pid() {
    local pid exe
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    # Our cached builds, or the system's containerd and socat (the node's relays).
    [[ $exe == "$CACHE"/*/bin/"$2" || (($2 == containerd || $2 == socat) && $exe == */bin/"$2") ]] || return 1
    printf '%s' "$pid"
}

# check_port NAME PIDFILE PORT: dies if PORT is in use while our NAME is not running.
check_port() {
    if ! our_pid "$2" "$1" >/dev/null && port_in_use "$3"; then
        die "cannot start $1: port $HOST:$3 is already in use by another process (see: ss -ltnp 'sport = :$3')"
    fi
}

port_in_use() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# start NAME PIDFILE LOGFILE PORT COMMAND...: starts COMMAND detached, in its own session (PORT - for none).
start() {
    local name=$1 pidfile=$2 logfile=$3 port=$4
    shift 4
    if [[ $port != - ]] && port_in_use "$port"; then
        die "cannot start $name: port $HOST:$port is already in use by another process (see: ss -ltnp 'sport = :$port')"
    fi
    printf '\n==== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logfile"
    rm -f "$pidfile"
    # The inner shell writes its own pid, then becomes the program (exec keeps the pid).
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c 'printf "%s\n" "$$" >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
    local i
    for (( i = 0; i < 100; i++ )); do
        our_pid "$pidfile" "$name" >/dev/null && return 0
        sleep 0.1
    done
    tail -n 20 "$logfile" >&2 || true
    die "$name did not start; log: $logfile"
}

# wait_ready NAME PIDFILE LOGFILE PROBE...: polls PROBE until it succeeds, the process dies or $TIMEOUT passes
# (WAIT_WHAT, if set, says what is awaited).
wait_ready() {
    local name=$1 pidfile=$2 logfile=$3 start
    shift 3
    start=$(now_us)
    until "$@"; do
        if ! our_pid "$pidfile" "$name" >/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited while starting; log: $logfile"
        fi
        if (( $(now_us) - start > TIMEOUT * 1000000 )); then
            tail -n 20 "$logfile" >&2 || true
            die "timed out after ${TIMEOUT}s waiting for ${WAIT_WHAT:-$name to become ready}; log: $logfile"
        fi
        sleep 0.5
    done
}

# already_running NAME PIDFILE LOGFILE [PROBE...]: true when our NAME process runs (and PROBE succeeds).
already_running() {
    our_pid "$2" "$1" >/dev/null || return 1
    (($# == 3)) || wait_ready "$@"
    log "$1 already running (pid $(<"$2"))"
}

# started NAME PIDFILE LOGFILE SINCE PROBE...: waits for PROBE of the process just started at SINCE (µs), logs it.
started() {
    local name=$1 pidfile=$2 logfile=$3 t=$4
    shift 4
    wait_ready "$name" "$pidfile" "$logfile" "$@"
    log "$name started (pid $(<"$pidfile")) in $(since "$t"); log: $logfile"
}

etcd_healthy() {
    [[ $(curl -fsS --max-time 3 "http://$HOST:$ETCD_PORT/health" 2>/dev/null) == *'"health":"true"'* ]]
}

api_get() {
    curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://$HOST:$API_PORT$1" 2>/dev/null
}

api_ready() { [[ $(api_get /readyz) == ok ]]; }

kcm_healthy() {
    [[ $(curl -fsS --max-time 3 -k "https://$HOST:$KCM_PORT/healthz" 2>/dev/null) == ok ]]
}

up_etcd() {
    local t
    t=$(now_us)
    already_running etcd "$ETCD_PID" "$ETCD_LOG" etcd_healthy && return 0
    mkdir -p "$ETCD_DATA"
    chmod 700 "$ETCD_DATA"
    # --unsafe-no-fsync: a throwaway development store; fsync on a shared disk makes the apiserver crawl.
    start etcd "$ETCD_PID" "$ETCD_LOG" "$ETCD_PORT" "$BIN/etcd" \
        --name livemix --data-dir "$ETCD_DATA" \
        --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
        --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
        --initial-cluster "livemix=http://$HOST:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level warn
    started etcd "$ETCD_PID" "$ETCD_LOG" "$t" etcd_healthy
}

# True when the running kube-apiserver serves pods (was started for a node).
apiserver_serves_node() {
    local pid
    pid=$(our_pid "$API_PID" kube-apiserver) && ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx -- '--endpoint-reconciler-type=none'
}

up_apiserver() {
    local t net_args
    t=$(now_us)
    if our_pid "$API_PID" kube-apiserver >/dev/null; then
        if ((WITH_NODE)) && ! apiserver_serves_node; then
            log "restarting kube-apiserver so that pods can reach it"
            # The controller manager goes too: one that reconnects while the new server's RBAC is still loading
            # backs off its watches ("forbidden") and leaves new pods out of Service endpoints for a long while.
            stop kube-controller-manager "$KCM_PID"
            stop kube-apiserver "$API_PID"
        else
            already_running kube-apiserver "$API_PID" "$API_LOG" api_ready && return 0
        fi
    fi
    if ((WITH_NODE)); then
        # Pods reach it through the `kubernetes` Service, whose endpoint is the node's bridge address.
        net_args=(--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --endpoint-reconciler-type=lease
            --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
            --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP)
    else
        # No pod runs: the `kubernetes` Service cannot have a loopback endpoint.
        net_args=(--bind-address="$HOST" --advertise-address="$HOST" --endpoint-reconciler-type=none)
    fi
    start kube-apiserver "$API_PID" "$API_LOG" "$API_PORT" "$BIN/kube-apiserver" \
        "${net_args[@]}" --secure-port="$API_PORT" \
        --etcd-servers="http://$HOST:$ETCD_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
        --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
        --service-account-issuer="$SA_ISSUER" \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --authorization-mode=Node,RBAC --allow-privileged=true \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --enable-admission-plugins=NodeRestriction \
        --profiling=false --v=0
    started kube-apiserver "$API_PID" "$API_LOG" "$t" api_ready
}

up_kcm() {
    local t
    t=$(now_us)
    already_running kube-controller-manager "$KCM_PID" "$KCM_LOG" kcm_healthy && return 0
    write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
    # The default controllers: with no cloud provider and no --allocate-node-cidrs the cloud and node-IPAM ones
    # stay off; the others (namespace, garbage collector, service accounts, deployments...) do their usual work.
    start kube-controller-manager "$KCM_PID" "$KCM_LOG" "$KCM_PORT" "$BIN/kube-controller-manager" \
        --kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --bind-address="$HOST" --secure-port="$KCM_PORT" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --profiling=false --v=0
    started kube-controller-manager "$KCM_PID" "$KCM_LOG" "$t" kcm_healthy
}

# stop NAME PIDFILE: TERM, then KILL after 20 s.
stop() {
    local name=$1 pidfile=$2 pid
    if ! pid=$(our_pid "$pidfile" "$name"); then
        rm -f "$pidfile"
        log "$name not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_for "$pid" 20; then
        log "$name (pid $pid) did not stop after 20s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_for "$pid" 5 || die "could not stop $name (pid $pid)"
    fi
    rm -f "$pidfile"
    log "$name stopped (pid $pid)"
}

rss_of() {
    local pid=$1
    awk '/^VmRSS:/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------------- commands

print_env() {
    printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_FILE"
    # kubectl matching the server's version, first on PATH.
    # shellcheck disable=SC2016 # $PATH is for the shell that evals this
    printf 'export PATH=%s:"$PATH"\n' "$BIN"
    if node_running; then
        printf 'export INGRESS_URL=http://%s:%s\n' "$NODE_IP" "$INGRESS_NODE_PORT"
        printf 'export LIVEMIX_CONTAINERD_SOCK=%s\n' "$CONTAINERD_SOCK"
    fi
}

cmd_up() {
    local t
    t=$(now_us)
    command -v curl >/dev/null || die "curl not found (apt-get install -y curl)"
    build
    mkdir -p "$STATE"
    ((!WITH_NODE)) || install_node_packages
    if ! pki_complete; then
        # New (or incomplete) certificates: whatever runs with the old ones must restart.
        if compgen -G "$STATE/*.pid" >/dev/null; then cmd_down; fi
        gen_pki
    fi
    # Fail before starting anything if a port that one of ours would take is held by another process.
    check_port etcd "$ETCD_PID" "$ETCD_PORT"
    check_port etcd "$ETCD_PID" "$ETCD_PEER_PORT"
    check_port kube-apiserver "$API_PID" "$API_PORT"
    [[ $RUN_KCM == 0 ]] || check_port kube-controller-manager "$KCM_PID" "$KCM_PORT"
    up_etcd
    ((WITH_NODE == 0)) || { save_sysctls; up_bridge; }
    up_apiserver
    write_kubeconfig "$KUBECONFIG_FILE" admin admin
    if [[ $RUN_KCM != 0 ]]; then
        up_kcm
    fi
    log "control plane ready in $(since "$t"): Kubernetes $K8S_VERSION at https://$HOST:$API_PORT"
    if ((WITH_NODE)); then
        # Built before the node starts (containerd must run to import it: up_local_path).
        bash "$ROOT/scripts/images.sh" build local-path
        mkdir -p "$LOCAL_PATH_DIR"
        cmd_node_up
        up_local_path
    fi
    log "use it with:"
    print_env | sed 's/^/    /'
    log "or: eval \"\$(scripts/k8s.sh env)\""
}

cmd_down() {
    cmd_node_down
    stop kube-controller-manager "$KCM_PID"
    stop kube-apiserver "$API_PID"
    stop etcd "$ETCD_PID"
    if [[ -d $LOCAL_PATH_DIR ]]; then
        rm -rf "$LOCAL_PATH_DIR"
        log "removed the local-path volumes' directory $LOCAL_PATH_DIR"
    fi
}

# The local-path provisioner (scripts/k8s-addons/local-path.yaml, applied with the other addons): its image is
# imported once containerd runs, so a pod that found it missing (ErrImageNeverPull) is replaced.
up_local_path() {
    local t
    t=$(now_us)
    LIVEMIX_CONTAINERD_SOCK=$CONTAINERD_SOCK bash "$ROOT/scripts/images.sh" import local-path
    if [[ $LOCAL_PATH_DIR != "$LOCAL_PATH_DEFAULT" ]]; then
        sed "s|$LOCAL_PATH_DEFAULT|$LOCAL_PATH_DIR|g" "$ADDONS/local-path.yaml" | kubectl_admin apply -f - >/dev/null \
            || die "kubectl apply of $ADDONS/local-path.yaml failed"
    fi
    if ! deployment_available local-path-storage local-path-provisioner; then
        kubectl_admin -n local-path-storage delete pod -l app=local-path-provisioner --wait=false >/dev/null 2>&1 || true
    fi
    wait_node "the local-path provisioner to be available" deployment_available local-path-storage local-path-provisioner
    # `down` removed the directories of the volumes that etcd still lists: they come back empty and writable as
    # the provisioner's setup script makes them (a kubelet that got there first made them root's, 0755).
    local path n=0
    while IFS= read -r path; do
        [[ $path == "$LOCAL_PATH_DIR"/* ]] || continue
        [[ -d $path && $(stat -c %a "$path") == 777 ]] && continue
        mkdir -p "$path" && chmod 0777 "$path"
        n=$((n + 1))
    done < <(kubectl_admin get pv \
        -o 'jsonpath={range .items[?(@.spec.storageClassName=="local-path")]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null)
    ((n == 0)) || log "made the (empty) directories of $n local-path volumes left from before down"
    log "local-path provisioner ready in $(since "$t"): StorageClass local-path (default), volumes in $LOCAL_PATH_DIR"
}

cmd_status() {
    local ok=0 name pidfile pid
    local node=0
    our_pid "$CONTAINERD_PID" containerd >/dev/null && node=1
    for name in etcd kube-apiserver kube-controller-manager containerd kubelet kube-proxy kube-scheduler; do
        case $name in
            etcd) pidfile=$ETCD_PID ;;
            kube-apiserver) pidfile=$API_PID ;;
            kube-controller-manager) pidfile=$KCM_PID ;;
            containerd) pidfile=$CONTAINERD_PID ;;
            kubelet) pidfile=$KUBELET_PID ;;
            kube-proxy) pidfile=$PROXY_PID ;;
            kube-scheduler) pidfile=$SCHED_PID ;;
        esac
        if pid=$(our_pid "$pidfile" "$name"); then
            printf '%-24s up    pid %s, RSS %s\n' "$name" "$pid" "$(rss_of "$pid")"
        elif [[ $name == etcd || $name == kube-apiserver || ($name == kube-controller-manager && $RUN_KCM != 0) ]] \
            || ((node)); then
            printf '%-24s down\n' "$name"
            ok=1
        fi
    done
    if ((node)); then
        if node_ready; then
            printf '%-24s Ready (%s)\n' "node $NODE_NAME" "$NODE_IP"
        else
            printf '%-24s not Ready\n' "node $NODE_NAME"
            ok=1
        fi
    fi
    if [[ -f $PKI/ca.crt ]] && api_ready; then
        printf '%-24s ok (https://%s:%s/readyz)\n' readyz "$HOST" "$API_PORT"
    else
        printf '%-24s not ready (https://%s:%s/readyz)\n' readyz "$HOST" "$API_PORT"
        ok=1
    fi
    printf '%-24s %s\n' kubeconfig "$KUBECONFIG_FILE" binaries "$BIN" logs "$STATE/*.log"
    return "$ok"
}

cmd_purge() {
    cmd_down
    rm -rf "$STATE"
    log "removed $STATE"
}

WITH_NODE=0
if [[ ${1:-} == up && ${2:-} == --node ]]; then
    WITH_NODE=1
elif [[ ${1:-} == expose ]]; then
    shift
    cmd_expose "$@"
    exit 0
elif (($# > 1)); then
    printf 'usage: %s up [--node]|down|status|env|host-state|expose PORT...|build|purge\n' "$0" >&2
    exit 2
fi

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) print_env ;;
    host-state) cmd_host_state ;;
    build) build; log "binaries in $BIN" ;;
    purge) cmd_purge ;;
    *) printf 'usage: %s up [--node]|down|status|env|host-state|expose PORT...|build|purge\n' "$0" >&2; exit 2 ;;
esac
