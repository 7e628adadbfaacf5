#!/usr/bin/env bash
# The test suite, from nothing: installs and starts the backing services (PostgreSQL, memcached, the Pub/Sub
# emulator, moto S3, ffmpeg) and a local Kubernetes API server, then runs every test against them.
#
#   bash scripts/test.sh                 everything
#   bash scripts/test.sh -p livemix-edge any extra arguments go to `cargo test`
#
# The first run on a machine builds the Kubernetes parts, CoreDNS and Traefik from their Go modules (15-25 minutes
# on 2 cores, cached under /var/cache/livemix-k8s and /var/cache/livemix-images); later runs start in seconds.
# Without arguments it also runs the web console's browser test (console-test/run.sh) and ends with
# kind-test/run.sh --local: the chart on a real node of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo "== [$(($(date +%s) - started))s] $*"; }

step "backing services"
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"

step "Kubernetes API server"
bash scripts/k8s.sh up
eval "$(bash scripts/k8s.sh env)"

step "cargo test --workspace $*"
cargo test --workspace --locked --no-fail-fast "$@"

if [ $# -eq 0 ]; then
  step "CRDs against the Kubernetes schemas"
  bash scripts/check-crds.sh
  step "Helm chart: lint, schema, golden files, install into the API server"
  bash scripts/check-chart.sh
  step "Helm chart monitoring: promtool check/test rules, monitors, Grafana dashboard"
  bash scripts/check-monitoring.sh
  step "OpenAPI documents: openapi-spec-validator"
  bash scripts/check-openapi.sh
  step "API contract: Schemathesis against the standalone binary and the split deployment"
  bash scripts/check-api-fuzz.sh
  step "web console in headless Chromium: a control node and an edge fed by ffmpeg"
  bash console-test/run.sh
  step "LiveMix on a real Kubernetes node: helm install, ffmpeg into the edge pod, playback through the ingress"
  bash kind-test/run.sh --local
fi
step "all tests passed"
