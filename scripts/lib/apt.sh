# shellcheck shell=bash
# Installing Debian packages on demand, shared by every script that needs one. The caller defines log and die;
# APT_LOG (optional) collects apt's output, which is otherwise discarded and shown only on failure.
#
# apt waits for another apt run's lock (CI installs from several scripts at once) and refreshes its package
# lists once per script run, then again only if an install fails on stale lists.

APT_UPDATED=${APT_UPDATED:-0}

apt_install() {
    (($#)) || return 0
    [[ $(id -u) == 0 ]] || die "$* missing; install it (apt-get install -y $*) or run as root"
    command -v apt-get >/dev/null 2>&1 || die "$* missing and no apt-get to install it"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q)
    local out=${APT_LOG:-/dev/null}
    log "apt-get install -y $* ..."
    if ((!APT_UPDATED)); then
        "${apt[@]}" update >>"$out" 2>&1 || log "apt-get update failed; trying the install anyway"
        APT_UPDATED=1
    fi
    if ! "${apt[@]}" install -y "$@" >>"$out" 2>&1 9>&-; then
        [[ $out == /dev/null ]] || tail -n 20 "$out" >&2
        die "apt-get install $* failed${APT_LOG:+; see $APT_LOG}"
    fi
}
