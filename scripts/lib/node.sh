# A real Kubernetes node on this machine, sourced by scripts/k8s.sh (`up --node`). See the notes in
# README.md's Kubernetes section: cgroup v1 (cgroupfs driver), no cap_sys_resource (containerd must not set a
# negative oom_score_adj), no Docker and no registry (images come from scripts/images.sh).
#
# Network: pods live on the bridge $NODE_BRIDGE ($NODE_IP/24, which is also the node's address) in network
# namespaces that containerd creates; Services are $SERVICE_CIDR through kube-proxy's iptables rules. A guard
# chain rejects anything a pod sends out of the bridge, so no pod traffic leaves this machine. `down` undoes all
# of it: containers, mounts, network namespaces, the bridge, iptables chains, sysctls and cgroups.
# shellcheck shell=bash

NODE_NAME=livemix-node
NODE_BRIDGE=lmx0
NODE_IP=${LIVEMIX_K8S_NODE_IP:-10.244.0.1}
NODE_POD_SUBNET=${NODE_IP%.*}.0/24
CLUSTER_CIDR=${NODE_IP%.*.*}.0.0/16
CLUSTER_DNS=10.96.0.10
INGRESS_NODE_PORT=${LIVEMIX_K8S_INGRESS_PORT:-30080}
NODE_DIR=$STATE/node
CONTAINERD_DIR=$STATE/containerd
CONTAINERD_SOCK=$CONTAINERD_DIR/containerd.sock
CONTAINERD_PID=$STATE/containerd.pid
CONTAINERD_LOG=$STATE/containerd.log
KUBELET_DIR=$STATE/kubelet
KUBELET_PID=$STATE/kubelet.pid
KUBELET_LOG=$STATE/kubelet.log
SCHED_PID=$STATE/kube-scheduler.pid
SCHED_LOG=$STATE/kube-scheduler.log
PROXY_PID=$STATE/kube-proxy.pid
PROXY_LOG=$STATE/kube-proxy.log
SYSCTL_SAVED=$STATE/host-sysctls.saved
GUARD_CHAIN=LIVEMIX-NODE-GUARD
ADDONS=$ROOT/scripts/k8s-addons
# Images the node itself needs (built by scripts/images.sh).
PAUSE_IMAGE=docker.io/livemix/pause:3.10-local
# The host settings the kubelet and kube-proxy change; recorded before the first `up --node`, restored by `down`.
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
    net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.conf.all.route_localnet
    net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
    net.netfilter.nf_conntrack_tcp_timeout_close_wait)

node_running() { our_pid "$KUBELET_PID" kubelet >/dev/null; }

# ---------------------------------------------------------------------------------------------------- host

save_sysctls() {
    [[ -s $SYSCTL_SAVED ]] && return 0
    local key value
    for key in "${NODE_SYSCTLS[@]}"; do
        value=$(sysctl -n "$key" 2>/dev/null) && printf '%s=%s\n' "$key" "$value"
    done >"$SYSCTL_SAVED.new"
    mv -f "$SYSCTL_SAVED.new" "$SYSCTL_SAVED"
    log "recorded host sysctls in $SYSCTL_SAVED (restored by down)"
}

restore_sysctls() {
    [[ -s $SYSCTL_SAVED ]] || return 0
    local line
    while IFS= read -r line; do
        sysctl -q -w "$line" >/dev/null 2>&1 || log "could not restore sysctl $line"
    done <"$SYSCTL_SAVED"
    rm -f "$SYSCTL_SAVED"
    log "restored host sysctls"
}

# The bridge exists before any pod so that the node has its address from the start.
up_bridge() {
    if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        ip link add "$NODE_BRIDGE" type bridge
    fi
    ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    # Pods reach each other and Services (routed through the host), never anything beyond the bridge.
    sysctl -q -w net.ipv4.ip_forward=1 >/dev/null
    sysctl -q -w net.bridge.bridge-nf-call-iptables=1 >/dev/null 2>&1 || true
    local ipt
    for ipt in iptables ip6tables; do
        "$ipt" -w -N "$GUARD_CHAIN" 2>/dev/null || "$ipt" -w -F "$GUARD_CHAIN"
        "$ipt" -w -A "$GUARD_CHAIN" -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j REJECT
        "$ipt" -w -A "$GUARD_CHAIN" -o "$NODE_BRIDGE" ! -i "$NODE_BRIDGE" -j REJECT
        "$ipt" -w -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null || "$ipt" -w -I FORWARD 1 -j "$GUARD_CHAIN"
    done
}

# Removes every iptables rule and chain of the node (KUBE-*, CNI-*, ours), keeping all others.
flush_node_iptables() {
    local ipt
    for ipt in iptables ip6tables; do
        command -v "$ipt-save" >/dev/null || continue
        "$ipt-save" | grep -v -E -e '(KUBE|CNI|LIVEMIX)-' | "$ipt-restore" -w || log "could not clean $ipt"
    done
}

# ---------------------------------------------------------------------------------------------------- pki

node_pki() {
    local common='basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
authorityKeyIdentifier = keyid'
    sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$common
extendedKeyUsage = clientAuth"
    sign kubelet-serving "/CN=$NODE_NAME" "$common
extendedKeyUsage = serverAuth
subjectAltName = IP:$NODE_IP, IP:$HOST, DNS:$NODE_NAME"
    sign scheduler "/CN=system:kube-scheduler" "$common
extendedKeyUsage = clientAuth"
    sign kube-proxy "/CN=system:kube-proxy" "$common
extendedKeyUsage = clientAuth"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$common
extendedKeyUsage = clientAuth"
    chmod 600 "$PKI"/*.key
}

# ---------------------------------------------------------------------------------------------------- containerd

write_containerd_config() {
    mkdir -p "$CONTAINERD_DIR/root" "$CONTAINERD_DIR/state" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam"
    # restrict_oom_score_adj: this VM lacks cap_sys_resource, so a negative oom_score_adj fails every sandbox.
    cat >"$CONTAINERD_DIR/config.toml" <<EOF
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
    # No masquerade: pods only talk to each other and to this host (the guard chain rejects the rest).
    cat >"$NODE_DIR/cni/net.d/10-livemix.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "livemix",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "rangeStart": "${NODE_IP%.*}.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_ready() { ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

up_containerd() {
    local t
    t=$(now_us)
    already_running containerd "$CONTAINERD_PID" "$CONTAINERD_LOG" containerd_ready && return 0
    write_containerd_config
    start containerd "$CONTAINERD_PID" "$CONTAINERD_LOG" - containerd --config "$CONTAINERD_DIR/config.toml"
    started containerd "$CONTAINERD_PID" "$CONTAINERD_LOG" "$t" containerd_ready
    log "containerd $(containerd --version | awk '{print $3}'), socket $CONTAINERD_SOCK"
}

# The images every node needs before its first pod: the sandbox, DNS and the ingress controller.
import_node_images() {
    local t
    t=$(now_us)
    LIVEMIX_CONTAINERD_SOCK=$CONTAINERD_SOCK bash "$ROOT/scripts/images.sh" build pause coredns traefik curl
    LIVEMIX_CONTAINERD_SOCK=$CONTAINERD_SOCK bash "$ROOT/scripts/images.sh" import pause coredns traefik curl
    log "node images ready in $(since "$t")"
}

# ---------------------------------------------------------------------------------------------------- kubelet

write_kubelet_config() {
    mkdir -p "$KUBELET_DIR"
    write_kubeconfig "$KUBELET_DIR/kubeconfig" kubelet "system:node:$NODE_NAME"
    # Pods with dnsPolicy Default (CoreDNS itself) get this; nothing here resolves names outside the cluster.
    printf 'nameserver %s\n' "$CLUSTER_DNS" >"$KUBELET_DIR/resolv.conf"
    cat >"$KUBELET_DIR/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $HOST
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: $KUBELET_DIR/resolv.conf
failSwapOn: false
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard:
  memory.available: 200Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
EOF
}

kubelet_healthy() { [[ $(curl -fsS --max-time 3 "http://$HOST:10248/healthz" 2>/dev/null) == ok ]]; }

up_kubelet() {
    local t
    t=$(now_us)
    already_running kubelet "$KUBELET_PID" "$KUBELET_LOG" kubelet_healthy && return 0
    write_kubelet_config
    start kubelet "$KUBELET_PID" "$KUBELET_LOG" 10250 "$BIN/kubelet" \
        --config="$KUBELET_DIR/config.yaml" --kubeconfig="$KUBELET_DIR/kubeconfig" \
        --root-dir="$KUBELET_DIR/root" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
    started kubelet "$KUBELET_PID" "$KUBELET_LOG" "$t" kubelet_healthy
}

# ---------------------------------------------------------------------------------------------------- scheduler, proxy

sched_healthy() { [[ $(curl -fsS --max-time 3 -k "https://$HOST:10259/healthz" 2>/dev/null) == ok ]]; }

up_scheduler() {
    local t
    t=$(now_us)
    already_running kube-scheduler "$SCHED_PID" "$SCHED_LOG" sched_healthy && return 0
    write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
    start kube-scheduler "$SCHED_PID" "$SCHED_LOG" 10259 "$BIN/kube-scheduler" \
        --kubeconfig="$STATE/scheduler.kubeconfig" --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/scheduler.kubeconfig" --bind-address="$HOST" --secure-port=10259 \
        --leader-elect=false --v=0
    started kube-scheduler "$SCHED_PID" "$SCHED_LOG" "$t" sched_healthy
}

proxy_healthy() { curl -fsS --max-time 3 -o /dev/null "http://$HOST:10256/healthz" 2>/dev/null; }

up_proxy() {
    local t
    t=$(now_us)
    already_running kube-proxy "$PROXY_PID" "$PROXY_LOG" proxy_healthy && return 0
    write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
    # NodePorts only on the bridge address, none on loopback (no route_localnet) or on the host's own network;
    # conntrack limits left as they are.
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $HOST
healthzBindAddress: $HOST:10256
metricsBindAddress: $HOST:10249
nodePortAddresses: ["$NODE_IP/32"]
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
    start kube-proxy "$PROXY_PID" "$PROXY_LOG" 10256 "$BIN/kube-proxy" --config="$STATE/kube-proxy.yaml" --v=0
    started kube-proxy "$PROXY_PID" "$PROXY_LOG" "$t" proxy_healthy
}

# ---------------------------------------------------------------------------------------------------- addons

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

node_ready() {
    [[ $(kubectl_admin get node "$NODE_NAME" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

deployment_available() {
    [[ $(kubectl_admin -n "$1" get deployment "$2" \
        -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}' 2>/dev/null) == True ]]
}

ingress_answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$NODE_IP:$INGRESS_NODE_PORT/" 2>/dev/null)
    [[ $code == 404 || $code == 2* ]]
}

up_addons() {
    local t
    t=$(now_us)
    local addon
    for addon in "$ADDONS"/*.yaml; do
        sed -e "s/@CLUSTER_DNS@/$CLUSTER_DNS/g" -e "s/@INGRESS_NODE_PORT@/$INGRESS_NODE_PORT/g" "$addon" \
            | kubectl_admin apply -f - >/dev/null || die "kubectl apply of $addon failed"
    done
    wait_node "CoreDNS to be available" deployment_available kube-system coredns
    wait_node "Traefik to be available" deployment_available ingress-traefik traefik
    wait_node "the ingress to answer at http://$NODE_IP:$INGRESS_NODE_PORT" ingress_answers
    log "CoreDNS ($CLUSTER_DNS) and Traefik (ingress class traefik, http://$NODE_IP:$INGRESS_NODE_PORT) ready in $(since "$t")"
}

# wait_node WHAT PROBE...: waits for PROBE while the kubelet runs.
wait_node() {
    local what=$1
    shift
    WAIT_WHAT=$what wait_ready kubelet "$KUBELET_PID" "$KUBELET_LOG" "$@"
}

cmd_node_up() {
    local t
    t=$(now_us)
    save_sysctls
    up_bridge
    up_containerd
    import_node_images
    up_kubelet
    up_proxy
    up_scheduler
    wait_node "node $NODE_NAME to be Ready" node_ready
    log "node $NODE_NAME Ready ($NODE_IP) after $(since "$t")"
    up_addons
    log "node up in $(since "$t"); ingress: http://$NODE_IP:$INGRESS_NODE_PORT"
}

# ---------------------------------------------------------------------------------------------------- down

# Kills every container of the node (the shims outlive containerd otherwise) and removes them.
remove_containers() {
    containerd_ready || return 0
    local ctr_cmd=(ctr --address "$CONTAINERD_SOCK" -n k8s.io) id
    for id in $("${ctr_cmd[@]}" tasks ls -q 2>/dev/null); do
        "${ctr_cmd[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $("${ctr_cmd[@]}" tasks ls -q 2>/dev/null); do
        "${ctr_cmd[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $("${ctr_cmd[@]}" containers ls -q 2>/dev/null); do
        "${ctr_cmd[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
}

# Unmounts what the kubelet and containerd mounted beneath the state directory, deepest first.
unmount_state() {
    local target n=0
    while IFS= read -r target; do
        umount -l "$target" 2>/dev/null && n=$((n + 1))
    done < <(findmnt -rn -o TARGET | awk -v p="$STATE/" 'index($0, p) == 1' | sort -r)
    ((n == 0)) || log "unmounted $n mounts under $STATE"
}

remove_pod_netns() {
    local ns n=0
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
        ip netns delete "$ns" 2>/dev/null && n=$((n + 1))
    done
    ((n == 0)) || log "removed $n pod network namespaces"
}

# Removes the (now empty) cgroups the kubelet made, deepest first.
remove_pod_cgroups() {
    local dir
    for dir in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
        [[ -d $dir ]] || continue
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

cmd_node_down() {
    local had_node=0
    if our_pid "$KUBELET_PID" kubelet >/dev/null || our_pid "$CONTAINERD_PID" containerd >/dev/null \
        || ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        had_node=1
    fi
    stop_relays
    stop kubelet "$KUBELET_PID"
    stop kube-proxy "$PROXY_PID"
    stop kube-scheduler "$SCHED_PID"
    remove_containers
    stop containerd "$CONTAINERD_PID"
    ((had_node)) || return 0
    pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $CONTAINERD_SOCK" 2>/dev/null || true
    unmount_state
    remove_pod_netns
    rm -rf "$NODE_DIR/cni/ipam"
    ip link delete "$NODE_BRIDGE" 2>/dev/null || true
    flush_node_iptables
    remove_pod_cgroups
    restore_sysctls
    log "node removed: containers, mounts, network namespaces, bridge $NODE_BRIDGE, iptables chains, sysctls"
}

# `host-state`: what the node changes on the host and `down` must put back, in a form to compare before/after:
# network links, iptables and ip6tables rules (without counters), network namespaces, mounts and the sysctls.
# A table that is loaded but empty (built-in chains with the ACCEPT policy, nothing else) counts as no state: the
# kernel loads tables on first use and never unloads them, so on a fresh host the first node leaves them behind.
cmd_host_state() {
    local ipt key
    ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//' | sort
    for ipt in iptables ip6tables; do
        command -v "$ipt-save" >/dev/null || continue
        { "$ipt-save" 2>/dev/null || true; } | awk -v ipt="$ipt" '
            /^#/ || /^COMMIT$/ { next }
            /^\*/ { table = substr($0, 2); next }
            /^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT( |$)/ { next }
            { sub(/ \[[0-9]+:[0-9]+\]$/, ""); print ipt " " table " " $0 }' | sort
    done
    ip netns list 2>/dev/null | awk '{print "netns " $1}' | sort
    findmnt -rn -o TARGET | sed 's/^/mount /' | sort
    for key in "${NODE_SYSCTLS[@]}"; do
        printf 'sysctl %s=%s\n' "$key" "$(sysctl -n "$key" 2>/dev/null)"
    done
}

install_node_packages() {
    local cmd missing=()
    for cmd in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
        iptables:iptables conntrack:conntrack socat:socat; do
        [[ ${cmd%%:*} == /* && -x ${cmd%%:*} ]] || command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
    done
    apt_install "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------------- host services

# `expose PORT...`: pods reach the host's loopback services (scripts/services.sh) at $NODE_IP:PORT, through a
# relay per port, the way a cluster reaches managed services outside it. The host's services keep listening on
# 127.0.0.1 only; the relays stop with `down`.
cmd_expose() {
    node_running || die "the node is not running (scripts/k8s.sh up --node)"
    command -v socat >/dev/null || install_node_packages
    local port pidfile
    for port in "$@"; do
        [[ $port =~ ^[0-9]+$ ]] || die "expose takes port numbers, not '$port'"
        pidfile=$STATE/relay-$port.pid
        if our_pid "$pidfile" socat >/dev/null; then
            continue
        fi
        start socat "$pidfile" "$STATE/relay-$port.log" - \
            socat "TCP-LISTEN:$port,bind=$NODE_IP,fork,reuseaddr" "TCP:$HOST:$port"
        log "pods reach $HOST:$port at $NODE_IP:$port"
    done
}

stop_relays() {
    local pidfile
    for pidfile in "$STATE"/relay-*.pid; do
        [[ -f $pidfile ]] || continue
        stop socat "$pidfile" >/dev/null
    done
}
