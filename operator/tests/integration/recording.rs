//! Recording reconciles against the mocked API server, asserting the exact Kubernetes calls, with a real
//! control node behind the operator.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use kube::runtime::controller::Action;
use livemix_operator::{
    crd::{DeletionPolicy, Recording, RecordingStatus},
    reconcile::{self, recording::FINALIZER},
};
use serde_json::json;

use crate::support::{
    NAMESPACE, RECORDINGS, VIDEOSOURCES, VOD_URL, applied_status, assert_backoff, assert_event, closed_port_url,
    condition, control::ControlNode, event_post, is_event, kube_api::MockApi, lines, mark_deleted, object_patch,
    operator, reconcile_recording, recording, settings, settle_recording, settle_source, status_patch, unique,
    video_source,
};

#[tokio::test]
async fn create_starts_the_recording_from_its_start_time_and_reports_it() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    let source_id = settle_source(&api, &ctx, &video_source(&source, true)).await.source_id().expect("source");
    let name = unique("rec");
    let mut rec = recording(&name, &source);
    let start = Utc::now() - TimeDelta::seconds(90);
    rec.spec.start_time = Some(start);
    api.put(&rec);

    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(lines(&calls), [object_patch(RECORDINGS, &name)]);
    assert_eq!(calls[0].body[1], json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}));
    assert!(control.source_recordings(source_id, false).await.unwrap().is_empty(), "not started before the finalizer");

    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(30)));
    assert_eq!(lines(&calls), [format!("GET {VIDEOSOURCES}/{source}"), event_post(), status_patch(RECORDINGS, &name)]);
    assert_event(&calls[1], "Normal", "Started", "Recording", &name, &[&source]);
    let recordings = control.source_recordings(source_id, false).await.unwrap();
    assert_eq!(recordings.len(), 1, "one recording in control");
    let started = &recordings[0];
    let stored: Recording = api.get(NAMESPACE, &name).unwrap();
    assert_eq!(started.alias.as_deref(), Some(stored.control_alias().as_str()));
    assert_eq!(started.description.as_deref(), Some("morning show"));
    assert_eq!(started.start_ts.timestamp(), start.timestamp(), "startTime sent as epoch seconds");
    assert!(started.active);
    let status = applied_status(&calls[2], "Recording");
    assert_eq!(status["id"], started.id);
    assert_eq!(status["alias"], stored.control_alias());
    assert_eq!(status["active"], true);
    assert_eq!(status["segments"], 0);
    assert_eq!(status["startTs"], json!(started.start_ts));
    assert!(status.get("endTs").is_none(), "{status}");
    assert_eq!(status["playlistUrl"], format!("{VOD_URL}/v1/vod/recording/{}/vid.m3u8", started.id));
    let ready = condition(status, "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("True"), &json!("Recording")));

    // In step: the control node is read, Kubernetes is not called.
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "{:?}", lines(&calls));
    assert_eq!(control.source_recordings(source_id, false).await.unwrap().len(), 1);
}

#[tokio::test]
async fn setting_stopped_stops_the_recording() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, false)).await;
    let name = unique("rec");
    let id = settle_recording(&api, &ctx, &recording(&name, &source)).await.recording_id().expect("started").to_owned();

    api.edit::<Recording, _>(NAMESPACE, &name, |rec| {
        rec.spec.stopped = true;
        rec.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(300)), "finished: slow resync");
    assert_eq!(lines(&calls), [event_post(), status_patch(RECORDINGS, &name)]);
    assert_event(&calls[0], "Normal", "Stopped", "Recording", &name, &[&id]);
    let stopped = control.get_recording(&id).await.unwrap();
    assert!(!stopped.active);
    let status = applied_status(&calls[1], "Recording");
    assert_eq!(status["active"], false);
    assert_eq!(status["endTs"], json!(stopped.end_ts.expect("end time")));
    let ready = condition(status, "Ready");
    assert_eq!((&ready["reason"], &ready["observedGeneration"]), (&json!("Stopped"), &json!(2)));
}

/// Deleting a Recording always stops it; `Retain` (the default) keeps it in the control node, `Delete` and the
/// deprecated `purgeOnDelete: true` delete it there.
#[tokio::test]
async fn deleting_stops_the_recording_and_keeps_or_deletes_it_by_policy() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, false)).await;

    for (policy, purge, deletes, says) in [
        (None, false, false, "deletionPolicy: Retain"),
        (Some(DeletionPolicy::Retain), false, false, "deletionPolicy: Retain"),
        (Some(DeletionPolicy::Delete), false, true, "deletionPolicy: Delete"),
        (None, true, true, "purgeOnDelete, deprecated"),
    ] {
        let name = unique("rec");
        let mut rec = recording(&name, &source);
        rec.spec.deletion_policy = policy;
        rec.spec.purge_on_delete = purge;
        let id = settle_recording(&api, &ctx, &rec).await.recording_id().expect("started").to_owned();
        api.edit::<Recording, _>(NAMESPACE, &name, |rec| mark_deleted(&mut rec.metadata));
        let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
        assert_eq!(result.expect("cleanup"), Action::await_change());
        assert_eq!(lines(&calls), [event_post(), event_post(), object_patch(RECORDINGS, &name)], "{policy:?} {purge}");
        assert_event(&calls[0], "Normal", "Stopped", "Recording", &name, &[&id]);
        if deletes {
            assert_event(&calls[1], "Normal", "Deleted", "Recording", &name, &[&id, says]);
            assert!(control.get_recording(&id).await.unwrap_err().is_not_found(), "deleted from control");
        } else {
            assert_event(&calls[1], "Normal", "Retained", "Recording", &name, &[&id, says]);
            let kept = control.get_recording(&id).await.unwrap();
            assert!(!kept.active && kept.end_ts.is_some(), "stopped and kept: {kept:?}");
            assert_eq!(kept.source_name.as_deref(), Some(source.as_str()));
        }
        assert_eq!(calls.last().unwrap().body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
        assert!(api.get::<Recording>(NAMESPACE, &name).is_none());
    }
}

/// `purgeOnDelete` still works, and says once (a Warning Event, then a `Deprecated` condition that also survives
/// operator restarts) what to use instead.
#[tokio::test]
async fn purge_on_delete_warns_once_that_it_is_deprecated() {
    let node = ControlNode::start().await;
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client.clone(), settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, false)).await;
    let name = unique("rec");
    let mut rec = recording(&name, &source);
    rec.spec.purge_on_delete = true;
    rec.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&rec);

    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(
        lines(&calls),
        [format!("GET {VIDEOSOURCES}/{source}"), event_post(), event_post(), status_patch(RECORDINGS, &name)]
    );
    assert_event(&calls[1], "Normal", "Started", "Recording", &name, &[]);
    assert_event(&calls[2], "Warning", "PurgeOnDeleteDeprecated", "Recording", &name, &["deletionPolicy: Delete"]);
    let deprecated = condition(applied_status(&calls[3], "Recording"), "Deprecated");
    assert_eq!((&deprecated["status"], &deprecated["reason"]), (&json!("True"), &json!("PurgeOnDeleteDeprecated")));

    // Once: neither the same operator nor a restarted one says it again.
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "{:?}", lines(&calls));
    let (restarted, _metrics) = operator(client, settings(&node.management));
    let (result, calls) = reconcile_recording(&api, &restarted, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "{:?}", lines(&calls));

    // Replaced by deletionPolicy: the condition goes, silently.
    api.edit::<Recording, _>(NAMESPACE, &name, |rec| {
        rec.spec.purge_on_delete = false;
        rec.spec.deletion_policy = Some(DeletionPolicy::Delete);
        rec.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_recording(&api, &restarted, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [status_patch(RECORDINGS, &name)]);
    let status = applied_status(&calls[0], "Recording");
    assert!(!status["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Deprecated"), "{status}");
}

/// `spec.hold` reaches the control node both ways and shows in the status; a hold keeps `deletionPolicy: Delete`
/// from deleting the recording (the deletion waits, saying why) until the spec lifts it.
#[tokio::test]
async fn hold_follows_the_spec_and_holds_back_a_delete_policy() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, false)).await;
    let name = unique("rec");
    let mut rec = recording(&name, &source);
    rec.spec.hold = true;
    rec.spec.deletion_policy = Some(DeletionPolicy::Delete);
    rec.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&rec);

    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(
        lines(&calls),
        [format!("GET {VIDEOSOURCES}/{source}"), event_post(), event_post(), status_patch(RECORDINGS, &name)]
    );
    assert_event(&calls[2], "Normal", "HoldSet", "Recording", &name, &[]);
    let status = applied_status(&calls[3], "Recording");
    let id = status["id"].as_str().unwrap().to_owned();
    assert_eq!((&status["hold"], &status["storedBytes"]), (&json!(true), &json!(0)));
    assert!(status.get("expiresAt").is_none(), "active: nothing expires: {status}");
    assert!(control.get_recording(&id).await.unwrap().hold);

    for (hold, reason) in [(false, "HoldLifted"), (true, "HoldSet")] {
        api.edit::<Recording, _>(NAMESPACE, &name, |rec| rec.spec.hold = hold);
        let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
        result.expect("reconcile");
        assert_eq!(lines(&calls).len(), 2, "{:?}", lines(&calls));
        if calls[0].line() == event_post() {
            assert_event(&calls[0], "Normal", reason, "Recording", &name, &[&id]);
        } else {
            assert!(is_event(&calls[0]), "HoldSet again: a series; {:?}", lines(&calls));
        }
        assert_eq!(applied_status(&calls[1], "Recording")["hold"], hold);
        assert_eq!(control.get_recording(&id).await.unwrap().hold, hold);
    }

    // Deleted while held: stopped, not deleted; the deletion waits and says why.
    api.edit::<Recording, _>(NAMESPACE, &name, |rec| mark_deleted(&mut rec.metadata));
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    let err = result.expect_err("held");
    assert_eq!(err.cleanup_reason(), "OnHold");
    assert_eq!(lines(&calls), [event_post(), event_post(), status_patch(RECORDINGS, &name)]);
    assert_event(&calls[0], "Normal", "Stopped", "Recording", &name, &[&id]);
    assert_event(&calls[1], "Warning", "OnHold", "Recording", &name, &["spec.hold", "livemix.io/skip-cleanup"]);
    let deleting = condition(applied_status(&calls[2], "Recording"), "Deleting");
    assert_eq!((&deleting["status"], &deleting["reason"]), (&json!("True"), &json!("OnHold")));
    let kept = control.get_recording(&id).await.unwrap();
    assert!(kept.hold && !kept.active, "{kept:?}");
    assert!(api.get::<Recording>(NAMESPACE, &name).is_some(), "the finalizer stays");

    // The spec lifts the hold: the deletion goes through.
    api.edit::<Recording, _>(NAMESPACE, &name, |rec| rec.spec.hold = false);
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect("cleanup"), Action::await_change());
    assert_eq!(calls.len(), 3, "{:?}", lines(&calls));
    assert!(is_event(&calls[0]), "HoldLifted again: {:?}", lines(&calls));
    assert_event(&calls[1], "Normal", "Deleted", "Recording", &name, &[&id]);
    assert_eq!(calls[2].line(), object_patch(RECORDINGS, &name));
    assert!(control.get_recording(&id).await.unwrap_err().is_not_found());
    assert!(api.get::<Recording>(NAMESPACE, &name).is_none());
}

/// `status.id` is user-writable: a Recording whose status names another's recording neither reads, holds nor
/// deletes it, and its deletion leaves that recording alone.
#[tokio::test]
async fn a_status_id_naming_another_recording_is_refused() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, false)).await;
    let theirs = settle_recording(&api, &ctx, &recording(&unique("theirs"), &source)).await;
    let their_id = theirs.recording_id().unwrap().to_owned();

    let name = unique("mine");
    let mut rec = recording(&name, &source);
    rec.spec.hold = true;
    rec.spec.deletion_policy = Some(DeletionPolicy::Delete);
    rec.metadata.finalizers = Some(vec![FINALIZER.into()]);
    rec.status = Some(RecordingStatus { id: Some(their_id.clone()), ..RecordingStatus::default() });
    api.put(&rec);
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect_err("not ours").reason(), "RecordingNotOwned");
    assert_event(&calls[0], "Warning", "RecordingNotOwned", "Recording", &name, &[&their_id, &theirs.control_alias()]);
    assert!(!control.get_recording(&their_id).await.unwrap().hold, "not held by the impostor");

    api.edit::<Recording, _>(NAMESPACE, &name, |rec| mark_deleted(&mut rec.metadata));
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("released");
    assert_eq!(lines(&calls), [event_post(), object_patch(RECORDINGS, &name)]);
    assert_event(&calls[0], "Warning", "RecordingNotOwned", "Recording", &name, &["left the recording alone"]);
    assert!(control.get_recording(&their_id).await.unwrap().active, "still recording");
}

/// A Recording whose VideoSource is missing or not ready gets a clear condition and a retry with backoff; the
/// control node is not even asked (nothing listens at its URL here).
#[tokio::test]
async fn a_missing_or_unready_source_gets_a_condition_and_a_retry() {
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&closed_port_url().await));
    let source = unique("cam");
    let name = unique("rec");
    let mut rec = recording(&name, &source);
    rec.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&rec);

    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    let err = result.expect_err("no source");
    assert_eq!(err.reason(), "SourceNotFound");
    assert_eq!(lines(&calls), [format!("GET {VIDEOSOURCES}/{source}"), event_post(), status_patch(RECORDINGS, &name)]);
    assert_event(&calls[1], "Warning", "SourceNotFound", "Recording", &name, &[&source, NAMESPACE]);
    let ready = condition(applied_status(&calls[2], "Recording"), "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("SourceNotFound")));
    let rec = std::sync::Arc::new(api.get::<Recording>(NAMESPACE, &name).unwrap());
    assert_backoff(&[reconcile::error_policy(rec, &err, ctx.clone())], &[0.5]);

    // The VideoSource appears but is not registered yet.
    api.put(&video_source(&source, false));
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    assert_eq!(result.expect_err("source not ready").reason(), "SourceNotReady");
    assert_eq!(lines(&calls), [format!("GET {VIDEOSOURCES}/{source}"), event_post(), status_patch(RECORDINGS, &name)]);
    assert_event(&calls[1], "Warning", "SourceNotReady", "Recording", &name, &["not registered"]);
    let ready = condition(applied_status(&calls[2], "Recording"), "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("SourceNotReady")));
    let rec = std::sync::Arc::new(api.get::<Recording>(NAMESPACE, &name).unwrap());
    assert_backoff(&[reconcile::error_policy(rec, &err, ctx)], &[1.0]);
}

/// The status shows the recording's coverage and a `Verified` condition from the control node's last
/// verification: `Unknown` until `POST /v1/recording/{id}/verify` ran, then `True` when every segment matched.
#[tokio::test]
async fn coverage_and_the_last_verification_reach_the_status() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let source = unique("cam");
    settle_source(&api, &ctx, &video_source(&source, true)).await;
    let name = unique("rec");
    let rec = settle_recording(&api, &ctx, &recording(&name, &source)).await;
    let id = rec.recording_id().expect("started").to_owned();
    let status = serde_json::to_value(rec.status.as_ref().expect("status")).unwrap();
    assert_eq!(status["coverage"], json!({"recordedSeconds": 0, "segments": 0, "gaps": 0}), "{status}");
    let verified = condition(&status, "Verified");
    assert_eq!((&verified["status"], &verified["reason"]), (&json!("Unknown"), &json!("NotVerified")));
    assert!(verified["message"].as_str().unwrap().contains(&id), "{verified}");

    let verification = control.verify_recording(&id).await.expect("verify");
    assert!(verification.mismatched.is_empty() && verification.missing.is_empty());
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [status_patch(RECORDINGS, &name)], "a passed verification is no Event");
    let status = applied_status(&calls[0], "Recording");
    let verified = condition(status, "Verified");
    assert_eq!((&verified["status"], &verified["reason"]), (&json!("True"), &json!("Verified")));
    let message = verified["message"].as_str().unwrap();
    assert!(message.contains("0 segments checked, 0 mismatched, 0 missing"), "{message}");
    assert!(message.contains(&verification.at.format("%Y-%m-%dT%H:%M:%S").to_string()), "{message}");
    assert_eq!(status["coverage"]["segments"], 0);

    // Stopped: the coverage is read once more, then kept; the status stays in step.
    api.edit::<Recording, _>(NAMESPACE, &name, |rec| {
        rec.spec.stopped = true;
        rec.metadata.generation = Some(2);
    });
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert_eq!(lines(&calls), [event_post(), status_patch(RECORDINGS, &name)]);
    let status = applied_status(&calls[1], "Recording");
    assert_eq!(status["coverage"], json!({"recordedSeconds": 0, "segments": 0, "gaps": 0}));
    assert_eq!(condition(status, "Verified")["observedGeneration"], 2);
    let (result, calls) = reconcile_recording(&api, &ctx, &name).await;
    result.expect("reconcile");
    assert!(calls.is_empty(), "{:?}", lines(&calls));
}
