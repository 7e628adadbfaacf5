# shellcheck shell=bash
# Shared by scripts/check-*.sh: installing Debian packages on demand, and the Python venv holding the offline
# Kubernetes validation tools. The caller defines log and die, and sets VENV and the PACKAGES array.

apt_install() {
    [ "$(id -u)" = 0 ] || die "$* missing; install it (apt-get install -y $*) or run as root"
    command -v apt-get >/dev/null || die "$* missing and no apt-get to install it"
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Every package in PACKAGES was installed into VENV (recorded in a marker file by ensure_venv).
venv_ready() {
    local marker="$VENV/.livemix-packages" package
    [ -x "$VENV/bin/python" ] && [ -f "$marker" ] || return 1
    for package in "${PACKAGES[@]}"; do
        grep -qxF "$package" "$marker" || return 1
    done
}

ensure_venv() {
    venv_ready && return
    command -v python3 >/dev/null || apt_install python3
    if ! [ -x "$VENV/bin/pip" ]; then
        rm -rf "$VENV"
        # Debian's python3 ships venv without ensurepip until python3-venv is installed.
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV" || die "could not create the venv $VENV"
        fi
    fi
    log "installing ${PACKAGES[*]} into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" \
        || die "pip install ${PACKAGES[*]} failed"
    printf '%s\n' "${PACKAGES[@]}" >>"$VENV/.livemix-packages"
    venv_ready || die "the venv $VENV is incomplete after pip install"
}
