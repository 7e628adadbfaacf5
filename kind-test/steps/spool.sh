# shellcheck shell=bash
# kind-test step, sourced by kind-test/run.sh (it uses run.sh's helpers: log, die, pass, kn, jsonpath, field_is,
# wait_for, and its settings): the edge's recording spool on a PersistentVolume (edge.spool.persistence, the
# local-path StorageClass of scripts/k8s.sh, see charts/livemix/ci/local-node.yaml) outlives the edge pod.
#
# With a recording of camera-0 active, the object store is frozen (SIGSTOP of the host's moto server), the edge
# spools the segments it cannot upload, the edge pod is deleted; once the StatefulSet has replaced it (same claim:
# the spooled files are still on the volume) the store is resumed (SIGCONT; the edge checks its bucket when it
# starts, so the new pod cannot be Ready before), the new pod resumes the spooled segments (its log), the spool
# drains and the recording holds every segment spooled before the deletion: no segment missing inside an encoder
# run up to the deletion (the coverage's gaps), and at least as many segments as were recorded before the freeze
# plus those spooled at the deletion.
#
# --local only: kind's values (ci/dev-values.yaml, kind-test/values.yaml) keep the spool on an emptyDir and its
# object store is not a process of this machine to freeze.

SPOOL_RECORDING=spool-check
# At least this many segments spooled (2 s each) before the edge pod is deleted.
SPOOL_MIN_PENDING=${LIVEMIX_SPOOL_MIN_PENDING:-3}
# The host's moto server (scripts/services.sh): its pid leads its process group.
SPOOL_S3_PIDFILE=${LIVEMIX_SERVICES_DIR:-/var/tmp/livemix-services}/moto.pid
# The process group this step stopped, resumed by spool_cleanup whatever happens.
SPOOL_FROZEN_GROUP=
SPOOL_CONTROL=

spool_freeze_s3() {
    local pid
    pid=$(<"$SPOOL_S3_PIDFILE") || die "no moto pid file at $SPOOL_S3_PIDFILE (scripts/services.sh)"
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
        die "moto (pid '$pid' of $SPOOL_S3_PIDFILE) is not running"
    fi
    SPOOL_FROZEN_GROUP=$pid
    kill -STOP -- "-$pid" 2>/dev/null || kill -STOP "$pid"
}

spool_resume_s3() {
    [[ -n $SPOOL_FROZEN_GROUP ]] || return 0
    kill -CONT -- "-$SPOOL_FROZEN_GROUP" 2>/dev/null || kill -CONT "$SPOOL_FROZEN_GROUP" 2>/dev/null || true
    SPOOL_FROZEN_GROUP=
}

# run.sh's cleanup: S3 is never left frozen. Once the release is uninstalled (run.sh keeps nothing), the edge
# pods' claims go too (the StatefulSet retains them), so no volume outlives the run.
spool_cleanup() {
    spool_resume_s3
    [[ $MODE == local ]] && ((!KEEP && CLUSTER_UP)) || return 0
    hm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1 && return 0
    kn delete pvc -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=edge" --wait=false \
        >/dev/null 2>&1 || true
}

# The edge pod's gauge livemix_edge_recording_pending (segments spooled, waiting to be recorded), read from the
# pod's address (the node's pods are reachable from this machine).
spool_pending() {
    local ip body
    ip=$(jsonpath "pod/$EDGE_POD" '{.status.podIP}') && [[ -n $ip ]] || return 1
    body=$(curl -fsS --max-time 3 "http://$ip:9080/metrics") || return 1
    awk -v m=livemix_edge_recording_pending '$1 == m || index($1, m "{") == 1 {s += $2; n++}
        END {if (!n) exit 1; printf "%d\n", s}' <<<"$body"
}

spool_pending_at_least() {
    local n
    n=$(spool_pending) && ((n >= $1))
}

spool_pending_zero() {
    local n
    n=$(spool_pending) && ((n == 0))
}

# GET on the control node's management API (the control Service's cluster IP), with the release's token.
spool_api() {
    local token
    token=$(kn get secret "$FULLNAME-auth" -o 'jsonpath={.data.management-token}' | base64 -d) || return 1
    curl -fsS --max-time 10 -H "Authorization: Bearer $token" "http://$SPOOL_CONTROL:8080$1"
}

# The recording's coverage reduced to "segments recorded_secs gaps", gaps as cause@start..end (epoch seconds).
spool_coverage() {
    local body
    body=$(spool_api "/v1/recording/$1/coverage") || return 1
    python3 -c '
import datetime, json, re, sys
c = json.load(sys.stdin)["coverage"]
ts = lambda s: datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", s).replace("Z", "+00:00")).timestamp()
gaps = ",".join("%s@%.0f..%.0f" % (g["cause"], ts(g["start"]), ts(g["end"])) for g in c["gaps"])
print(c["segments"], "%.0f" % c["recorded_secs"], gaps or "-")' <<<"$body"
}

spool_segments_at_least() {
    local segments _
    read -r segments _ <<<"$(spool_coverage "$1")" && [[ $segments =~ ^[0-9]+$ ]] && ((segments >= $2))
}

spool_survives_edge_pod() {
    if [[ $MODE != local ]]; then
        log "spool on a PersistentVolume: skipped on kind (its values keep the spool on an emptyDir and its object store is no process here to freeze; run --local)"
        return 0
    fi
    [[ $(jsonpath "statefulset/$EDGE_SERVICE" '{.spec.volumeClaimTemplates[*].metadata.name}') == *spool* ]] \
        || die "the edge StatefulSet has no spool claim template (charts/livemix/ci/local-node.yaml: edge.spool.persistence)"
    local t=$SECONDS claim volume uid id before pending after recorded secs gaps frozen_at deleted_at path
    claim=spool-$EDGE_POD
    volume=$(jsonpath "pvc/$claim" '{.spec.volumeName}')
    [[ -n $volume && $(jsonpath "pvc/$claim" '{.status.phase}') == Bound ]] || die "claim $claim is not Bound"
    path=$(kc get pv "$volume" -o 'jsonpath={.spec.hostPath.path}{.spec.local.path}' 2>/dev/null)
    SPOOL_CONTROL=$(jsonpath "svc/$CONTROL_DEPLOYMENT" '{.spec.clusterIP}')
    [[ -n $SPOOL_CONTROL ]] || die "the control Service $CONTROL_DEPLOYMENT has no cluster IP"

    kn apply -f - >/dev/null <<EOF
apiVersion: livemix.io/v1alpha1
kind: Recording
metadata:
  name: $SPOOL_RECORDING
spec:
  source: $JOB_SOURCE
  description: kind-test spool on a PersistentVolume
EOF
    wait_for "Recording $SPOOL_RECORDING to be active" field_is "recording/$SPOOL_RECORDING" '{.status.active}' true
    id=$(jsonpath "recording/$SPOOL_RECORDING" '{.status.id}')
    [[ -n $id ]] || die "Recording $SPOOL_RECORDING has no id"
    wait_for "Recording $SPOOL_RECORDING to record 2 segments" spool_segments_at_least "$id" 2
    wait_for "the edge's spool to be empty" spool_pending_zero
    read -r before _ <<<"$(spool_coverage "$id")"
    [[ $before =~ ^[0-9]+$ ]] || die "cannot read the coverage of recording $id from the management API"

    # The object store stops answering: every segment the edge records from now on waits in its spool.
    frozen_at=$(date +%s)
    spool_freeze_s3
    log "S3 (moto, process group $SPOOL_FROZEN_GROUP) frozen with $before segments recorded; waiting for the edge to spool $SPOOL_MIN_PENDING"
    wait_for "the edge to spool $SPOOL_MIN_PENDING segments" spool_pending_at_least "$SPOOL_MIN_PENDING"
    pending=$(spool_pending) || die "cannot read the edge's metrics"

    # The StatefulSet makes the new pod only once the old one is gone: from then on only the volume holds the
    # spooled segments (the old pod could upload none, S3 being frozen).
    uid=$(jsonpath "pod/$EDGE_POD" '{.metadata.uid}')
    deleted_at=$(date +%s)
    kn delete pod "$EDGE_POD" --wait=false >/dev/null
    wait_for "the StatefulSet to replace $EDGE_POD" spool_new_pod "$uid"
    [[ $(jsonpath "pod/$EDGE_POD" '{.spec.volumes[?(@.name=="spool")].persistentVolumeClaim.claimName}') == "$claim" ]] \
        || die "the new $EDGE_POD does not mount claim $claim"
    local files=unknown
    if [[ -n $path && -d $path ]]; then
        files=$(find "$path" -path "$path/failed" -prune -o -name '*.json' -print | wc -l)
        ((files >= pending)) || die "the volume ($path) holds $files spooled segments after the pod was deleted, $pending were spooled"
    fi
    # The edge checks its bucket when it starts (s3.createBucket): the new pod cannot be Ready while S3 is frozen.
    log "$EDGE_POD replaced $(($(date +%s) - deleted_at))s after the deletion, $pending segments spooled ($files on the volume $path); resuming S3"
    spool_resume_s3
    wait_for "the new $EDGE_POD to be Ready" field_is "pod/$EDGE_POD" '{.status.conditions[?(@.type=="Ready")].status}' True
    # The new pod opened the spool and found the segments waiting there ("recording spool opened ... resumed=N").
    wait_for "the new $EDGE_POD to open its spool" spool_resumed
    after=$(spool_resumed)
    ((after >= pending)) || die "the new $EDGE_POD resumed $after spooled segments, $pending were spooled at the deletion"
    wait_for "the new $EDGE_POD to upload its spool" spool_pending_zero
    wait_for "the recording to hold the segments spooled before the deletion" \
        spool_segments_at_least "$id" "$((before + pending))"
    # A segment missing inside an encoder run (not_recorded) before the deletion would be one the spool lost. The
    # control node indexes what the edge reports through Pub/Sub, and a report it took while S3 was frozen comes
    # back only after the emulator's redelivery: such a hole has been seen to take ~2 minutes to fill.
    local hole deadline=$((SECONDS + 240)) waited=$SECONDS
    while hole=$(spool_hole_before "$id" "$deleted_at"); do
        ((SECONDS < deadline)) ||
            die "Recording $SPOOL_RECORDING misses segments before the edge pod was deleted (gap $hole; S3 frozen at $frozen_at, pod deleted at $deleted_at; coverage: $(spool_coverage "$id"))"
        sleep 2
    done
    waited=$((SECONDS - waited))
    read -r recorded secs gaps <<<"$(spool_coverage "$id")"
    kn patch recording "$SPOOL_RECORDING" --type merge -p '{"spec":{"stopped":true}}' >/dev/null
    wait_for "Recording $SPOOL_RECORDING to stop" field_is "recording/$SPOOL_RECORDING" '{.status.active}' false
    kn delete recording "$SPOOL_RECORDING" --wait=false >/dev/null
    pass "spool on PersistentVolume $volume (claim $claim, local-path): S3 frozen, $pending segments spooled ($files files on the volume) when $EDGE_POD was deleted, $after resumed by the new pod, all uploaded and reported after S3 resumed: $recorded segments recorded ($before before the freeze, ${secs}s; no segment missing before the deletion after ${waited}s waiting for the index; gaps: ${gaps//,/ }) in $((SECONDS - t))s"
}

# True when $EDGE_POD exists and is not the pod of uid $1.
spool_new_pod() {
    local uid
    uid=$(jsonpath "pod/$EDGE_POD" '{.metadata.uid}') && [[ -n $uid && $uid != "$1" ]]
}

# Prints the first gap of recording $1 that lies inside an encoder run (not_recorded) and ends by time $2 (epoch
# seconds); fails when there is none. Fails too (nothing printed) when the coverage cannot be read.
spool_hole_before() {
    local coverage gap
    coverage=$(spool_coverage "$1") || { printf 'coverage unreadable\n'; return 0; }
    for gap in $(cut -d' ' -f3 <<<"$coverage" | tr ',' ' '); do
        [[ $gap == not_recorded@* ]] || continue
        if ((${gap##*..} <= $2)); then
            printf '%s\n' "$gap"
            return 0
        fi
    done
    return 1
}

# How many spooled segments the edge found when it opened its spool (its log; fails before that line).
spool_resumed() {
    local logs n
    logs=$(kn logs "$EDGE_POD" -c edge 2>/dev/null) || return 1
    # Text logs (ANSI colours stripped) say resumed=N, JSON logs "resumed":N.
    n=$(sed -n 's/\x1b\[[0-9;]*m//g; /recording spool opened/ s/.*resumed"\{0,1\}[=:] *\([0-9][0-9]*\).*/\1/p' <<<"$logs" | tail -n1)
    [[ -n $n ]] && printf '%s\n' "$n"
}
