#!/usr/bin/env bash
# Vendors Swagger UI into the control node's API reference (`/ui/api` on the management port): served from the
# binary (`include_bytes!`), works offline and loads nothing from a CDN. Run it to move to another version (update
# both pins), then commit control/assets/vendor/.
#
#   bash scripts/vendor-swagger-ui.sh
#
# The tarball comes from the npm registry through npm itself (its cache and proxy settings apply) and must match
# the pinned integrity hash, so a changed or tampered package never lands.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=5.36.0
INTEGRITY=sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+CMOTzMmvpJRSXN7EAjfwixwmoi9ezDbLHiexC7lA9A==
DEST=control/assets/vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(cd "$work" && npm pack --silent --cache "${NPM_CONFIG_CACHE:-/var/cache/livemix-npm}" "swagger-ui-dist@$VERSION")
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "swagger-ui-dist@$VERSION: integrity $actual, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE
mkdir -p "$DEST"
install -m 0644 "$work/package/swagger-ui-bundle.js" "$DEST/swagger-ui-bundle.js"
install -m 0644 "$work/package/swagger-ui.css" "$DEST/swagger-ui.css"
install -m 0644 "$work/package/LICENSE" "$DEST/swagger-ui.LICENSE"
echo "$VERSION" >"$DEST/swagger-ui.VERSION"
echo "[vendor] swagger-ui-dist $VERSION -> $DEST ($(wc -c <"$DEST/swagger-ui-bundle.js") bytes)"
