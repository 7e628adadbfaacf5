#!/usr/bin/env bash
# The test suite, from nothing: installs and starts the backing services (PostgreSQL, memcached, the Pub/Sub
# emulator, moto S3, ffmpeg) and a local Kubernetes API server, then runs every test against them.
#
#   bash scripts/test.sh                 everything
#   bash scripts/test.sh -p livemix-edge any extra arguments go to `cargo test`
#
# The first run on a machine builds kube-apiserver and etcd from their Go modules (10-20 minutes, cached
# under /var/cache/livemix-k8s); later runs start in seconds.
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
cargo test --workspace --locked "$@"

if [ $# -eq 0 ]; then
  step "CRDs against the Kubernetes schemas"
  bash scripts/check-crds.sh
  step "Helm chart: lint, schema, golden files, install into the API server"
  bash scripts/check-chart.sh
fi
step "all tests passed"
