#!/usr/bin/env bash
# The container images of the local Kubernetes node of scripts/k8s.sh (`up --node`), built without Docker and
# without a registry: each image is a docker-archive tarball (manifest.json, a config JSON, one uncompressed layer
# tar) written by a few lines of Python, then imported into the node's containerd with `ctr images import`.
#
#   scripts/images.sh build  [NAME...]   build the archives that are missing or out of date (default: all)
#   scripts/images.sh import [NAME...]   import the archives into containerd's k8s.io namespace (default: every
#                                        archive built); an image already there with the same ID is skipped
#   scripts/images.sh list   [NAME...]   print each image reference, its archive and the archive's size
#
# NAME            reference                          contents
#   pause         livemix/pause:3.10-local           the pod sandbox: a static C program that waits for SIGTERM and
#                                                    reaps zombies (containerd's sandbox_image)
#   curl          livemix/curl:8-local               Debian's curl and busybox's sh: the chart's `helm test` pod
#   coredns       livemix/coredns:<ver>-local        CoreDNS built from its Go module (github.com/coredns/coredns)
#   traefik       livemix/traefik:<ver>-local        Traefik built from its Go module (github.com/traefik/traefik/v3)
#   local-path    livemix/local-path-provisioner:<ver>-local  Rancher's local-path-provisioner built from its Go
#                                                    module (github.com/rancher/local-path-provisioner): the node's
#                                                    dynamic PersistentVolumes (its helper pods use the curl image)
#   control       livemix-control:local              the LiveMix binaries of the cargo target directory (debug
#   edge          livemix-edge:local                 build, debug info stripped from the image's copy), the same
#   operator      livemix-operator:local             layout and user as docker/Dockerfile's images
#
# Every image has /etc/passwd and /etc/group with the non-root user 65532 (livemix), the host's CA certificates,
# /etc/nsswitch.conf and an empty /tmp (1777); the binaries' shared libraries (what `ldd` lists, with the loader)
# sit at the paths ldd prints. They run as a non-root user and write nothing outside /tmp, so they work with a
# read-only root filesystem. The archives are deterministic (entries sorted, owner 0:0, mtime SOURCE_DATE_EPOCH
# or 0): the same inputs give the same image ID. `build` rewrites an archive only when its inputs changed (the
# checksums of every file, the image config and this script's archive writer, recorded in NAME.inputs).
#
# CoreDNS and Traefik are compiled once from the Go module proxy (no prebuilt binary is downloaded) into the
# cache of scripts/k8s.sh: CoreDNS ~200 s and Traefik ~300 s on 2 cores. Traefik's go.mod has replace
# directives, which `go install module@version` refuses: the module is downloaded, copied to a writable scratch
# directory and built there with `go build ./cmd/traefik` so that its replaces apply (CoreDNS the same way).
# local-path-provisioner is built the same way (~140 s).
#
# Environment (all optional):
#   LIVEMIX_IMAGES_CACHE        where the archives are written          (default /var/cache/livemix-images)
#   LIVEMIX_CONTAINERD_SOCK     containerd socket of `import`           (default /var/tmp/livemix-k8s/containerd/containerd.sock)
#   LIVEMIX_CONTAINERD_SNAPSHOTTER  snapshotter images are unpacked for (default overlayfs)
#   LIVEMIX_K8S_CACHE           cache of the CoreDNS and Traefik builds (default /var/cache/livemix-k8s)
#   LIVEMIX_COREDNS_VERSION     github.com/coredns/coredns release      (default v1.14.1)
#   LIVEMIX_TRAEFIK_VERSION     github.com/traefik/traefik/v3 release   (default v3.6.12; v3.7.x does not build
#                               from the module proxy)
#   LIVEMIX_LOCAL_PATH_VERSION  github.com/rancher/local-path-provisioner release (default v0.0.30, the newest the
#                               module proxy serves)
#   CARGO_TARGET_DIR            cargo target directory of the LiveMix binaries (default: the checkout's target/);
#                               a missing binary is built with `cargo build --locked --bins -p livemix-NAME`
#   LIVEMIX_BIN_DIR             take the LiveMix binaries from this directory instead ($CARGO_TARGET_DIR/debug)
#   SOURCE_DATE_EPOCH           mtime of the archives' files and `created` of the configs (default 0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LIVEMIX_IMAGES_CACHE:-/var/cache/livemix-images}
SOCK=${LIVEMIX_CONTAINERD_SOCK:-/var/tmp/livemix-k8s/containerd/containerd.sock}
SNAPSHOTTER=${LIVEMIX_CONTAINERD_SNAPSHOTTER:-overlayfs}
K8S_CACHE=${LIVEMIX_K8S_CACHE:-/var/cache/livemix-k8s}
COREDNS_VERSION=${LIVEMIX_COREDNS_VERSION:-v1.14.1}
TRAEFIK_VERSION=${LIVEMIX_TRAEFIK_VERSION:-v3.6.12}
LOCAL_PATH_VERSION=${LIVEMIX_LOCAL_PATH_VERSION:-v0.0.30}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${LIVEMIX_BIN_DIR:-$TARGET_DIR/debug}
MTIME=${SOURCE_DATE_EPOCH:-0}
NAMESPACE=k8s.io
# The LiveMix images' version label (docker/Dockerfile's VERSION), from the workspace's Cargo.toml.
LIVEMIX_VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" 2>/dev/null | head -n1)
LIVEMIX_VERSION=${LIVEMIX_VERSION:-0.1.0}
LIVEMIX_UID=65532
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Build order when no NAME is given: the LiveMix binaries may still be compiling, so their images come last.
ALL_NAMES=(pause curl coredns traefik local-path control edge operator)

ref_of() {
    case $1 in
        pause) echo livemix/pause:3.10-local ;;
        curl) echo livemix/curl:8-local ;;
        coredns) echo "livemix/coredns:${COREDNS_VERSION#v}-local" ;;
        traefik) echo "livemix/traefik:${TRAEFIK_VERSION#v}-local" ;;
        local-path) echo "livemix/local-path-provisioner:${LOCAL_PATH_VERSION#v}-local" ;;
        control | edge | operator) echo "livemix-$1:local" ;;
        *) die "unknown image '$1' (known: ${ALL_NAMES[*]})" ;;
    esac
}
archive_of() { printf '%s/%s.tar' "$CACHE" "$1"; }

log() { printf '[images] %s\n' "$*"; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/apt.sh
source "$ROOT/scripts/lib/apt.sh"

# shellcheck source=scripts/lib/time.sh
source "$ROOT/scripts/lib/time.sh"

# A scratch directory for this run and the pid of a running Go build: both cleaned up on exit.
WORK=
BUILD_PID=
RESULT=
cleanup() {
    [[ -z $BUILD_PID ]] || kill "$BUILD_PID" 2>/dev/null || true
    [[ -z $WORK ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work_dir() {
    [[ -n $WORK ]] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/livemix-images.XXXXXX")
}

human_size() { du -h --apparent-size "$1" | cut -f1; }


# with_lock FILE COMMAND...: runs COMMAND holding an exclusive lock on FILE (waiting for another holder).
with_lock() {
    local lock=$1 fd
    shift
    exec {fd}>"$lock"
    if ! flock -n "$fd"; then
        log "another build holds $lock; waiting for it"
        flock "$fd"
    fi
    "$@"
    exec {fd}>&-
}

# ---------------------------------------------------------------------------------------------------- archive writer

# Writes a docker-archive (`docker save` layout) with one layer. Arguments: OUT REF SPEC [config options]; SPEC has
# one entry a line, tab-separated: `f DEST MODE SOURCE` (a regular file, copied from SOURCE), `d DEST MODE` (a
# directory), `l DEST - TARGET` (a symbolic link). Missing parent directories are added with mode 0755. Prints the
# image ID (the config's digest).
archive_writer() {
    cat <<'PYTHON'
import argparse, datetime, hashlib, io, json, os, sys, tarfile

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("ref")
p.add_argument("spec")
p.add_argument("--mtime", type=int, default=0)
p.add_argument("--arch", default="amd64")
p.add_argument("--user")
p.add_argument("--workdir")
p.add_argument("--stop-signal")
p.add_argument("--entrypoint", action="append", default=[])
p.add_argument("--cmd", action="append", default=[])
p.add_argument("--env", action="append", default=[])
p.add_argument("--port", action="append", default=[])
p.add_argument("--label", action="append", default=[])
a = p.parse_args()

entries, explicit = {}, set()
with open(a.spec) as f:
    for line in f:
        line = line.rstrip("\n")
        if not line:
            continue
        kind, dest, mode, *rest = line.split("\t")
        dest = dest.strip("/")
        if kind not in ("f", "d", "l") or not dest or (kind != "d" and len(rest) != 1):
            sys.exit("bad spec line: %r" % line)
        parts = dest.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), ("d", 0o755, None))
        if dest in explicit:
            sys.exit("%s is listed twice in %s" % (dest, a.spec))
        explicit.add(dest)
        entries[dest] = (kind, 0o777 if kind == "l" else int(mode, 8), rest[0] if rest else None)

def tarinfo(name, kind, mode, size=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE}[kind]
    ti.mode, ti.size, ti.linkname = mode, size, link
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = a.mtime, 0, 0, "", ""
    return ti

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

layer_path = a.out + ".layer.tmp"
with tarfile.open(layer_path, "w", format=tarfile.GNU_FORMAT) as t:
    for name in sorted(entries):
        kind, mode, src = entries[name]
        if kind == "f":
            with open(src, "rb") as f:
                t.addfile(tarinfo(name, kind, mode, os.fstat(f.fileno()).st_size), f)
        elif kind == "l":
            t.addfile(tarinfo(name, kind, mode, link=src))
        else:
            t.addfile(tarinfo(name, kind, mode))
diff_id = sha256_file(layer_path)

created = datetime.datetime.fromtimestamp(a.mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
config = {}
if a.user: config["User"] = a.user
if a.entrypoint: config["Entrypoint"] = a.entrypoint
if a.cmd: config["Cmd"] = a.cmd
if a.env: config["Env"] = a.env
if a.port: config["ExposedPorts"] = {port: {} for port in a.port}
if a.workdir: config["WorkingDir"] = a.workdir
if a.stop_signal: config["StopSignal"] = a.stop_signal
if a.label: config["Labels"] = dict(label.split("=", 1) for label in a.label)
image = {
    "architecture": a.arch,
    "os": "linux",
    "created": created,
    "config": config,
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "history": [{"created": created, "created_by": "scripts/images.sh (LiveMix)"}],
}
config_json = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
config_id = hashlib.sha256(config_json).hexdigest()
manifest = [{"Config": config_id + ".json", "RepoTags": [a.ref], "Layers": [diff_id + "/layer.tar"]}]
manifest_json = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

tmp = a.out + ".tmp"
with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as t:
    for name, data in (("manifest.json", manifest_json), (config_id + ".json", config_json)):
        t.addfile(tarinfo(name, "f", 0o644, len(data)), io.BytesIO(data))
    t.addfile(tarinfo(diff_id, "d", 0o755))
    with open(layer_path, "rb") as f:
        t.addfile(tarinfo(diff_id + "/layer.tar", "f", 0o644, os.fstat(f.fileno()).st_size), f)
os.replace(tmp, a.out)
os.unlink(layer_path)
print("sha256:" + config_id)
PYTHON
}

# ---------------------------------------------------------------------------------------------------- image contents

# The image being assembled: SPEC lines for the archive writer (`s DEST MODE SOURCE` is a file whose debug info is
# stripped into the image's copy) and CONFIG options.
SPEC=()
ADDED_LIBS=
CONFIG=()

add_file() { SPEC+=("f"$'\t'"$1"$'\t'"$2"$'\t'"$3"); }
add_dir() { SPEC+=("d"$'\t'"$1"$'\t'"$2"); }
add_link() { SPEC+=("l"$'\t'"$1"$'\t'"-"$'\t'"$2"); }
# add_data DEST MODE CONTENT: a small file with this content.
add_data() {
    local f
    work_dir
    f=$(mktemp "$WORK/data.XXXXXX")
    printf '%s' "$3" >"$f"
    add_file "$1" "$2" "$f"
}

# add_libs BINARY: the shared libraries `ldd` lists, with the loader, at the paths it prints.
add_libs() {
    local bin=$1 out line lib src
    if ! out=$(ldd "$bin" 2>&1); then
        [[ $out == *"not a dynamic executable"* || $out == *"statically linked"* ]] && return 0
        die "ldd $bin failed: $out"
    fi
    [[ $out != *"not found"* ]] || die "ldd $bin: a library is missing:"$'\n'"$out"
    while IFS= read -r line; do
        lib=
        if [[ $line =~ =\>\ (/[^ ]+) ]]; then
            lib=${BASH_REMATCH[1]}
        elif [[ $line =~ ^[[:space:]]*(/[^ ]+) ]]; then
            lib=${BASH_REMATCH[1]}
        fi
        [[ -n $lib ]] || continue
        src=$(readlink -f "$lib") || die "cannot resolve $lib (ldd $bin)"
        # Several binaries of one image share libraries (libc, libm...): each is added once.
        [[ " ${ADDED_LIBS:-} " == *" $lib "* ]] && continue
        ADDED_LIBS+=" $lib"
        add_file "$lib" 0755 "$src"
    done <<<"$out"
}

# base_files: what every image has: users, CA certificates, name service configuration, /tmp.
base_files() {
    local certs=/etc/ssl/certs/ca-certificates.crt
    [[ -s $certs ]] || apt_install ca-certificates
    [[ -s $certs ]] || die "$certs is missing (apt-get install ca-certificates)"
    add_data /etc/passwd 0644 "root:x:0:0:root:/root:/usr/sbin/nologin
livemix:x:$LIVEMIX_UID:$LIVEMIX_UID:livemix:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"
    add_data /etc/group 0644 "root:x:0:
livemix:x:$LIVEMIX_UID:
nogroup:x:65534:
"
    add_data /etc/nsswitch.conf 0644 "passwd: files
group: files
hosts: files dns
"
    add_file /etc/ssl/certs/ca-certificates.crt 0644 "$certs"
    add_dir /tmp 1777
    CONFIG+=(--env "$PATH_ENV")
}

# The pod sandbox: blocks until SIGTERM or SIGINT, reaps the zombies re-parented to it (PID 1 of the pod when the
# process namespace is shared).
PAUSE_C='/* The pod sandbox process of the LiveMix local node (scripts/images.sh). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    if (sig != SIGCHLD)
        stop = sig;
}

int main(int argc, char **argv) {
    sigset_t blocked, waiting;
    struct sigaction sa;

    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("livemix-pause 3.10-local");
        return 0;
    }
    /* Blocked except inside sigsuspend(): none can arrive between the check of stop and the wait. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGCHLD);
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL) || sigaction(SIGCHLD, &sa, NULL)) {
        perror("pause: sigaction");
        return 1;
    }
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (stop) {
            fprintf(stderr, "pause: shutting down on signal %d\n", (int)stop);
            return 0;
        }
        sigsuspend(&waiting);
    }
}
'

spec_pause() {
    command -v cc >/dev/null || apt_install gcc libc6-dev
    work_dir
    mkdir -p "$WORK/pause"
    printf '%s' "$PAUSE_C" >"$WORK/pause/pause.c"
    if ! cc -static -Os -Wall -Wextra -o "$WORK/pause/pause" "$WORK/pause/pause.c"; then
        dpkg -s libc6-dev >/dev/null 2>&1 && die "compiling the pause program failed ($WORK/pause/pause.c)"
        apt_install libc6-dev
        cc -static -Os -Wall -Wextra -o "$WORK/pause/pause" "$WORK/pause/pause.c" \
            || die "compiling the pause program failed ($WORK/pause/pause.c)"
    fi
    strip "$WORK/pause/pause"
    add_file /pause 0755 "$WORK/pause/pause"
    # Like Kubernetes' own pause image: only the program, nobody's user.
    CONFIG+=(--user 65535:65535 --entrypoint /pause --env "$PATH_ENV"
        --label "org.opencontainers.image.title=livemix-pause"
        --label "org.opencontainers.image.description=Pod sandbox of the LiveMix local node")
}

spec_curl() {
    [[ -x /usr/bin/curl ]] || apt_install curl
    file_is_static /bin/busybox || apt_install busybox-static
    file_is_static /bin/busybox || die "/bin/busybox is not the static busybox (apt-get install busybox-static)"
    base_files
    add_file /usr/bin/curl 0755 /usr/bin/curl
    add_libs /usr/bin/curl
    # `sh -c` of the chart's test pod: busybox, static, called as sh.
    add_file /bin/sh 0755 /bin/busybox
    add_link /bin/busybox sh
    CONFIG+=(--user "$LIVEMIX_UID:$LIVEMIX_UID" --entrypoint /usr/bin/curl --workdir /tmp
        --label "org.opencontainers.image.title=livemix-curl"
        --label "org.opencontainers.image.description=Debian's curl and busybox sh for helm test pods")
}

file_is_static() { [[ -f $1 ]] && ! ldd "$1" >/dev/null 2>&1; }

spec_coredns() {
    go_module_build coredns github.com/coredns/coredns "$COREDNS_VERSION" . \
        "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
    base_files
    add_file /coredns 0755 "$RESULT"
    # Port 53 would need CAP_NET_BIND_SERVICE: the pod listens on 1053 (Service port 53 -> targetPort 1053).
    CONFIG+=(--user "$LIVEMIX_UID:$LIVEMIX_UID" --entrypoint /coredns --workdir /tmp
        --port 1053/udp --port 1053/tcp --port 8080/tcp --port 8181/tcp
        --label "org.opencontainers.image.title=coredns"
        --label "org.opencontainers.image.version=${COREDNS_VERSION#v}"
        --label "org.opencontainers.image.source=https://github.com/coredns/coredns")
}

spec_traefik() {
    go_module_build traefik github.com/traefik/traefik/v3 "$TRAEFIK_VERSION" ./cmd/traefik \
        "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION#v}"
    base_files
    add_file /traefik 0755 "$RESULT"
    CONFIG+=(--user "$LIVEMIX_UID:$LIVEMIX_UID" --entrypoint /traefik --workdir /tmp
        --port 8000/tcp --port 9000/tcp
        --label "org.opencontainers.image.title=traefik"
        --label "org.opencontainers.image.version=${TRAEFIK_VERSION#v}"
        --label "org.opencontainers.image.source=https://github.com/traefik/traefik")
}

# The node's dynamic provisioner (scripts/k8s-addons/local-path.yaml). It only talks to the API server; the
# directories of the volumes are made and removed by its helper pods, which run the curl image's busybox sh.
spec_local-path() {
    go_module_build local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" . \
        "-s -w -X main.VERSION=$LOCAL_PATH_VERSION"
    base_files
    add_file /usr/bin/local-path-provisioner 0755 "$RESULT"
    CONFIG+=(--user "$LIVEMIX_UID:$LIVEMIX_UID" --entrypoint /usr/bin/local-path-provisioner --workdir /tmp
        --label "org.opencontainers.image.title=local-path-provisioner"
        --label "org.opencontainers.image.version=${LOCAL_PATH_VERSION#v}"
        --label "org.opencontainers.image.source=https://github.com/rancher/local-path-provisioner")
}

# spec_livemix NAME: docker/Dockerfile's image of livemix-NAME, from the cargo debug build.
spec_livemix() {
    local name=$1 bin port description
    livemix_binary "$name"
    bin=$RESULT
    base_files
    add_file "/usr/local/bin/livemix-$name" 0755 "$bin"
    SPEC[-1]="s${SPEC[-1]#f}" # strip the debug info into the image's copy
    add_libs "$bin"
    case $name in
        control)
            description="LiveMix control node: management, VOD and edge-facing APIs"
            # MP4 exports remux with ffmpeg (docker/Dockerfile installs Debian's); the host's, with its libraries.
            command -v ffmpeg >/dev/null || apt_install ffmpeg
            local ffmpeg
            ffmpeg=$(readlink -f "$(command -v ffmpeg)") || die "ffmpeg is missing (apt-get install ffmpeg)"
            add_file /usr/bin/ffmpeg 0755 "$ffmpeg"
            add_libs "$ffmpeg"
            for port in 8080 8081 8082; do CONFIG+=(--port "$port/tcp"); done ;;
        edge)
            description="LiveMix edge node: takes HLS from ffmpeg, dials out to the control node"
            CONFIG+=(--port 9080/tcp --env LIVEMIX_LOCAL_STORE_DIR=/tmp/livemix-objects) ;;
        operator)
            description="LiveMix operator: reconciles VideoSource and Recording resources"
            CONFIG+=(--port 9090/tcp) ;;
    esac
    CONFIG+=(--user "$LIVEMIX_UID:$LIVEMIX_UID" --entrypoint "/usr/local/bin/livemix-$name" --workdir /tmp
        --label "org.opencontainers.image.title=livemix-$name"
        --label "org.opencontainers.image.description=$description"
        --label "org.opencontainers.image.source=https://github.com/livemix/livemix"
        --label "org.opencontainers.image.licenses=MIT"
        --label "org.opencontainers.image.version=$LIVEMIX_VERSION"
        --label "org.opencontainers.image.vendor=LiveMix")
}

# livemix_binary NAME: sets RESULT to the path of the livemix-NAME binary, building it if it is missing.
livemix_binary() {
    local name=$1 bin=$BIN_DIR/livemix-$1 t
    RESULT=$bin
    [[ -x $bin ]] && return 0
    [[ -z ${LIVEMIX_BIN_DIR:-} ]] || die "$bin is missing (LIVEMIX_BIN_DIR=$LIVEMIX_BIN_DIR)"
    command -v cargo >/dev/null || die "$bin is missing and cargo is not on PATH to build it"
    t=$(now_us)
    log "$bin is missing: cargo build --locked --bins -p livemix-$name (CARGO_TARGET_DIR=$TARGET_DIR)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --locked --bins -p "livemix-$name") \
        || die "cargo build -p livemix-$name failed"
    [[ -x $bin ]] || die "cargo built livemix-$name but $bin is still missing"
    log "built livemix-$name in $(since "$t")"
}

# ---------------------------------------------------------------------------------------------------- Go builds

find_go() {
    [[ -z ${GO:-} ]] || return 0
    local go v
    go=$(command -v go || true)
    [[ -n $go ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; }
    [[ -n $go ]] || die "Go not found (neither 'go' on PATH nor /usr/local/go/bin/go); CoreDNS and Traefik need Go >= 1.25"
    v=$("$go" env GOVERSION) || die "'$go env GOVERSION' failed"
    [[ $v =~ ^go1\.([0-9]+) ]] || die "cannot parse the Go version '$v' of $go"
    (( BASH_REMATCH[1] >= 25 )) || die "$go is $v; CoreDNS and Traefik need Go >= 1.25"
    GO=$go
}

# go_module_build NAME MODULE VERSION PACKAGE LDFLAGS: builds PACKAGE of MODULE@VERSION inside a writable copy of
# the module (its go.mod, replace directives included, is the main module) into $K8S_CACHE/NAME-VERSION/NAME,
# once; sets RESULT to that path.
go_module_build() {
    local dir=$K8S_CACHE/$1-$3
    RESULT=$dir/$1
    [[ -x $RESULT ]] && return 0
    if ! mkdir -p "$dir" 2>/dev/null || [[ ! -w $dir ]]; then
        die "cannot write $dir; set LIVEMIX_K8S_CACHE to a writable directory"
    fi
    with_lock "$dir/.build.lock" go_module_build_locked "$@"
}

go_module_build_locked() {
    local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5
    local dir=$K8S_CACHE/$name-$version
    local bin=$dir/$name src=$dir/src logf=$dir/build.log json moddir t n
    [[ -x $bin ]] && return 0
    find_go
    work_dir
    t=$(now_us)
    : >"$logf"
    log "building $name $version from the Go module $module, once (a few minutes on 2 cores); log: $logf"
    # A build cache of its own, removed after a successful build (kept after a failure: a retry resumes); the
    # default module cache.
    local goenv=(env GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS= GO111MODULE=on "GOCACHE=$dir/go-build")
    json=$(cd "$WORK" && "${goenv[@]}" "$GO" mod download -json "$module@$version" 2>>"$logf") \
        || { tail -n 20 "$logf" >&2; die "'go mod download $module@$version' failed; see $logf"; }
    moddir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
    [[ -n $moddir && -f $moddir/go.mod ]] || die "could not find the module directory of $module@$version in: $json"
    rm -rf "$src"
    cp -r "$moddir" "$src"
    chmod -R u+w "$src"
    printf '==== %s: go build %s in a copy of %s\n' "$(date -u +%FT%TZ)" "$pkg" "$moddir" >>"$logf"
    (cd "$src" && exec "${goenv[@]}" "$GO" build -v -trimpath -mod=mod -ldflags "$ldflags" -o "$dir/.$name.new" "$pkg") \
        >>"$logf" 2>&1 &
    BUILD_PID=$!
    while ! wait_pid_for "$BUILD_PID" 30; do
        n=$(grep -c -v -e '^go: ' -e '^====' "$logf" || true)
        log "  ... still building $name after $(since "$t") ($n packages compiled, log: $logf)"
    done
    if ! wait "$BUILD_PID"; then
        BUILD_PID=
        tail -n 25 "$logf" >&2 || true
        die "building $name $version failed; full log: $logf (scratch module: $src)"
    fi
    BUILD_PID=
    mv -f "$dir/.$name.new" "$bin"
    "$GO" version >"$dir/VERSION"
    printf '%s %s, built %s in %s\n' "$module" "$version" "$(date -u +%FT%TZ)" "$(since "$t")" >>"$dir/VERSION"
    rm -rf "$dir/go-build" "$src"
    log "built $name $version in $(since "$t") ($(human_size "$bin")): $bin"
}

# ---------------------------------------------------------------------------------------------------- commands

# build_one NAME: (re)writes NAME's archive unless its recorded inputs are unchanged.
build_one() {
    local name=$1 ref archive inputs line kind dest mode src sum t id
    ref=$(ref_of "$name")
    archive=$(archive_of "$name")
    SPEC=()
    ADDED_LIBS=
    CONFIG=(--mtime "$MTIME" --arch "$(dpkg --print-architecture 2>/dev/null || echo amd64)")
    case $name in
        control | edge | operator) spec_livemix "$name" ;;
        *) "spec_$name" ;;
    esac
    # What the archive depends on: the writer, the reference, the config and every file's checksum.
    inputs=$(
        printf 'writer %s\nref %s\n' "$(archive_writer | sha256sum | cut -d' ' -f1)" "$ref"
        printf 'config %s\n' "${CONFIG[*]}"
        for line in "${SPEC[@]}"; do
            IFS=$'\t' read -r kind dest mode src <<<"$line"
            case $kind in
                f | s) sum=$(sha256sum <"$src" | cut -d' ' -f1) || die "cannot read $src"
                    printf '%s %s %s %s\n' "$kind" "$dest" "$mode" "$sum" ;;
                *) printf '%s\n' "${line//$'\t'/ }" ;;
            esac
        done | LC_ALL=C sort
    )
    if [[ -s $archive && -f $archive.inputs && $(<"$archive.inputs") == "$inputs" ]]; then
        log "$ref is up to date: $archive ($(human_size "$archive"))"
        return 0
    fi
    t=$(now_us)
    work_dir
    local spec_file=$WORK/$name.spec n=0
    : >"$spec_file"
    for line in "${SPEC[@]}"; do
        IFS=$'\t' read -r kind dest mode src <<<"$line"
        if [[ $kind == s ]]; then
            n=$((n + 1))
            objcopy --strip-debug "$src" "$WORK/$name.stripped.$n" || die "objcopy --strip-debug $src failed"
            line="f"$'\t'"$dest"$'\t'"$mode"$'\t'"$WORK/$name.stripped.$n"
        fi
        printf '%s\n' "$line" >>"$spec_file"
    done
    rm -f "$archive.inputs"
    id=$(python3 -c "$(archive_writer)" "$archive" "$ref" "$spec_file" "${CONFIG[@]}") \
        || die "writing $archive failed"
    printf '%s\n' "$inputs" >"$archive.inputs"
    rm -f "$WORK/$name".stripped.*
    log "built $ref in $(since "$t"): $archive ($(human_size "$archive"), image ID ${id#sha256:})"
}

cmd_build() {
    local names=("$@") name
    (( ${#names[@]} )) || names=("${ALL_NAMES[@]}")
    for name in "${names[@]}"; do ref_of "$name" >/dev/null; done
    command -v python3 >/dev/null || apt_install python3
    command -v objcopy >/dev/null || apt_install binutils
    if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w $CACHE ]]; then
        die "cannot write $CACHE; set LIVEMIX_IMAGES_CACHE to a writable directory"
    fi
    for name in "${names[@]}"; do
        with_lock "$CACHE/.$name.lock" build_one "$name"
    done
}

# archive_ids ARCHIVE: prints the config digest (the image ID) and the layer's diff ID of an archive we wrote.
archive_ids() {
    local manifest
    manifest=$(tar -xOf "$1" manifest.json) || die "cannot read manifest.json from $1"
    [[ $manifest =~ \"Config\":\"([0-9a-f]{64})\.json\" ]] || die "unexpected manifest in $1: $manifest"
    printf 'sha256:%s ' "${BASH_REMATCH[1]}"
    [[ $manifest =~ \"Layers\":\[\"([0-9a-f]{64})/layer\.tar\"\] ]] || die "unexpected manifest in $1: $manifest"
    printf 'sha256:%s\n' "${BASH_REMATCH[1]}"
}

# full_ref REF: containerd's name of REF (docker.io/library/NAME:TAG, docker.io/OWNER/NAME:TAG).
full_ref() {
    local ref=$1 first=${1%%/*}
    if [[ $ref != */* ]]; then
        ref=docker.io/library/$ref
    elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
        ref=docker.io/$ref
    fi
    printf '%s\n' "$ref"
}

# imported_config FULLREF: prints the config digest of the image FULLREF in containerd, if there is one.
imported_config() {
    local digest
    digest=$("${CTR[@]}" images ls "name==$1" 2>/dev/null | awk -v r="$1" '$1 == r {print $3}')
    [[ -n $digest ]] || return 0
    "${CTR[@]}" content get "$digest" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["digest"])' 2>/dev/null || true
}

cmd_import() {
    local names=("$@") name archive ref full ids id diff have t
    for name in "${names[@]}"; do ref_of "$name" >/dev/null; done
    CTR=(ctr --address "$SOCK" -n "$NAMESPACE")
    [[ -S $SOCK ]] || die "no containerd socket at $SOCK (is the node up? set LIVEMIX_CONTAINERD_SOCK)"
    ctr --address "$SOCK" version >/dev/null 2>&1 || die "containerd does not answer on $SOCK"
    if (( ${#names[@]} == 0 )); then
        for name in "${ALL_NAMES[@]}"; do
            if [[ -s $(archive_of "$name") ]]; then
                names+=("$name")
            else
                log "no archive of $(ref_of "$name") ($(archive_of "$name")): not imported (run: scripts/images.sh build $name)"
            fi
        done
        (( ${#names[@]} )) || die "no archive in $CACHE; run: scripts/images.sh build"
    fi
    for name in "${names[@]}"; do
        ref=$(ref_of "$name")
        archive=$(archive_of "$name")
        [[ -s $archive ]] || die "$archive is missing; run: scripts/images.sh build $name"
        full=$(full_ref "$ref")
        ids=$(archive_ids "$archive")
        id=${ids% *}
        diff=${ids#* }
        have=$(imported_config "$full")
        # Present with the same ID and unpacked (the snapshot of a one-layer image is named by its diff ID).
        if [[ $have == "$id" ]] &&
            "${CTR[@]}" snapshots --snapshotter "$SNAPSHOTTER" info "$diff" >/dev/null 2>&1; then
            log "$full is already imported (image ID ${id#sha256:})"
            continue
        fi
        t=$(now_us)
        "${CTR[@]}" images import --snapshotter "$SNAPSHOTTER" "$archive" >/dev/null \
            || die "ctr images import $archive failed"
        have=$(imported_config "$full")
        [[ $have == "$id" ]] || die "imported $archive but containerd has no $full with ID $id (found: '${have:-none}')"
        log "imported $full in $(since "$t") (image ID ${id#sha256:})"
    done
}

cmd_list() {
    local names=("$@") name archive size
    (( ${#names[@]} )) || names=("${ALL_NAMES[@]}")
    for name in "${names[@]}"; do ref_of "$name" >/dev/null; done
    for name in "${names[@]}"; do
        archive=$(archive_of "$name")
        if [[ -s $archive ]]; then size=$(human_size "$archive"); else size=missing; fi
        printf '%-30s %-45s %s\n' "$(ref_of "$name")" "$archive" "$size"
    done
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [[ $# == 0 ]] || shift
    case $cmd in
        build) cmd_build "$@" ;;
        import) cmd_import "$@" ;;
        list) cmd_list "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
