//! VideoSource reconciles against the mocked API server, asserting the exact Kubernetes calls, with a real
//! control node behind the operator.

use std::time::Duration;

use kube::runtime::controller::Action;
use livemix_common::model::{RecordingMode as ControlRecordingMode, Retention};
use livemix_operator::{
    control_client::NewSource,
    crd::{
        DeletionPolicy, RecordingMode, RetentionSpec, VideoSource, VideoSourceStatus,
        lifecycle::{ADOPT_ANNOTATION, SKIP_CLEANUP_ANNOTATION},
    },
    reconcile::{self, Error, video_source::FINALIZER},
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    NAMESPACE, VIDEOSOURCES, VOD_URL, applied_status, assert_backoff, assert_event, closed_port_url, condition,
    control::ControlNode, event_post, is_event, kube_api::MockApi, lines, mark_deleted, object_patch, operator,
    reconcile_source, recording, settings, settle_recording, settle_source, status_patch, unique, video_source,
};

#[tokio::test]
async fn create_adds_the_finalizer_then_registers_the_source_and_writes_status() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    api.put(&video_source(&name, false));

    // First pass: only the finalizer, so nothing is registered before deletion can be intercepted.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(lines(&calls), [object_patch(VIDEOSOURCES, &name)]);
    assert_eq!(calls[0].content_type.as_deref(), Some("application/json-patch+json"));
    assert_eq!(
        calls[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert!(control.find_source(&name).await.unwrap().is_none(), "nothing registered before the finalizer");

    // Second pass: register, tell, record.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(30)));
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "Created", "VideoSource", &name, &[&name]);
    let source = control.find_source(&name).await.unwrap().expect("source registered in control");
    assert_eq!((source.segment_length, source.description.as_str(), source.streaming), (2, "lobby camera", false));
    let stored: VideoSource = api.get(NAMESPACE, &name).unwrap();
    let owner = format!("k8s/{NAMESPACE}/{name}/{}", stored.metadata.uid.as_deref().unwrap());
    assert_eq!(source.owner.as_deref(), Some(owner.as_str()), "registered as this resource's");
    assert_eq!(source.retention, Retention::default(), "no retention of its own");
    let status = applied_status(&calls[1], "VideoSource");
    assert_eq!((&status["storedBytes"], &status["storedSegments"]), (&json!(0), &json!(0)));
    assert_eq!(status["id"], source.id.to_string());
    assert_eq!(status["streaming"], false);
    assert_eq!(status["reachable"], false);
    assert_eq!(status["liveUrl"], format!("{VOD_URL}/v1/vod/live/{}/vid.m3u8", source.id));
    assert!(status.get("rrTarget").is_none() && status.get("lastSeen").is_none(), "{status}");
    let ready = condition(status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"], &ready["observedGeneration"]),
        (&json!("True"), &json!("Synced"), &json!(1))
    );
    let reachable = condition(status, "Reachable");
    assert_eq!((&reachable["status"], &reachable["reason"]), (&json!("False"), &json!("NoEdgeReport")));

    // Third pass: in step, so no Kubernetes call at all and still one source.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "an object in step costs no calls: {:?}", lines(&calls));
    assert_eq!(control.list_sources().await.unwrap().iter().filter(|s| s.name == name).count(), 1);
}

#[tokio::test]
async fn a_spec_change_renames_and_redescribes_the_same_source() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let vs = settle_source(&api, &ctx, &video_source(&name, false)).await;
    let id = vs.source_id().expect("registered");

    let new_name = unique("back-door");
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.name = Some(new_name.clone());
        vs.spec.description = "moved to the back door".into();
        vs.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "Renamed", "VideoSource", &name, &[&new_name]);
    assert_event(&calls[1], "Normal", "DescriptionUpdated", "VideoSource", &name, &[]);
    let status = applied_status(&calls[2], "VideoSource");
    assert_eq!(condition(status, "Ready")["observedGeneration"], 2);
    assert_eq!(status["id"], id.to_string(), "same source, not a new one");
    let source = control.get_source(id).await.unwrap();
    assert_eq!((source.name.as_str(), source.description.as_str()), (new_name.as_str(), "moved to the back door"));
    assert!(!source.streaming);
    assert!(control.find_source(&name).await.unwrap().is_none(), "no source left under the old name");
}

#[tokio::test]
async fn streaming_follows_the_spec_both_ways() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let id = settle_source(&api, &ctx, &video_source(&name, false)).await.source_id().expect("registered");

    for (wanted, reason) in [(true, "StreamingStarted"), (false, "StreamingStopped")] {
        api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
            vs.spec.streaming = wanted;
            vs.metadata.generation = vs.metadata.generation.map(|g| g + 1);
        });
        let (result, calls) = reconcile_source(&api, &ctx, &name).await;
        result.expect("reconcile");
        assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)], "streaming {wanted}");
        assert_event(&calls[0], "Normal", reason, "VideoSource", &name, &[]);
        assert_eq!(applied_status(&calls[1], "VideoSource")["streaming"], wanted);
        assert_eq!(control.get_source(id).await.unwrap().streaming, wanted);
    }
}

#[tokio::test]
async fn deleting_deletes_the_source_then_releases_the_finalizer() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let id = settle_source(&api, &ctx, &video_source(&name, true)).await.source_id().expect("registered");

    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| mark_deleted(&mut vs.metadata));
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect("cleanup"), Action::await_change());
    assert_eq!(lines(&calls), [event_post(), object_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "Deleted", "VideoSource", &name, &[&id.to_string(), "deletionPolicy: Retain"]);
    assert_eq!(
        calls[1].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert!(control.get_source(id).await.unwrap_err().is_not_found(), "source deleted in control");
    assert!(api.get::<VideoSource>(NAMESPACE, &name).is_none(), "the API server let the object go");
}

#[tokio::test]
async fn an_unreachable_control_node_shows_in_a_condition_and_an_event_and_backs_off() {
    let (client, api) = MockApi::start();
    let (ctx, metrics) = operator(client, settings(&closed_port_url().await));
    let name = unique("cam");
    let mut vs = video_source(&name, true);
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    let err = result.expect_err("control node is down");
    assert_eq!(err.reason(), "ControlNodeError");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "ControlNodeError", "VideoSource", &name, &["unreachable"]);
    let status = applied_status(&calls[1], "VideoSource");
    let ready = condition(status, "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("ControlNodeError")));
    assert!(ready["message"].as_str().unwrap().contains("unreachable"), "{ready}");
    assert!(status.get("id").is_none(), "{status}");

    // The controller retries after 0.5 s, 1 s, 2 s, then every 4 s (the cap).
    let vs = std::sync::Arc::new(api.get::<VideoSource>(NAMESPACE, &name).unwrap());
    let delays: Vec<Action> = (0..5).map(|_| reconcile::error_policy(vs.clone(), &err, ctx.clone())).collect();
    assert_backoff(&delays, &[0.5, 1.0, 2.0, 4.0, 4.0]);
    let text = metrics.encode();
    assert!(
        text.contains(r#"livemix_operator_reconcile_failures_total{kind="VideoSource",reason="ControlNodeError"} 5"#),
        "{text}"
    );

    // Still down: the same condition is not rewritten; the Event becomes a series instead of a new Event.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert!(matches!(result, Err(Error::Finalizer(_))), "{result:?}");
    assert_eq!(lines(&calls).len(), 1, "{:?}", lines(&calls));
    assert!(
        calls[0].line().starts_with("PATCH /apis/events.k8s.io/v1/namespaces/default/events/"),
        "{:?}",
        lines(&calls)
    );
}

fn retention(age: Option<&str>, bytes: Option<&str>) -> Option<RetentionSpec> {
    Some(RetentionSpec { max_age: age.map(str::to_owned), max_bytes: bytes.map(str::to_owned) })
}

/// `spec.retention` reaches the control node: at registration, on every change, and back to the default when
/// removed; a value the schema lets through but the control node cannot take is a condition, not a call.
#[tokio::test]
async fn retention_follows_the_spec_and_a_bad_value_is_a_condition() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let mut vs = video_source(&name, false);
    vs.spec.retention = retention(Some("30d"), Some("500Gi"));
    let id = settle_source(&api, &ctx, &vs).await.source_id().expect("registered");
    let want = Retention { max_age_secs: Some(30 * 86_400), max_bytes: Some(500 << 30) };
    assert_eq!(control.get_source(id).await.unwrap().retention, want, "registered with its retention");

    let mut generation = 1;
    let mut edit = |change: Option<RetentionSpec>| {
        generation += 1;
        let generation = generation;
        api.edit::<VideoSource, _>(NAMESPACE, &name, move |vs| {
            vs.spec.retention = change;
            vs.metadata.generation = Some(generation);
        });
    };
    edit(retention(Some("12h"), None));
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "RetentionUpdated", "VideoSource", &name, &["43200s", "default"]);
    let want = Retention { max_age_secs: Some(43_200), max_bytes: None };
    assert_eq!(control.get_source(id).await.unwrap().retention, want);

    // Too large for 64 bits, yet what the schema's pattern allows: refused before the control node is asked.
    edit(retention(Some("1d"), Some("99999999999Ti")));
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    let err = result.expect_err("invalid retention");
    assert_eq!(err.reason(), "InvalidSpec");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "InvalidSpec", "VideoSource", &name, &["spec.retention.maxBytes"]);
    let ready = condition(applied_status(&calls[1], "VideoSource"), "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("too large"), "{ready}");
    assert_eq!(control.get_source(id).await.unwrap().retention, want, "nothing changed in control");
    let stored = std::sync::Arc::new(api.get::<VideoSource>(NAMESPACE, &name).unwrap());
    assert_backoff(&[reconcile::error_policy(stored, &err, ctx.clone())], &[0.5]);

    // Removed: back to the control node's default.
    edit(None);
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(calls.len(), 2, "{:?}", lines(&calls));
    assert!(is_event(&calls[0]), "RetentionUpdated again, in its series: {:?}", lines(&calls));
    assert_eq!(calls[1].line(), status_patch(VIDEOSOURCES, &name));
    let ready = condition(applied_status(&calls[1], "VideoSource"), "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(control.get_source(id).await.unwrap().retention, Retention::default());
}

/// Deleting a VideoSource deletes its source; its recordings stay in the control node (`Retain`, the default)
/// or go with it (`Delete`), which a recording on hold refuses until the hold is lifted.
#[tokio::test]
async fn deletion_policy_says_whether_the_recordings_stay() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));

    for policy in [None, Some(DeletionPolicy::Retain), Some(DeletionPolicy::Delete)] {
        let name = unique("cam");
        let mut vs = video_source(&name, false);
        vs.spec.deletion_policy = policy;
        let id = settle_source(&api, &ctx, &vs).await.source_id().expect("registered");
        let rec = settle_recording(&api, &ctx, &recording(&unique("rec"), &name)).await;
        let recording_id = rec.recording_id().expect("started").to_owned();
        let deletes = policy == Some(DeletionPolicy::Delete);
        if deletes {
            // Held (here by hand in the control node): the control node refuses, the deletion waits and says why.
            control.set_hold(&recording_id, true).await.unwrap();
        }

        api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| mark_deleted(&mut vs.metadata));
        if deletes {
            let (result, calls) = reconcile_source(&api, &ctx, &name).await;
            let err = result.expect_err("a held recording refuses the delete");
            assert_eq!(err.cleanup_reason(), "OnHold");
            assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
            assert_event(&calls[0], "Warning", "OnHold", "VideoSource", &name, &["HTTP 409", "skip-cleanup"]);
            let deleting = condition(applied_status(&calls[1], "VideoSource"), "Deleting");
            assert_eq!((&deleting["status"], &deleting["reason"]), (&json!("True"), &json!("OnHold")));
            assert!(control.get_source(id).await.is_ok(), "nothing deleted");
            control.set_hold(&recording_id, false).await.unwrap();
        }
        let (result, calls) = reconcile_source(&api, &ctx, &name).await;
        assert_eq!(result.expect("cleanup"), Action::await_change());
        assert_eq!(lines(&calls), [event_post(), object_patch(VIDEOSOURCES, &name)]);
        assert!(control.get_source(id).await.unwrap_err().is_not_found(), "the source is deleted");
        if deletes {
            assert_event(&calls[0], "Normal", "Deleted", "VideoSource", &name, &["deleted its 1 recording"]);
            assert!(control.get_recording(&recording_id).await.unwrap_err().is_not_found(), "deleted with it");
        } else {
            assert_event(&calls[0], "Normal", "Deleted", "VideoSource", &name, &["kept its 1 recording"]);
            let kept = control.get_recording(&recording_id).await.expect("kept");
            assert!(!kept.active, "stopped with its source: {kept:?}");
            assert_eq!(kept.source_name.as_deref(), Some(name.as_str()), "still says whose it was");
        }
    }
}

/// A cleanup that cannot reach the control node says why it waits (a `Deleting` condition and a Warning Event)
/// and retries with backoff; `livemix.io/skip-cleanup: "true"` then releases the resource without the control
/// node.
#[tokio::test]
async fn a_blocked_cleanup_says_why_and_skip_cleanup_releases_the_resource() {
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&closed_port_url().await));
    let name = unique("cam");
    let id = Uuid::new_v4();
    let mut vs = video_source(&name, false);
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    vs.status = Some(VideoSourceStatus { id: Some(id), ..VideoSourceStatus::default() });
    mark_deleted(&mut vs.metadata);
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    let err = result.expect_err("control node unreachable");
    assert_eq!(err.cleanup_reason(), "ControlUnreachable");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(
        &calls[0],
        "Warning",
        "ControlUnreachable",
        "VideoSource",
        &name,
        &["unreachable", &id.to_string(), SKIP_CLEANUP_ANNOTATION],
    );
    let status = applied_status(&calls[1], "VideoSource");
    let deleting = condition(status, "Deleting");
    assert_eq!((&deleting["status"], &deleting["reason"]), (&json!("True"), &json!("ControlUnreachable")));
    let message = deleting["message"].as_str().unwrap();
    assert!(message.contains("unreachable") && message.contains(SKIP_CLEANUP_ANNOTATION), "{message}");
    assert_eq!(condition(status, "Ready")["reason"], "ControlUnreachable");
    let stored = std::sync::Arc::new(api.get::<VideoSource>(NAMESPACE, &name).unwrap());
    let delays: Vec<Action> = (0..3).map(|_| reconcile::error_policy(stored.clone(), &err, ctx.clone())).collect();
    assert_backoff(&delays, &[0.5, 1.0, 2.0]);

    // Still down: the same condition is not rewritten (that would bypass the backoff); the Event becomes a series.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert!(result.is_err());
    assert_eq!(calls.len(), 1, "{:?}", lines(&calls));
    assert!(calls[0].line().starts_with(&format!("PATCH /apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events/")));

    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.metadata.annotations = Some([(SKIP_CLEANUP_ANNOTATION.to_owned(), "true".to_owned())].into());
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect("released"), Action::await_change());
    assert_eq!(lines(&calls), [event_post(), object_patch(VIDEOSOURCES, &name)]);
    assert_event(
        &calls[0],
        "Warning",
        "CleanupSkipped",
        "VideoSource",
        &name,
        &[SKIP_CLEANUP_ANNOTATION, &format!("source {id} is left")],
    );
    assert!(api.get::<VideoSource>(NAMESPACE, &name).is_none(), "the API server let the object go");
}

/// `status.id` is user-writable: a VideoSource whose status names a source another manager registered neither
/// renames, streams nor deletes it.
#[tokio::test]
async fn a_status_id_naming_another_owners_source_is_not_touched() {
    let node = ControlNode::start().await;
    let control = node.client();
    let theirs = control
        .create_source(&NewSource {
            name: unique("theirs"),
            segment_len: 2,
            description: Some("not yours".into()),
            owner: Some("k8s/elsewhere/cam/0000".into()),
            retention: None,
            edge: None,
            recording: None,
        })
        .await
        .unwrap();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let mut vs = video_source(&name, true);
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    vs.status = Some(VideoSourceStatus { id: Some(theirs.id), ..VideoSourceStatus::default() });
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect_err("not ours").reason(), "SourceNotOwned");
    assert_event(&calls[0], "Warning", "SourceNotOwned", "VideoSource", &name, &["k8s/elsewhere/cam/0000"]);
    let untouched = control.get_source(theirs.id).await.unwrap();
    assert_eq!(
        (untouched.name.as_str(), untouched.streaming),
        (theirs.name.as_str(), false),
        "not renamed, not streaming"
    );

    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| mark_deleted(&mut vs.metadata));
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("released");
    assert_eq!(lines(&calls), [event_post(), object_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "SourceNotOwned", "VideoSource", &name, &["left source"]);
    assert!(control.get_source(theirs.id).await.is_ok(), "not deleted");
}

/// The edges the edge-binding tests bind to, known to their control node as per-edge credentials.
const EDGE_TOKENS: &str = "--edge-tokens=edge-a:operator-test-edge-a,edge-b:operator-test-edge-b";

/// `spec.edge` binds the source when it is registered (no separate call), moves it when changed, and removing it
/// leaves the binding where it is; a binding lost in the control node is put back while the spec names an edge.
#[tokio::test]
async fn spec_edge_binds_the_source_at_registration_and_moves_it() {
    let node = ControlNode::start_with(&[EDGE_TOKENS]).await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let mut vs = video_source(&name, false);
    vs.spec.edge = Some("edge-a".into());
    api.put(&vs);

    let (result, _) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect("finalizer"), Action::await_change());
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)], "registered bound: no EdgeBound");
    assert_event(&calls[0], "Normal", "Created", "VideoSource", &name, &[&name]);
    let status = applied_status(&calls[1], "VideoSource");
    assert_eq!(status["edge"], "edge-a", "{status}");
    let id: Uuid = status["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(control.source_edge(id).await.unwrap().as_deref(), Some("edge-a"));
    assert_eq!(control.get_source(id).await.unwrap().edge.as_deref(), Some("edge-a"), "in the source's JSON too");
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "bound as the spec says: {:?}", lines(&calls));

    // Moved to another edge.
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.edge = Some("edge-b".into());
        vs.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "EdgeBound", "VideoSource", &name, &["moved", "\"edge-a\"", "\"edge-b\""]);
    assert_eq!(applied_status(&calls[1], "VideoSource")["edge"], "edge-b");
    assert_eq!(control.source_edge(id).await.unwrap().as_deref(), Some("edge-b"));

    // Removed from the spec: the binding stays (only the generation moves on in the status).
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.edge = None;
        vs.metadata.generation = Some(3);
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [status_patch(VIDEOSOURCES, &name)]);
    let status = applied_status(&calls[0], "VideoSource");
    assert_eq!((&status["edge"], &condition(status, "Ready")["observedGeneration"]), (&json!("edge-b"), &json!(3)));
    assert_eq!(control.source_edge(id).await.unwrap().as_deref(), Some("edge-b"), "left bound");

    // Unbound by hand: the status says so, and the operator leaves it while the spec names no edge ...
    assert_eq!(control.unbind_edge(id).await.unwrap(), None);
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [status_patch(VIDEOSOURCES, &name)]);
    assert!(applied_status(&calls[0], "VideoSource").get("edge").is_none(), "no binding shown");
    assert_eq!(control.source_edge(id).await.unwrap(), None);

    // ... and binds it again once the spec names one.
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.edge = Some("edge-a".into());
        vs.metadata.generation = Some(4);
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(calls.len(), 2, "{:?}", lines(&calls));
    assert!(is_event(&calls[0]), "EdgeBound again, in its series: {:?}", lines(&calls));
    assert_eq!(applied_status(&calls[1], "VideoSource")["edge"], "edge-a");
    assert_eq!(control.source_edge(id).await.unwrap().as_deref(), Some("edge-a"));
}

/// A source found by name (here registered by hand, unbound, and adopted) is bound to `spec.edge` as well.
#[tokio::test]
async fn an_adopted_source_is_bound_to_spec_edge() {
    let node = ControlNode::start_with(&[EDGE_TOKENS]).await;
    let control = node.client();
    let name = unique("cam");
    let existing = control
        .create_source(&NewSource {
            name: name.clone(),
            segment_len: 2,
            description: Some("lobby camera".into()),
            owner: None,
            retention: None,
            edge: None,
            recording: None,
        })
        .await
        .unwrap();
    assert_eq!(existing.edge, None);
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let mut vs = video_source(&name, false);
    vs.spec.edge = Some("edge-b".into());
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    vs.metadata.annotations = Some([(ADOPT_ANNOTATION.to_owned(), "true".to_owned())].into());
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "Adopted", "VideoSource", &name, &[&existing.id.to_string()]);
    assert_event(&calls[1], "Normal", "EdgeBound", "VideoSource", &name, &["bound", "\"edge-b\""]);
    assert_eq!(applied_status(&calls[2], "VideoSource")["edge"], "edge-b");
    assert_eq!(control.source_edge(existing.id).await.unwrap().as_deref(), Some("edge-b"));
}

/// An edge id the control node could not take (one the CRD's schema would refuse) is a condition; nothing is
/// registered.
#[tokio::test]
async fn an_invalid_spec_edge_is_a_condition_and_nothing_is_registered() {
    let node = ControlNode::start_with(&[EDGE_TOKENS]).await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let mut vs = video_source(&name, false);
    vs.spec.edge = Some("edge 0".into());
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.expect_err("invalid edge id").reason(), "InvalidSpec");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "InvalidSpec", "VideoSource", &name, &["spec.edge", "edge 0"]);
    let status = applied_status(&calls[1], "VideoSource");
    let ready = condition(status, "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("InvalidSpec")));
    assert!(status.get("id").is_none(), "{status}");
    assert!(control.find_source(&name).await.unwrap().is_none(), "nothing registered");
}

/// `spec.recording: continuous` registers the source continuous (carried by the registration, so no mode switch
/// follows), a change switches the mode with `PUT /v1/source/{id}/recording-mode`, and a mode changed by hand in
/// the control node is put back.
#[tokio::test]
async fn spec_recording_registers_continuous_and_switches_the_mode() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let name = unique("cam");
    let mut vs = video_source(&name, false);
    vs.spec.recording = Some(RecordingMode::Continuous);
    api.put(&vs);

    let (result, _) = reconcile_source(&api, &ctx, &name).await;
    result.expect("finalizer");
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)], "registered, no mode switch");
    assert_event(&calls[0], "Normal", "Created", "VideoSource", &name, &[&name]);
    let status = applied_status(&calls[1], "VideoSource");
    assert_eq!(status["recording"], "continuous", "{status}");
    let id: Uuid = status["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(control.get_source(id).await.unwrap().recording, ControlRecordingMode::Continuous);
    let active = control.source_recordings(id, true).await.unwrap();
    assert!(active.iter().any(|r| r.continuous), "the control node keeps a continuous recording: {active:?}");

    // In step: nothing more.
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "{:?}", lines(&calls));

    // Back to on demand: the continuous recording stops.
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.recording = Some(RecordingMode::OnDemand);
        vs.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "RecordingModeUpdated", "VideoSource", &name, &["continuous", "onDemand"]);
    assert_eq!(applied_status(&calls[1], "VideoSource")["recording"], "onDemand");
    assert_eq!(control.get_source(id).await.unwrap().recording, ControlRecordingMode::OnDemand);
    assert!(control.source_recordings(id, true).await.unwrap().iter().all(|r| !r.continuous), "stopped");

    // Switched by hand in the control node: the spec wins (unset means onDemand too).
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.spec.recording = None;
        vs.metadata.generation = Some(3);
    });
    control.set_recording_mode(id, ControlRecordingMode::Continuous).await.unwrap();
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.expect("reconcile");
    // The same reason and action as the Event above: kube's recorder counts it in that Event's series.
    assert_eq!(calls.len(), 2, "{:?}", lines(&calls));
    assert!(is_event(&calls[0]), "{:?}", lines(&calls));
    assert_eq!(calls[1].line(), status_patch(VIDEOSOURCES, &name));
    assert_eq!(applied_status(&calls[1], "VideoSource")["recording"], "onDemand");
    assert_eq!(control.get_source(id).await.unwrap().recording, ControlRecordingMode::OnDemand);
}
