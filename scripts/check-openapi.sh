#!/usr/bin/env bash
# Validates the committed OpenAPI documents (docs/openapi/{management,vod,edge}.json) with openapi-spec-validator
# (PyPI), a tool nobody here wrote: each must be a valid OpenAPI 3.1 document. That they are what the code
# generates is checked by `cargo test -p livemix-control` (api::tests::openapi); rewrite them with
#   cargo run -p livemix-control --bin livemix-openapi -- docs/openapi
#
# Installs what is missing on Debian as root: python3-venv; the validator into a venv.
#
# Environment:
#   LIVEMIX_OPENAPI_VENV   venv of openapi-spec-validator   (default /var/tmp/livemix-venv-openapi)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LIVEMIX_OPENAPI_VENV:-/var/tmp/livemix-venv-openapi}
PACKAGES=(openapi-spec-validator==0.9.0)

log() { printf '[check-openapi] %s\n' "$*"; }
die() { printf '[check-openapi] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

ensure_venv

failed=0
for service in management vod edge; do
    doc=$ROOT/docs/openapi/$service.json
    [ -f "$doc" ] || die "$doc is missing: cargo run -p livemix-control --bin livemix-openapi -- docs/openapi"
    # The schema version is checked too: these documents are OpenAPI 3.1, and the validator must judge them so.
    version=$("$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["openapi"])' "$doc")
    case $version in
        3.1.*) ;;
        *) log "$service.json: openapi is $version, not 3.1.x"; failed=1; continue ;;
    esac
    if "$VENV/bin/openapi-spec-validator" --schema 3.1.0 "$doc"; then
        log "$service.json: valid OpenAPI $version"
    else
        log "$service.json: INVALID"
        failed=1
    fi
done
[ "$failed" -eq 0 ] || die "some OpenAPI documents are invalid"
log "3 documents valid"
