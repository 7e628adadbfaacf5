# shellcheck shell=bash
# kind-test step, sourced by kind-test/run.sh (uses its helpers: kn, jsonpath, field_is, wait_for, pass, die, log).
#
# operator_leader_killed: the chart runs the operator with 2 replicas and leader election on the Lease
# <fullname>-operator (docs/operator.md, "High availability"). The leader (the Lease's holderIdentity,
# "<pod>_<random>") is killed without grace; another replica must hold the Lease within leaseDurationSeconds (+
# slack), and a VideoSource created right after the kill must be reconciled by the new leader (Ready, registered in
# the control node with an id), then deleted through its finalizer (the control node forgets it), so the later steps
# find the namespace as they left it.

HA_RESOURCE=ha-probe
# Beyond the Lease duration: the crate's pause against collisions (<= 1 s) and this loop's polling.
HA_SLACK_SECS=10

# The pod named by the operator Lease's holderIdentity ("<pod>_<8 hex digits>"); empty when nobody holds it.
operator_lease_holder() {
    local holder
    holder=$(jsonpath "lease/$FULLNAME-operator" '{.spec.holderIdentity}') || return 0
    printf '%s\n' "${holder%_*}"
}

operator_lease_held() { [[ -n $(operator_lease_holder) ]]; }

videosource_gone() { [[ -z $(kn get videosource "$1" -o name --ignore-not-found 2>/dev/null) ]]; }

# The names of the operator pods that are Ready and not being deleted.
operator_ready_pods() {
    kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=operator" \
        -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.metadata.deletionTimestamp}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
        2>/dev/null | awk -F'|' '$2 == "" && $3 == "True" {print $1}'
}

# True when $1 operator pods are Ready.
operator_pods_ready() { (($(operator_ready_pods | grep -c .) == $1)); }

# Seconds (one decimal) since the EPOCHREALTIME value $1.
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }

operator_leader_killed() {
    local replicas leader duration pods killed_at holder="" takeover deadline id t
    replicas=$(jsonpath "deployment/$FULLNAME-operator" '{.spec.replicas}')
    [[ $replicas =~ ^[0-9]+$ ]] || replicas=0
    ((replicas >= 2)) || die "the operator Deployment runs '$replicas' replicas; leader election needs at least 2 to take over"
    wait_for "$replicas operator pods to be Ready" operator_pods_ready "$replicas"
    wait_for "an operator replica to hold the Lease $FULLNAME-operator" operator_lease_held
    leader=$(operator_lease_holder)
    pods=$(operator_ready_pods)
    grep -qxF "$leader" <<<"$pods" || die "the Lease names '$leader', which is not a Ready operator pod ($(tr '\n' ' ' <<<"$pods"))"
    duration=$(jsonpath "lease/$FULLNAME-operator" '{.spec.leaseDurationSeconds}')
    [[ $duration =~ ^[0-9]+$ ]] || die "the Lease $FULLNAME-operator has leaseDurationSeconds '$duration'"
    log "operator leader is $leader (Lease $FULLNAME-operator, ${duration}s); killing it"

    killed_at=$EPOCHREALTIME
    kn delete pod "$leader" --grace-period=0 --force >/dev/null 2>&1 || die "could not delete the operator leader $leader"
    # A resource change right after the kill: only the next leader can reconcile it.
    bound_example "$ROOT/crds/examples/videosource-named.yaml" \
        | sed "s/^  name: entrance\$/  name: $HA_RESOURCE/; s/^  name: studio-b.entrance\$/  name: $HA_RESOURCE/" \
        >"$WORK/videosource-ha.yaml"
    grep -q "^  name: $HA_RESOURCE\$" "$WORK/videosource-ha.yaml" || die "could not derive the VideoSource $HA_RESOURCE"
    kn apply -f "$WORK/videosource-ha.yaml" >/dev/null

    deadline=$((SECONDS + duration + HA_SLACK_SECS))
    while :; do
        holder=$(operator_lease_holder)
        [[ -z $holder || $holder == "$leader" ]] || break
        ((SECONDS < deadline)) \
            || die "no other operator replica took the Lease within $((duration + HA_SLACK_SECS))s of killing the leader $leader (holder: '${holder:-none}')"
        sleep 0.5
    done
    takeover=$(seconds_since "$killed_at")

    wait_for "VideoSource $HA_RESOURCE (created after the kill) to be Ready" field_is "videosource/$HA_RESOURCE" \
        '{.status.conditions[?(@.type=="Ready")].status}' True
    id=$(jsonpath "videosource/$HA_RESOURCE" '{.status.id}')
    [[ -n $id ]] || die "VideoSource $HA_RESOURCE is Ready without an id from the control node"
    field_is "videosource/$HA_RESOURCE" '{.status.edge}' "$EDGE_ID" || die "VideoSource $HA_RESOURCE is not bound to $EDGE_ID"
    local reconciled whole who=standby
    reconciled=$(seconds_since "$killed_at")
    wait_for "the operator Deployment to have $replicas Ready pods again" operator_pods_ready "$replicas"
    whole=$(seconds_since "$killed_at")
    grep -qxF "$holder" <<<"$pods" || who="replacement pod"
    pass "operator leader $leader killed: the $who $holder took the Lease after ${takeover}s (lease ${duration}s); VideoSource $HA_RESOURCE created after the kill reconciled (Ready, id $id) after ${reconciled}s; $replicas operator pods Ready again after ${whole}s"

    # Deleted through the new leader's finalizer: the control node forgets it before the object goes.
    t=$SECONDS
    kn delete videosource "$HA_RESOURCE" --wait=false >/dev/null
    wait_for "VideoSource $HA_RESOURCE to be deleted (finalizer)" videosource_gone "$HA_RESOURCE"
    pass "VideoSource $HA_RESOURCE deleted by the new leader's finalizer in $((SECONDS - t))s"
}
