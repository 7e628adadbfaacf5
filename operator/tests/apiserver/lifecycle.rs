//! Recordings with a lifecycle, against the real API server and a real control node: what `kubectl delete`
//! does to recordings by `deletionPolicy` (and the deprecated `purgeOnDelete`), a deletion that cannot reach the
//! control node and the `livemix.io/skip-cleanup` escape hatch, and `spec.hold` and `spec.retention` reaching
//! the control node, a retention the schema lets through but the control node cannot take included.

use chrono::TimeDelta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use livemix_common::model::Retention;
use livemix_operator::crd::{
    Recording, VideoSource,
    lifecycle::{SKIP_CLEANUP_ANNOTATION, owner_of},
};
use serde_json::{Value, json};

use crate::support::{
    Fixture, RunningOperator, USER, events_about, eventually, find, kubectl_ok, ready, unique, wait_event, wait_gone,
    wait_recording, wait_source,
};

fn source(name: &str, spec: Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": name},
                        "spec": spec}))
}

fn recording(name: &str, spec: Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "livemix.io/v1alpha1", "kind": "Recording", "metadata": {"name": name},
                        "spec": spec}))
}

fn active(rec: &Recording) -> Result<(), String> {
    let status = rec.status.as_ref().unwrap();
    ready(&status.conditions)?;
    if status.active { Ok(()) } else { Err("not active yet".into()) }
}

fn condition_is(conditions: &[Condition], type_: &str, status: &str, reason: &str) -> Result<(), String> {
    match find(conditions, type_) {
        Some(c) if c.status == status && c.reason == reason => Ok(()),
        other => Err(format!("{type_} is {other:?}, not {status}/{reason}")),
    }
}

/// The defaults lose nothing: `kubectl delete` of a Recording stops it and of its VideoSource deletes the source,
/// and the recording stays in the control node, listable and playable.
#[tokio::test]
async fn by_default_kubectl_delete_keeps_the_recordings() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show) = (unique("cam"), unique("show"));

    sources.patch(&cam, &user, &source(&cam, json!({"segmentLength": 2}))).await.unwrap();
    recordings.patch(&show, &user, &recording(&show, json!({"source": cam}))).await.unwrap();
    let vs = wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await;
    let source_id = vs.source_id().unwrap();
    assert_eq!(control.get_source(source_id).await.unwrap().owner, Some(owner_of(&vs)), "registered as its own");
    let id = wait_recording(&recordings, &show, active).await.recording_id().unwrap().to_owned();

    kubectl_ok(&["delete", "-n", &ns.name, "recording", &show, "--timeout=30s"]).await;
    let kept = control.get_recording(&id).await.expect("kept in the control node");
    assert!(!kept.active && kept.end_ts.is_some(), "stopped: {kept:?}");
    let retained = wait_event(&client, &ns.name, "Recording", &show, "Retained").await;
    assert!(retained.note.unwrap_or_default().contains("deletionPolicy: Retain"));

    kubectl_ok(&["delete", "-n", &ns.name, "videosource", &cam, "--timeout=30s"]).await;
    assert!(control.get_source(source_id).await.unwrap_err().is_not_found(), "the source is deleted");
    let kept = control.get_recording(&id).await.expect("still kept after its source went");
    assert_eq!(kept.source_name.as_deref(), Some(cam.as_str()), "{kept:?}");
    assert!(control.list_recordings().await.unwrap().iter().any(|r| r.id == id), "listable");
    let deleted = wait_event(&client, &ns.name, "VideoSource", &cam, "Deleted").await;
    assert!(deleted.note.as_deref().unwrap_or_default().contains("kept its 1 recording"), "{deleted:?}");

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}

/// `deletionPolicy: Delete` deletes: a Recording's recording, and a VideoSource's recordings with it (also one
/// whose own Recording kept it); the deprecated `purgeOnDelete: true` still deletes, and says once that it is
/// deprecated.
#[tokio::test]
async fn deletion_policy_delete_and_the_purge_on_delete_alias_delete_the_recordings() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let cam = unique("cam");
    let (deleted, purged, kept) = (unique("deleted"), unique("purged"), unique("kept"));

    sources.patch(&cam, &user, &source(&cam, json!({"segmentLength": 2, "deletionPolicy": "Delete"}))).await.unwrap();
    let source_id =
        wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await.source_id().unwrap();
    let mut ids = Vec::new();
    for (name, spec) in [
        (&deleted, json!({"source": cam, "deletionPolicy": "Delete"})),
        (&purged, json!({"source": cam, "purgeOnDelete": true})),
        (&kept, json!({"source": cam})),
    ] {
        recordings.patch(name, &user, &recording(name, spec)).await.unwrap();
        ids.push(wait_recording(&recordings, name, active).await.recording_id().unwrap().to_owned());
    }

    // The alias says, once, what to use instead; the condition stays while the field does.
    let rec = wait_recording(&recordings, &purged, |rec| {
        condition_is(&rec.status.as_ref().unwrap().conditions, "Deprecated", "True", "PurgeOnDeleteDeprecated")
    })
    .await;
    assert!(find(&rec.status.unwrap().conditions, "Deprecated").unwrap().message.contains("deletionPolicy: Delete"));
    let warning = wait_event(&client, &ns.name, "Recording", &purged, "PurgeOnDeleteDeprecated").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    for name in [&deleted, &purged, &kept] {
        recordings.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&recordings, name).await;
    }
    assert!(control.get_recording(&ids[0]).await.unwrap_err().is_not_found(), "deletionPolicy: Delete");
    assert!(control.get_recording(&ids[1]).await.unwrap_err().is_not_found(), "purgeOnDelete: true");
    assert!(!control.get_recording(&ids[2]).await.expect("Retain keeps it").active);
    for (name, says) in [(&deleted, "deletionPolicy: Delete"), (&purged, "purgeOnDelete, deprecated")] {
        let event = wait_event(&client, &ns.name, "Recording", name, "Deleted").await;
        assert!(event.note.unwrap_or_default().contains(says), "{name}");
    }
    let warnings = events_about(&client, &ns.name, "Recording", &purged).await;
    let deprecations: Vec<_> =
        warnings.iter().filter(|e| e.reason.as_deref() == Some("PurgeOnDeleteDeprecated")).collect();
    assert_eq!(deprecations.len(), 1, "{deprecations:?}");
    assert!(deprecations[0].series.is_none(), "said once, not repeated: {:?}", deprecations[0]);

    // The VideoSource's Delete takes the recording its own Recording kept.
    sources.delete(&cam, &DeleteParams::default()).await.unwrap();
    wait_gone(&sources, &cam).await;
    assert!(control.get_source(source_id).await.unwrap_err().is_not_found());
    assert!(control.get_recording(&ids[2]).await.unwrap_err().is_not_found(), "deleted with its source");
    let event = wait_event(&client, &ns.name, "VideoSource", &cam, "Deleted").await;
    assert!(event.note.unwrap_or_default().contains("deleted its 1 recording"), "{cam}");

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}

/// The control node is gone (e.g. the chart was uninstalled first): deleting the resources waits, and says why
/// in a `Deleting` condition and a Warning Event, retrying with backoff; the `livemix.io/skip-cleanup`
/// annotation releases them without the control node.
#[tokio::test]
async fn skip_cleanup_releases_resources_whose_control_node_is_gone() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show) = (unique("cam"), unique("show"));

    sources.patch(&cam, &user, &source(&cam, json!({"segmentLength": 2}))).await.unwrap();
    recordings
        .patch(&show, &user, &recording(&show, json!({"source": cam, "deletionPolicy": "Delete"})))
        .await
        .unwrap();
    let source_id =
        wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await.source_id().unwrap();
    let recording_id = wait_recording(&recordings, &show, active).await.recording_id().unwrap().to_owned();

    node.stop().await;
    recordings.delete(&show, &DeleteParams::default()).await.unwrap();
    sources.delete(&cam, &DeleteParams::default()).await.unwrap();

    let waiting = |conditions: &[Condition]| -> Result<String, String> {
        condition_is(conditions, "Deleting", "True", "ControlUnreachable")?;
        Ok(find(conditions, "Deleting").unwrap().message.clone())
    };
    let message = eventually("the VideoSource to say why its deletion waits", || async {
        let vs = sources.get(&cam).await.map_err(|e| e.to_string())?;
        waiting(&vs.status.unwrap_or_default().conditions)
    })
    .await;
    assert!(message.contains("unreachable") && message.contains(&source_id.to_string()), "{message}");
    assert!(message.contains(SKIP_CLEANUP_ANNOTATION), "{message}");
    let message = eventually("the Recording to say why its deletion waits", || async {
        let rec = recordings.get(&show).await.map_err(|e| e.to_string())?;
        waiting(&rec.status.unwrap_or_default().conditions)
    })
    .await;
    assert!(message.contains(&recording_id), "{message}");
    for (kind, name) in [("VideoSource", &cam), ("Recording", &show)] {
        let warning = wait_event(&client, &ns.name, kind, name, "ControlUnreachable").await;
        assert_eq!(warning.type_.as_deref(), Some("Warning"));
        assert_eq!(warning.action.as_deref(), Some("Delete"));
    }
    // Retrying, but with backoff (200 ms doubling up to 2 s here), not in a loop.
    let before = operator.reconciles("VideoSource");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let attempts = operator.reconciles("VideoSource") - before;
    assert!((1..=5).contains(&attempts), "{attempts} cleanup attempts in 4 s");
    let vs = sources.get(&cam).await.expect("still there, finalizer in place");
    assert_eq!(vs.finalizers(), ["videosources.livemix.io/cleanup"]);

    let annotate = Patch::Merge(json!({"metadata": {"annotations": {SKIP_CLEANUP_ANNOTATION: "true"}}}));
    recordings.patch(&show, &PatchParams::default(), &annotate).await.unwrap();
    sources.patch(&cam, &PatchParams::default(), &annotate).await.unwrap();
    wait_gone(&recordings, &show).await;
    wait_gone(&sources, &cam).await;
    let skipped = wait_event(&client, &ns.name, "VideoSource", &cam, "CleanupSkipped").await;
    assert_eq!(skipped.type_.as_deref(), Some("Warning"));
    assert!(skipped.note.unwrap_or_default().contains(&format!("source {source_id} is left")));
    let skipped = wait_event(&client, &ns.name, "Recording", &show, "CleanupSkipped").await;
    assert!(skipped.note.unwrap_or_default().contains(&format!("recording {recording_id} is left")));

    operator.stop().await;
    ns.delete().await;
}

/// `spec.hold` and `spec.retention` reach the control node and come back in the status and kubectl's columns,
/// both ways; a retention the schema lets through (too large for 64 bits) is refused by the operator with a
/// condition, registering nothing.
#[tokio::test]
async fn hold_and_retention_reach_the_control_node() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show, bad) = (unique("cam"), unique("show"), unique("bad"));

    let spec = json!({"segmentLength": 2, "retention": {"maxAge": "1d", "maxBytes": "10Gi"}});
    sources.patch(&cam, &user, &source(&cam, spec)).await.unwrap();
    let vs = wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await;
    let source_id = vs.source_id().unwrap();
    let status = vs.status.unwrap();
    assert_eq!((status.stored_bytes, status.stored_segments), (Some(0), Some(0)));
    let want = Retention { max_age_secs: Some(86_400), max_bytes: Some(10 << 30) };
    assert_eq!(control.get_source(source_id).await.unwrap().retention, want);

    recordings.patch(&show, &user, &recording(&show, json!({"source": cam, "hold": true}))).await.unwrap();
    let rec = wait_recording(&recordings, &show, |rec| {
        active(rec)?;
        if rec.status.as_ref().unwrap().hold { Ok(()) } else { Err("not held yet".into()) }
    })
    .await;
    let id = rec.recording_id().unwrap().to_owned();
    assert!(control.get_recording(&id).await.unwrap().hold);
    assert_eq!(rec.status.as_ref().unwrap().stored_bytes, Some(0));
    wait_event(&client, &ns.name, "Recording", &show, "HoldSet").await;
    let out = kubectl_ok(&["get", "recording", &show, "-n", &ns.name, "--no-headers"]).await;
    let cells: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(cells[..6], [show.as_str(), cam.as_str(), "true", "0", "0", "true"], "HOLD column: {out}");

    // Hold lifted, recording stopped: it expires a day after it ended (the source's maxAge).
    let spec = json!({"source": cam, "hold": false, "stopped": true});
    recordings.patch(&show, &user, &recording(&show, spec)).await.unwrap();
    let rec = wait_recording(&recordings, &show, |rec| {
        let status = rec.status.as_ref().unwrap();
        if !status.hold && !status.active && status.expires_at.is_some() { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    let in_control = control.get_recording(&id).await.unwrap();
    assert!(!in_control.hold);
    let status = rec.status.unwrap();
    assert_eq!(status.expires_at, in_control.end_ts.map(|end| end + TimeDelta::days(1)), "{status:?}");
    wait_event(&client, &ns.name, "Recording", &show, "HoldLifted").await;

    // Retention changed, then removed: the control node follows; its default applies again.
    let spec = json!({"segmentLength": 2, "retention": {"maxAge": "2w"}});
    sources.patch(&cam, &user, &source(&cam, spec)).await.unwrap();
    let want = Retention { max_age_secs: Some(14 * 86_400), max_bytes: None };
    eventually("the new retention in control", || async {
        let have = control.get_source(source_id).await.map_err(|e| e.to_string())?.retention;
        if have == want { Ok(()) } else { Err(format!("{have:?}")) }
    })
    .await;
    wait_event(&client, &ns.name, "VideoSource", &cam, "RetentionUpdated").await;
    sources.patch(&cam, &user, &source(&cam, json!({"segmentLength": 2}))).await.unwrap();
    eventually("the default retention in control", || async {
        let have = control.get_source(source_id).await.map_err(|e| e.to_string())?.retention;
        if have == Retention::default() { Ok(()) } else { Err(format!("{have:?}")) }
    })
    .await;

    // Past the schema, refused by the operator: a condition, an Event, nothing registered.
    let spec = json!({"segmentLength": 2, "retention": {"maxBytes": "99999999999Ti"}});
    sources.patch(&bad, &user, &source(&bad, spec)).await.expect("the schema lets it through");
    let vs = wait_source(&sources, &bad, |vs| {
        condition_is(&vs.status.as_ref().unwrap().conditions, "Ready", "False", "InvalidSpec")
    })
    .await;
    let message = find(&vs.status.unwrap().conditions, "Ready").unwrap().message.clone();
    assert!(message.contains("spec.retention.maxBytes") && message.contains("too large"), "{message}");
    let warning = wait_event(&client, &ns.name, "VideoSource", &bad, "InvalidSpec").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(control.find_source(&bad).await.unwrap().is_none(), "nothing registered");

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
