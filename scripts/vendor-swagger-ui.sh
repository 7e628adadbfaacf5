#!/usr/bin/env bash
# Vendors Swagger UI into the control node's API reference (`/ui/api` on the management port): served from the
# binary (`include_bytes!`), works offline and loads nothing from a CDN. Run it to move to another version (update
# both pins), then commit control/assets/vendor/.
#
#   bash scripts/vendor-swagger-ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/npm_vendor.sh
source scripts/lib/npm_vendor.sh

npm_vendor swagger-ui-dist 5.36.0 \
    sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+CMOTzMmvpJRSXN7EAjfwixwmoi9ezDbLHiexC7lA9A== \
    swagger-ui swagger-ui-bundle.js=swagger-ui-bundle.js swagger-ui.css=swagger-ui.css LICENSE=swagger-ui.LICENSE
