#!/usr/bin/env bash
# Backing services for LiveMix development and tests (see README.md, "Tests").
#
#   scripts/services.sh up      install what is missing, start every service on 127.0.0.1, wait until ready
#   scripts/services.sh down    stop what this script started
#   scripts/services.sh status  print each service up/down; exit non-zero if any is down
#   scripts/services.sh env     print `export NAME=value` lines: eval "$(scripts/services.sh env)"
#   scripts/services.sh signal NAME SIG
#                               send SIG (KILL, STOP, CONT...) to a running service, for fault tests: NAME is
#                               postgres, memcached, pubsub or s3; `up` restarts a killed one
#
# Services: PostgreSQL 15, memcached 1.6, Google Pub/Sub emulator, moto (S3). `up` also installs
# ffmpeg/ffprobe, curl and netcat-openbsd. Meant for Debian bookworm, run as root; `up` is idempotent.
#
# Environment (all optional):
#   LIVEMIX_SERVICES_DIR      state, logs and data   (default /var/tmp/livemix-services)
#   LIVEMIX_PG_PORT           PostgreSQL port        (default 5432)
#   LIVEMIX_MEMCACHED_PORT    memcached port         (default 11211)
#   LIVEMIX_PUBSUB_PORT       Pub/Sub emulator port  (default 8085)
#   LIVEMIX_S3_PORT           moto (S3) port         (default 9000)
#   LIVEMIX_SERVICES_TIMEOUT  seconds to wait for each service to answer (default 60)
set -euo pipefail

DIR=${LIVEMIX_SERVICES_DIR:-/var/tmp/livemix-services}
HOST=127.0.0.1
PG_VERSION=15
PG_CLUSTER=main
PG_PORT=${LIVEMIX_PG_PORT:-5432}
MC_PORT=${LIVEMIX_MEMCACHED_PORT:-11211}
PUBSUB_PORT=${LIVEMIX_PUBSUB_PORT:-8085}
S3_PORT=${LIVEMIX_S3_PORT:-9000}
TIMEOUT=${LIVEMIX_SERVICES_TIMEOUT:-60}

DB_USER=livemix
DB_PASSWORD=livemix
DB_NAME=livemix
PUBSUB_PROJECT=livemix-dev
BUCKET=livemix
S3_KEY=livemix
S3_SECRET=livemix-secret
S3_REGION=us-east-1
MC_MEMORY_MB=${LIVEMIX_MEMCACHED_MB:-1024}
MC_MAX_ITEM=8m
MC_MAX_ITEM_BYTES=8388608

PG_MARKER=$DIR/postgres.started-by-script
PG_LOG=$DIR/postgres.log
MC_RUN=$DIR/memcached            # owned by the memcache user (pid file)
MC_PID=$MC_RUN/memcached.pid
MC_LOG=$DIR/memcached.log
PUBSUB_PID=$DIR/pubsub-emulator.pid
PUBSUB_LOG=$DIR/pubsub-emulator.log
S3_PID=$DIR/moto.pid
S3_LOG=$DIR/moto.log
VENV=$DIR/venv
APT_LOG=$DIR/apt.log

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

# shellcheck source=scripts/lib/time.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/time.sh"

# --- probes (no side effects) ------------------------------------------------------------------------

# tcp_open PORT: something accepts TCP connections on $HOST:PORT (connecting to loopback never hangs).
tcp_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

pg_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2
    else
        tcp_open "$PG_PORT"
    fi
}

# memcached_cmd CMD: send one text-protocol command, print the reply lines up to END/VERSION/an error.
memcached_cmd() {
    (
        exec 3<>"/dev/tcp/$HOST/$MC_PORT" || exit 1
        printf '%s\r\n' "$1" >&3
        while IFS= read -r -t 2 line <&3; do
            line=${line%$'\r'}
            printf '%s\n' "$line"
            case $line in END | VERSION* | ERROR* | CLIENT_ERROR* | SERVER_ERROR*) break ;; esac
        done
    ) 2>/dev/null
}

memcached_answers() { [[ $(memcached_cmd version) == VERSION\ * ]]; }

# Largest item size of the memcached answering on the port (bytes), or empty.
memcached_item_max() {
    memcached_cmd 'stats settings' | awk '$1 == "STAT" && $2 == "item_size_max" { print $3 }'
}

pubsub_answers() {
    [[ $(curl -s -m 2 "http://$HOST:$PUBSUB_PORT/" 2>/dev/null) == Ok* ]]
}

s3_answers() {
    local code
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$HOST:$S3_PORT/" 2>/dev/null) || true
    [[ -n $code && $code != 000 ]]
}

# pid_alive PIDFILE [COMM]: the pid recorded in PIDFILE is a running process (named COMM if given).
pid_alive() {
    local pid comm
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n ${2:-} ]]; then
        comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
        [[ $comm == "$2" ]] || return 1
    fi
}

# resume_if_frozen PIDFILE NAME: a test killed while it held an emulator frozen (SIGSTOP) leaves it holding its
# port and answering nothing; a second one could not bind. Wake the process group recorded in PIDFILE instead.
resume_if_frozen() {
    local pidfile=$1 name=$2 group
    pid_alive "$pidfile" || return 0
    group=$(<"$pidfile")
    if ps -eo pgid=,stat= | awk -v g="$group" '$1 == g && $2 ~ /^T/ { found = 1 } END { exit !found }'; then
        log "$name was left frozen (SIGSTOP); resuming it"
        kill -s CONT -- "-$group" 2>/dev/null || true
        sleep 1
    fi
}

# wait_for NAME LOGFILE PROBE [ARGS...]: poll PROBE until it succeeds or $TIMEOUT seconds pass.
wait_for() {
    local name=$1 logfile=$2 start
    shift 2
    start=$(now_us)
    while ! "$@"; do
        if (( $(now_us) - start > TIMEOUT * 1000000 )); then
            if [[ -f $logfile ]]; then
                printf '[services] --- last lines of %s ---\n' "$logfile" >&2
                tail -n 20 "$logfile" >&2 || true
            fi
            die "$name did not answer within ${TIMEOUT}s; see its log: $logfile"
        fi
        sleep 0.1
    done
}

# --- installation ------------------------------------------------------------------------------------

PG_INSTALLED=0   # set when this run installs the server (its package may start the cluster itself)

pg_bin() { printf '/usr/lib/postgresql/%s/bin/postgres' "$PG_VERSION"; }

install_missing() {
    local pkgs=() t
    t=$(now_us)
    command -v curl >/dev/null 2>&1 || pkgs+=(curl)
    command -v nc >/dev/null 2>&1 || pkgs+=(netcat-openbsd)
    { command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1 || pkgs+=(ffmpeg)
    command -v memcached >/dev/null 2>&1 || pkgs+=(memcached)
    if ! pg_answers && { [[ ! -x $(pg_bin) ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; }; then
        pkgs+=(postgresql)
        PG_INSTALLED=1
    elif ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        pkgs+=(postgresql-client)
    fi
    if (( ${#pkgs[@]} )); then
        apt_install "${pkgs[@]}"
        log "packages installed ($(since "$t"))"
    fi
}

# --- PostgreSQL --------------------------------------------------------------------------------------

PG_ADMIN=()
# Find a way to run psql as a superuser: the local socket as the postgres OS user (peer auth),
# else TCP as postgres without a password (trust auth, e.g. a server started by the machine).
pg_find_admin() {
    local sockdir=/var/run/postgresql
    if id postgres >/dev/null 2>&1 && [[ -S $sockdir/.s.PGSQL.$PG_PORT ]]; then
        PG_ADMIN=(runuser -u postgres -- psql -h "$sockdir" -p "$PG_PORT" -d postgres)
        "${PG_ADMIN[@]}" -qAtXc 'select 1' >/dev/null 2>&1 && return 0
    fi
    PG_ADMIN=(env PGPASSWORD= PGCONNECT_TIMEOUT=5 psql -w -h "$HOST" -p "$PG_PORT" -U postgres -d postgres)
    "${PG_ADMIN[@]}" -qAtXc 'select 1' >/dev/null 2>&1 && return 0
    PG_ADMIN=()
    return 1
}

pg_can_login() {
    PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=5 psql -w -h "$HOST" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" \
        -qAtXc 'select 1' >/dev/null 2>&1
}

pg_setup_db() {
    if ! pg_find_admin; then
        if pg_can_login; then
            log "postgres: no superuser access, but $DB_USER can already log in to $DB_NAME; leaving roles as they are"
            return 0
        fi
        die "postgres answers on $HOST:$PG_PORT but neither the postgres user (socket/peer) nor trust auth works, and $DB_USER/$DB_PASSWORD cannot log in; see $PG_LOG"
    fi
    "${PG_ADMIN[@]}" -qAtX -v ON_ERROR_STOP=1 >>"$PG_LOG" 2>&1 <<SQL || die "postgres: creating role/database failed; see $PG_LOG"
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    ELSE
        ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')
\gexec
ALTER DATABASE $DB_NAME OWNER TO $DB_USER;
SQL
    pg_can_login || die "postgres: $DB_USER cannot log in to $DB_NAME over $HOST:$PG_PORT with its password (check pg_hba.conf); see $PG_LOG"
}

up_postgres() {
    local t
    t=$(now_us)
    if pg_answers; then
        # A cluster started by the package install we just did counts as ours (so `down` stops it).
        (( PG_INSTALLED )) && : >"$PG_MARKER"
        if [[ -f $PG_MARKER ]]; then
            log "postgres already running on $HOST:$PG_PORT (started by this script)"
        else
            log "postgres already answering on $HOST:$PG_PORT (not started by this script); reusing it"
        fi
    else
        log "starting postgres $PG_VERSION ..."
        [[ -x $(pg_bin) ]] || die "postgres $PG_VERSION is not installed ($(pg_bin) missing)"
        if [[ ! -f /etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf ]]; then
            log "creating cluster $PG_VERSION/$PG_CLUSTER ..."
            pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >>"$PG_LOG" 2>&1 \
                || die "postgres: pg_createcluster failed; see $PG_LOG"
        fi
        local opts=()
        # Listen on 127.0.0.1 only; a non-default port is passed on the command line.
        local pgopts="-c listen_addresses=$HOST"
        [[ $PG_PORT == 5432 ]] || pgopts+=" -p $PG_PORT"
        opts=(-o "$pgopts")
        if ! pg_ctlcluster "${opts[@]}" "$PG_VERSION" "$PG_CLUSTER" start >>"$PG_LOG" 2>&1 9>&-; then
            # An already-running cluster makes start fail; anything else is a real error.
            pg_answers || die "postgres: pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed; see $PG_LOG and /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
        fi
        : >"$PG_MARKER"
        wait_for postgres "$PG_LOG (and /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log)" pg_answers
    fi
    pg_setup_db
    log "postgres ready on $HOST:$PG_PORT, database $DB_NAME ($(since "$t"))"
}

# --- memcached ---------------------------------------------------------------------------------------

up_memcached() {
    local t item_max
    t=$(now_us)
    if memcached_answers; then
        item_max=$(memcached_item_max)
        if pid_alive "$MC_PID" memcached || (( ${item_max:-0} >= MC_MAX_ITEM_BYTES )); then
            log "memcached already answering on $HOST:$MC_PORT (item_size_max=${item_max:-?})"
            return 0
        fi
        # Typically Debian's own service (64 MB, 1 MB items) started by the package: replace it.
        if [[ -x /etc/init.d/memcached ]]; then
            log "memcached on $HOST:$MC_PORT has item_size_max=${item_max:-?} (< $MC_MAX_ITEM); stopping the Debian service"
            /etc/init.d/memcached stop >>"$MC_LOG" 2>&1 || true
            local i
            for i in $(seq 50); do memcached_answers || break; sleep 0.1; done
            (( i < 50 )) || die "memcached: could not stop the existing memcached on $HOST:$MC_PORT (item_size_max=${item_max:-?}, need $MC_MAX_ITEM)"
        else
            die "memcached: something else answers on $HOST:$MC_PORT with item_size_max=${item_max:-?} (need $MC_MAX_ITEM); stop it first"
        fi
    fi
    command -v memcached >/dev/null 2>&1 || die "memcached is not installed"
    log "starting memcached ..."
    id memcache >/dev/null 2>&1 || die "memcached: user 'memcache' does not exist (is the Debian package installed?)"
    mkdir -p "$MC_RUN"
    chown memcache: "$MC_RUN"
    rm -f "$MC_PID"
    # -v keeps stderr open after daemonizing, so errors and warnings land in the log file.
    memcached -d -v -u memcache -l "$HOST" -p "$MC_PORT" -m "$MC_MEMORY_MB" -I "$MC_MAX_ITEM" -P "$MC_PID" \
        >>"$MC_LOG" 2>&1 9>&- || die "memcached failed to start; see $MC_LOG"
    wait_for memcached "$MC_LOG" memcached_answers
    log "memcached ready on $HOST:$MC_PORT ($(since "$t"))"
}

# --- Pub/Sub emulator --------------------------------------------------------------------------------

pubsub_launcher_in() { printf '%s/platform/pubsub-emulator/bin/cloud-pubsub-emulator' "$1"; }

# Print the path of the emulator launcher, or nothing.
find_pubsub_launcher() {
    local gcloud sdk
    gcloud=$(command -v gcloud 2>/dev/null) || return 0
    sdk=$(dirname "$(dirname "$(readlink -f "$gcloud")")")
    if [[ -x $(pubsub_launcher_in "$sdk") ]]; then
        pubsub_launcher_in "$sdk"
        return 0
    fi
    sdk=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null) || return 0
    if [[ -n $sdk && -x $(pubsub_launcher_in "$sdk") ]]; then
        pubsub_launcher_in "$sdk"
    fi
}

up_pubsub() {
    local t launcher
    t=$(now_us)
    resume_if_frozen "$PUBSUB_PID" "pubsub emulator"
    if pubsub_answers; then
        log "pubsub emulator already answering on $HOST:$PUBSUB_PORT"
        return 0
    fi
    log "starting pubsub emulator ..."
    command -v gcloud >/dev/null 2>&1 || die "pubsub emulator: gcloud (Google Cloud SDK) is not installed"
    launcher=$(find_pubsub_launcher)
    if [[ -z $launcher ]]; then
        log "pubsub emulator component missing; trying 'gcloud components install pubsub-emulator' ..."
        gcloud components install pubsub-emulator --quiet >>"$PUBSUB_LOG" 2>&1 9>&- || true
        launcher=$(find_pubsub_launcher)
    fi
    if [[ -z $launcher ]]; then
        log "trying apt package google-cloud-cli-pubsub-emulator ..."
        apt_install google-cloud-cli-pubsub-emulator || true
        launcher=$(find_pubsub_launcher)
    fi
    [[ -n $launcher ]] || die "pubsub emulator is not installed and could not be installed (tried gcloud components and apt google-cloud-cli-pubsub-emulator); see $PUBSUB_LOG and $APT_LOG"
    command -v java >/dev/null 2>&1 || [[ -n ${JAVA_HOME:-} ]] || die "pubsub emulator needs Java (no java on PATH, JAVA_HOME unset)"
    # setsid: own process group, so `down` can stop the launcher and its JVM together.
    printf '\n--- %s starting %s\n' "$(date -Is)" "$launcher" >>"$PUBSUB_LOG"
    setsid nohup "$launcher" --host="$HOST" --port="$PUBSUB_PORT" >>"$PUBSUB_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PUBSUB_PID"
    wait_for "pubsub emulator" "$PUBSUB_LOG" pubsub_answers_or_dead "$PUBSUB_PID" "pubsub emulator" "$PUBSUB_LOG"
    log "pubsub emulator ready on $HOST:$PUBSUB_PORT ($(since "$t"))"
}

# probe wrapper: succeed when the probe does; fail fast (die) if the started process exited.
pubsub_answers_or_dead() { answers_or_dead pubsub_answers "$@"; }
s3_answers_or_dead() { answers_or_dead s3_answers "$@"; }
answers_or_dead() {
    local probe=$1 pidfile=$2 name=$3 logfile=$4
    "$probe" && return 0
    if ! pid_alive "$pidfile"; then
        printf '[services] --- last lines of %s ---\n' "$logfile" >&2
        tail -n 20 "$logfile" >&2 || true
        die "$name exited during startup; see its log: $logfile"
    fi
    return 1
}

# --- S3 (moto) ---------------------------------------------------------------------------------------

ensure_moto() {
    [[ -x $VENV/bin/moto_server ]] && return 0
    local t py
    t=$(now_us)
    py=$(command -v python3 2>/dev/null) || { apt_install python3 python3-venv; py=$(command -v python3); }
    log "creating venv $VENV and installing moto[server] ..."
    if ! "$py" -m venv "$VENV" >>"$S3_LOG" 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$py" -m venv "$VENV" >>"$S3_LOG" 2>&1 || die "moto: python3 -m venv $VENV failed; see $S3_LOG"
    fi
    "$VENV/bin/pip" install -q 'moto[server]' >>"$S3_LOG" 2>&1 || die "moto: pip install 'moto[server]' failed; see $S3_LOG"
    [[ -x $VENV/bin/moto_server ]] || die "moto: $VENV/bin/moto_server missing after pip install; see $S3_LOG"
    log "moto installed ($(since "$t"))"
}

create_bucket() {
    local code
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT "http://$HOST:$S3_PORT/$BUCKET") || true
    case $code in
        200 | 409) ;;
        *) die "s3: creating bucket $BUCKET failed (HTTP $code); see $S3_LOG" ;;
    esac
}

up_s3() {
    local t
    t=$(now_us)
    resume_if_frozen "$S3_PID" "s3 (moto)"
    if s3_answers; then
        log "s3 (moto) already answering on $HOST:$S3_PORT"
    else
        ensure_moto
        log "starting s3 (moto) ..."
        printf '\n--- %s starting moto_server\n' "$(date -Is)" >>"$S3_LOG"
        setsid nohup "$VENV/bin/moto_server" -H "$HOST" -p "$S3_PORT" >>"$S3_LOG" 2>&1 </dev/null 9>&- &
        echo $! >"$S3_PID"
        wait_for "s3 (moto)" "$S3_LOG" s3_answers_or_dead "$S3_PID" "s3 (moto)" "$S3_LOG"
    fi
    create_bucket
    log "s3 (moto) ready on $HOST:$S3_PORT, bucket $BUCKET ($(since "$t"))"
}

# --- commands ----------------------------------------------------------------------------------------

lock() {
    mkdir -p "$DIR"
    # Everything that may leave a process behind runs with `9>&-`, so daemons never inherit the lock.
    exec 9>"$DIR/services.lock"
    flock -w 600 9 || die "another services.sh is running (lock $DIR/services.lock)"
}

cmd_up() {
    [[ $(id -u) == 0 ]] || die "'up' must run as root (it installs packages and starts services)"
    local t
    t=$(now_us)
    lock
    install_missing
    up_postgres
    up_memcached
    up_pubsub
    up_s3
    log "all services ready ($(since "$t")); logs in $DIR"
    log "use: eval \"\$($0 env)\""
}

# stop_pid NAME PIDFILE [group|COMM]: TERM the recorded process (or its process group), wait, then KILL.
stop_pid() {
    local name=$1 pidfile=$2 mode=${3:-} pid target i comm=
    [[ $mode == group || -z $mode ]] || comm=$mode
    if ! pid_alive "$pidfile" "$comm"; then
        rm -f "$pidfile"
        log "$name: nothing to stop (no live process recorded in $pidfile)"
        return 0
    fi
    pid=$(<"$pidfile")
    target=$pid
    [[ $mode == group ]] && target=-$pid
    log "stopping $name (pid $pid) ..."
    kill -TERM -- "$target" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not exit after 10s; sending KILL"
        kill -KILL -- "$target" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "$name stopped"
}

cmd_down() {
    lock
    stop_pid "s3 (moto)" "$S3_PID" group
    stop_pid "pubsub emulator" "$PUBSUB_PID" group
    stop_pid memcached "$MC_PID" memcached
    if [[ -f $PG_MARKER ]]; then
        log "stopping postgres $PG_VERSION/$PG_CLUSTER ..."
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop >>"$PG_LOG" 2>&1 || log "postgres: pg_ctlcluster stop failed (already stopped?); see $PG_LOG"
        rm -f "$PG_MARKER"
        log "postgres stopped"
    else
        log "postgres: not started by this script; leaving it alone"
    fi
}

cmd_status() {
    local down=0
    report() {
        local name=$1 addr=$2
        shift 2
        if "$@"; then
            printf '%-16s up    %s\n' "$name" "$addr"
        else
            printf '%-16s DOWN  %s\n' "$name" "$addr"
            down=1
        fi
    }
    report postgres "$HOST:$PG_PORT" pg_answers
    report memcached "$HOST:$MC_PORT" memcached_answers
    report pubsub-emulator "$HOST:$PUBSUB_PORT" pubsub_answers
    report s3-moto "$HOST:$S3_PORT" s3_answers
    return "$down"
}

# cmd_signal NAME SIG: the pubsub emulator and moto get it as process groups (the JVM and python run under a
# launcher), postgres at its postmaster (its backends exit when it dies), memcached at its process.
cmd_signal() {
    local name=${1:-} sig=${2:-} pidfile target
    [[ -n $name && -n $sig ]] || { usage; exit 2; }
    case $name in
        postgres) pidfile=/var/run/postgresql/$PG_VERSION-$PG_CLUSTER.pid ;;
        memcached) pidfile=$MC_PID ;;
        pubsub) pidfile=$PUBSUB_PID ;;
        s3) pidfile=$S3_PID ;;
        *) die "unknown service '$name' (postgres, memcached, pubsub, s3)" ;;
    esac
    pid_alive "$pidfile" || die "$name: no live process recorded in $pidfile"
    target=$(<"$pidfile")
    [[ $name == pubsub || $name == s3 ]] && target=-$target
    kill -s "$sig" -- "$target" || die "$name: kill -s $sig $target failed"
    log "$name: sent SIG$sig to ${target#-}"
}

cmd_env() {
    cat <<EOF
export DATABASE_URL=postgres://$DB_USER:$DB_PASSWORD@$HOST:$PG_PORT/$DB_NAME
export MEMCACHED_URL=memcache://$HOST:$MC_PORT
export PUBSUB_EMULATOR_HOST=$HOST:$PUBSUB_PORT
export PUBSUB_PROJECT_ID=$PUBSUB_PROJECT
export S3_ENDPOINT=http://$HOST:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=$S3_REGION
export LIVEMIX_BUCKET=$BUCKET
EOF
}

usage() {
    cat >&2 <<EOF
usage: $0 up|down|status|env|signal NAME SIG
  up      install what is missing, start postgres, memcached, the pubsub emulator and moto (S3) on $HOST
  down    stop what this script started
  status  print each service up/down; exit 1 if any is down
  env     print export lines: eval "\$($0 env)"
  signal  send a signal to postgres, memcached, pubsub or s3 (fault tests); 'up' restarts a killed one
state and logs: $DIR
EOF
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    signal) shift; cmd_signal "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
esac
