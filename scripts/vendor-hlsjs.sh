#!/usr/bin/env bash
# Vendors hls.js into the control node's web console: the console is served from the binary (`include_bytes!`),
# works offline and loads nothing from a CDN. Run it to move to another version (update both pins), then commit
# control/assets/vendor/.
#
#   bash scripts/vendor-hlsjs.sh
#
# The tarball comes from the npm registry through npm itself (its cache and proxy settings apply) and must match
# the pinned integrity hash, so a changed or tampered package never lands.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.7.4
INTEGRITY=sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg==
DEST=control/assets/vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(cd "$work" && npm pack --silent --cache "${NPM_CONFIG_CACHE:-/var/cache/livemix-npm}" "hls.js@$VERSION")
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "hls.js@$VERSION: integrity $actual, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/dist/hls.min.js package/LICENSE
mkdir -p "$DEST"
install -m 0644 "$work/package/dist/hls.min.js" "$DEST/hls.min.js"
install -m 0644 "$work/package/LICENSE" "$DEST/hls.js.LICENSE"
echo "$VERSION" >"$DEST/hls.js.VERSION"
echo "[vendor] hls.js $VERSION -> $DEST ($(wc -c <"$DEST/hls.min.js") bytes)"
