#!/usr/bin/env bash
# Vendors hls.js into the control node's web console: the console is served from the binary (`include_bytes!`),
# works offline and loads nothing from a CDN. Run it to move to another version (update both pins), then commit
# control/assets/vendor/.
#
#   bash scripts/vendor-hlsjs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/npm_vendor.sh
source scripts/lib/npm_vendor.sh

npm_vendor hls.js 1.7.4 \
    sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg== \
    hls.js dist/hls.min.js=hls.min.js LICENSE=hls.js.LICENSE
