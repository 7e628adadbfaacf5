# shellcheck shell=bash
# kind-test step, sourced by kind-test/run.sh (uses its helpers: kn, hm, values_args, background, wait_for,
# all_pods_ready, pass, die, log).
#
# control_unreachable_alert (--local only): Prometheus (Debian's `prometheus`) runs on this machine with the chart's
# alert rules (templates/prometheusrule.yaml, LiveMixControlUnreachable after 1 minute instead of 5) and scrapes the
# release's pods at their addresses (the node's pods are reachable from the host), listed from the API server as
# file_sd targets while the step runs (Debian builds Prometheus without kubernetes_sd_configs) and labelled the way
# the chart's ServiceMonitors/PodMonitors label them: job=<fullname>-control|edge|operator, namespace, pod. Once every
# target is up, the control Deployment is scaled to 0: the alert must fire, and go once control is back.
# Scrapes and rule evaluations every 5 s keep the added time small. On kind the pods' addresses are inside Docker's
# network, so the step is skipped.

PROM_PID=
PROM_URL=
PROM_DIR=
# LiveMixControlUnreachable's `for:` in this step, in minutes (the chart's default is 5).
PROM_ALERT_MINUTES=1

# The value of the instant query $1 (the first series'), empty when the result is empty.
prom_value() {
    curl -fsS --max-time 5 --data-urlencode "query=$1" "$PROM_URL/api/v1/query" \
        | python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}

# True when the instant query $1 gives $2 (the targets refreshed first).
prom_value_is() { prometheus_targets && [[ $(prom_value "$1") == "$2" ]]; }

# The state of alert $1 for the release's namespace: firing, pending, or empty.
prom_alert_state() {
    curl -fsS --max-time 5 "$PROM_URL/api/v1/alerts" | python3 -c 'import json, sys
name, ns = sys.argv[1:3]
states = [a["state"] for a in json.load(sys.stdin)["data"]["alerts"]
          if a["labels"].get("alertname") == name and a["labels"].get("namespace") == ns]
print("firing" if "firing" in states else (states[0] if states else ""))' "$1" "$NAMESPACE"
}

prom_alert_inactive() { prometheus_targets && [[ -z $(prom_alert_state "$1") ]]; }

# A free TCP port on 127.0.0.1 from 19090 up.
free_port() {
    local port
    for port in $(seq 19090 19190); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# Service discovery for Prometheus: the release's pods (those with an address, terminating ones too, as
# kubernetes_sd_configs lists them) as file_sd targets, on the ports the chart's monitors scrape (control:
# management, edge: ingest, operator: http) and with the labels they set: job=<fullname>-<component>, namespace,
# pod. Written atomically; Prometheus re-reads the file when it changes.
prometheus_targets() {
    kn get pods -l "app.kubernetes.io/instance=$RELEASE" -o json | python3 -c 'import json, sys
fullname, ns = sys.argv[1:3]
ports = {"control": "management", "edge": "ingest", "operator": "http"}
groups = []
for pod in json.load(sys.stdin)["items"]:
    component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    ip = pod.get("status", {}).get("podIP")
    if component not in ports or not ip:
        continue
    for container in pod["spec"]["containers"]:
        for port in container.get("ports", []):
            if port.get("name") == ports[component]:
                groups.append({"targets": ["%s:%d" % (ip, port["containerPort"])],
                               "labels": {"job": "%s-%s" % (fullname, component), "namespace": ns,
                                          "pod": pod["metadata"]["name"]}})
json.dump(groups, sys.stdout, indent=1)' "$FULLNAME" "$NAMESPACE" >"$PROM_DIR/targets.json.new" \
        && mv "$PROM_DIR/targets.json.new" "$PROM_DIR/targets.json"
}

# Stops the Prometheus this step started (only that PID), and forgets it in BACKGROUND_PIDS.
stop_prometheus() {
    [[ -n $PROM_PID ]] || return 0
    kill -TERM "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true # its status is the signal's
    local pid kept=()
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        [[ $pid == "$PROM_PID" ]] || kept+=("$pid")
    done
    BACKGROUND_PIDS=(${kept[@]+"${kept[@]}"})
    PROM_PID=
}

start_prometheus() {
    local values=() arg port
    if ! command -v prometheus >/dev/null; then
        log "installing Debian's prometheus (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >"$WORK/apt-prometheus.log" 2>&1 \
            || { tail -n 20 "$WORK/apt-prometheus.log" >&2; die "could not install prometheus"; }
    fi
    PROM_DIR=$WORK/prometheus
    mkdir -p "$PROM_DIR/data"
    # The rules as the Prometheus Operator would load them: the PrometheusRule's .spec (its last top-level key).
    while IFS= read -r arg; do values+=("$arg"); done < <(values_args)
    hm template "$RELEASE" "$CHART" -n "$NAMESPACE" "${values[@]}" --show-only templates/prometheusrule.yaml \
        --set metrics.prometheusRule.enabled=true \
        --set "metrics.prometheusRule.controlUnreachableForMinutes=$PROM_ALERT_MINUTES" >"$PROM_DIR/prometheusrule.yaml"
    awk 'spec {print substr($0, 3)} /^spec:$/ {spec = 1}' "$PROM_DIR/prometheusrule.yaml" >"$PROM_DIR/rules.yaml"
    cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 5s
rule_files:
  - $PROM_DIR/rules.yaml
scrape_configs:
  # Targets and labels from prometheus_targets (Debian's prometheus has no kubernetes_sd_configs).
  - job_name: livemix-pods
    metrics_path: /metrics
    file_sd_configs:
      - files: [$PROM_DIR/targets.json]
        refresh_interval: 5s
EOF
    prometheus_targets || die "cannot list the release's pods for Prometheus"
    promtool check config "$PROM_DIR/prometheus.yml" >"$PROM_DIR/check.log" 2>&1 \
        || { cat "$PROM_DIR/check.log" >&2; die "promtool rejects the Prometheus configuration or the chart's rules"; }
    port=$(free_port) || die "no free port for Prometheus in 19090-19190"
    PROM_URL=http://127.0.0.1:$port
    background prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
        --storage.tsdb.retention.time=1h --web.listen-address="127.0.0.1:$port" >"$WORK/prometheus.log" 2>&1
    PROM_PID=${BACKGROUND_PIDS[-1]}
    wait_for "Prometheus at $PROM_URL to be ready" curl -fsS --max-time 3 "$PROM_URL/-/ready"
}

control_unreachable_alert() {
    if [[ $MODE != local ]]; then
        log "skipping the Prometheus alert step on kind: it runs with --local only (Prometheus on the host scrapes the pods' addresses)"
        return 0
    fi
    local t job_control job_edge job_operator replicas scaled_at pending="" fired resolved
    job_control="job=\"$FULLNAME-control\", namespace=\"$NAMESPACE\""
    job_edge="job=\"$FULLNAME-edge\", namespace=\"$NAMESPACE\""
    job_operator="job=\"$FULLNAME-operator\", namespace=\"$NAMESPACE\""
    t=$SECONDS
    start_prometheus
    replicas=$(jsonpath "deployment/$CONTROL_DEPLOYMENT" '{.spec.replicas}')
    [[ $replicas =~ ^[0-9]+$ ]] || replicas=0
    ((replicas > 0)) || die "the control Deployment runs '$replicas' replicas"
    local operators
    operators=$(jsonpath "deployment/$FULLNAME-operator" '{.spec.replicas}')
    # Every pod of the release answers under the chart's job labels; exactly one operator replica leads.
    wait_for "Prometheus to scrape $replicas control pods" prom_value_is "sum(up{$job_control})" "$replicas"
    wait_for "Prometheus to scrape the edge pod" prom_value_is "sum(up{$job_edge})" 1
    wait_for "Prometheus to scrape $operators operator pods" prom_value_is "sum(up{$job_operator})" "$operators"
    wait_for "one operator leader in the scraped gauges" prom_value_is "sum(livemix_operator_leader{$job_operator})" 1
    [[ -z $(prom_alert_state LiveMixControlUnreachable) ]] || die "LiveMixControlUnreachable is active while control is up"
    log "Prometheus at $PROM_URL scrapes $replicas control, 1 edge and $operators operator pods ($((SECONDS - t))s); scaling control to 0"

    scaled_at=$SECONDS
    kn scale "deployment/$CONTROL_DEPLOYMENT" --replicas=0 >/dev/null
    local deadline=$((SECONDS + 60 * PROM_ALERT_MINUTES + 150)) state
    while :; do
        prometheus_targets || true
        state=$(prom_alert_state LiveMixControlUnreachable) || state=
        [[ $state != pending || -n $pending ]] || pending=$((SECONDS - scaled_at))
        [[ $state != firing ]] || break
        ((SECONDS < deadline)) || {
            kn scale "deployment/$CONTROL_DEPLOYMENT" --replicas="$replicas" >/dev/null || true
            die "LiveMixControlUnreachable did not fire within $((60 * PROM_ALERT_MINUTES + 150))s of scaling control to 0 (state '${state:-inactive}')"
        }
        sleep 2
    done
    fired=$((SECONDS - scaled_at))

    t=$SECONDS
    kn scale "deployment/$CONTROL_DEPLOYMENT" --replicas="$replicas" >/dev/null
    kn rollout status "deployment/$CONTROL_DEPLOYMENT" --timeout="${TIMEOUT}s" >/dev/null
    wait_for "every pod of the release to be Ready after control came back" all_pods_ready
    wait_for "LiveMixControlUnreachable to resolve" prom_alert_inactive LiveMixControlUnreachable
    resolved=$((SECONDS - t))
    stop_prometheus
    pass "Prometheus with the chart's rules (for: ${PROM_ALERT_MINUTES}m): control scaled to 0, LiveMixControlUnreachable pending after ${pending:-?}s, firing after ${fired}s; control back, every pod Ready and the alert resolved after ${resolved}s"
}
