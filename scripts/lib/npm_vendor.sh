# shellcheck shell=bash
# Sourced by scripts/vendor-*.sh: fetches one npm package through npm itself (its cache and proxy settings apply),
# refuses it unless it matches the pinned integrity hash (so a changed or tampered package never lands), and
# installs the listed files into control/assets/vendor/, which the control node embeds (`include_bytes!`).

# npm_vendor PACKAGE VERSION INTEGRITY NAME FROM=TO...: FROM is a path inside the package, TO a file name in the
# vendor directory; NAME.VERSION records the version.
npm_vendor() {
    local package=$1 version=$2 integrity=$3 name=$4 dest=control/assets/vendor work tarball actual pair
    shift 4
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: the trap must remove this call's directory
    trap "rm -rf '$work'" RETURN
    tarball=$(cd "$work" && npm pack --silent --cache "${NPM_CONFIG_CACHE:-/var/cache/livemix-npm}" "$package@$version")
    actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
    if [ "$actual" != "$integrity" ]; then
        echo "$package@$version: integrity $actual, expected $integrity" >&2
        return 1
    fi
    tar -xzf "$work/$tarball" -C "$work"
    mkdir -p "$dest"
    for pair in "$@"; do
        install -m 0644 "$work/package/${pair%%=*}" "$dest/${pair#*=}"
    done
    echo "$version" >"$dest/$name.VERSION"
    echo "[vendor] $package $version -> $dest (${*#*=})"
}
