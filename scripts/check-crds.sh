#!/usr/bin/env bash
# Validates the operator's CRDs and the example resources, offline (see README.md, "Kubernetes").
#
#   scripts/check-crds.sh
#
# 1. crds/*.yaml against Kubernetes' own CustomResourceDefinition schema: `kubernetes-validate --strict`
#    (unknown fields are errors).
# 2. crds/examples/*.yaml against the openAPIV3Schema of the CRD of their kind, with `jsonschema`: types, required
#    fields, patterns, ranges, enums and date-time formats; unknown fields are errors, as with kubectl's strict
#    field validation. CEL rules (x-kubernetes-validations) need an API server and are not checked here.
#
# The tools live in a venv, created on first use (Debian bookworm, as root: installs python3-venv if missing).
#
# Environment (all optional):
#   LIVEMIX_K8S_VENV      venv directory             (default /var/tmp/livemix-venv-k8s)
#   LIVEMIX_K8S_VERSION   Kubernetes version to check (default 1.34, the k8s-openapi feature the operator uses)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LIVEMIX_K8S_VENV:-/var/tmp/livemix-venv-k8s}
K8S_VERSION=${LIVEMIX_K8S_VERSION:-1.34}
PACKAGES=(kubernetes-validate jsonschema pyyaml)

log() { printf '[check-crds] %s\n' "$*"; }
die() { printf '[check-crds] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

ensure_venv

shopt -s nullglob
crds=("$ROOT"/crds/*.yaml)
examples=("$ROOT"/crds/examples/*.yaml)
[ ${#crds[@]} -gt 0 ] || die "no CRDs in $ROOT/crds (run: cargo run -p livemix-operator --bin crdgen)"
[ ${#examples[@]} -gt 0 ] || die "no examples in $ROOT/crds/examples"

log "CRDs against Kubernetes $K8S_VERSION (kubernetes-validate --strict)"
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "${crds[@]}"

log "examples against the CRD schemas (jsonschema)"
"$VENV/bin/python" - "${#crds[@]}" "${crds[@]}" "${examples[@]}" <<'PY'
import copy, datetime, sys

import jsonschema
import yaml

n = int(sys.argv[1])
crd_files, example_files = sys.argv[2:2 + n], sys.argv[2 + n:]

schemas = {}  # (apiVersion, kind) -> openAPIV3Schema
for path in crd_files:
    with open(path) as f:
        for crd in yaml.safe_load_all(f):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]


def strict(schema):
    """Unknown fields are errors (kubectl's strict field validation); nullable fields accept null."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (node.get("type") in ("object", ["object", "null"]) and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

    for prop in schema.get("properties", {}).values():
        walk(prop)
    # The root lists only spec and status; apiVersion, kind and metadata are the API server's.
    schema.setdefault("properties", {}).update({
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
    })
    schema["additionalProperties"] = False
    return schema


checker = jsonschema.FormatChecker()


@checker.checks("date-time", raises=ValueError)
def date_time(value):
    if not isinstance(value, str):
        return True
    datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value


failed = 0
for path in example_files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = (doc.get("metadata") or {}).get("name")
        where = f"{path} ({key[1]} {name})"
        if key not in schemas:
            print(f"ERROR {where}: no CRD defines {key[1]} in {key[0]}")
            failed += 1
            continue
        if not name:
            print(f"ERROR {where}: metadata.name is missing")
            failed += 1
            continue
        validator = jsonschema.Draft7Validator(strict(schemas[key]), format_checker=checker)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for error in errors:
            field = ".".join(str(p) for p in error.path) or "<root>"
            print(f"ERROR {where}: {field}: {error.message}")
        if errors:
            failed += 1
        else:
            print(f"INFO {where} passed against the {key[1]} CRD schema")
sys.exit(1 if failed else 0)
PY
log "all CRDs and examples are valid"
