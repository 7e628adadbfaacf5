//! Kubernetes mocked, LiveMix real: after the reconcilers ran, the control node holds exactly what the
//! resources say, also across operator restarts (with and without the status written), edits made while the
//! operator was down, edge reports, sources registered by hand and two resources wanting one name.

use std::sync::Arc;

use kube::runtime::{reflector, watcher};
use livemix_operator::{
    Context,
    crd::{Recording, VideoSource, VideoSourceSpec, lifecycle::ADOPT_ANNOTATION},
    reconcile::video_source::FINALIZER,
};
use serde_json::json;

use crate::support::{
    NAMESPACE, VIDEOSOURCES, applied_status, assert_event, condition,
    control::{ControlNode, MANAGEMENT_TOKEN},
    event_post,
    kube_api::MockApi,
    lines, mark_deleted, operator, reconcile_recording, reconcile_source, recording, settings, settle_recording,
    settle_source, status_patch, unique, video_source,
};

/// Reconciles every stored resource once with `ctx`, sources first, as a starting operator does.
async fn reconcile_all(api: &MockApi, ctx: &Arc<Context>, sources: &[&str], recordings: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for name in sources {
        let (result, calls) = reconcile_source(api, ctx, name).await;
        result.unwrap_or_else(|err| panic!("VideoSource {name}: {err}"));
        all.extend(lines(&calls));
    }
    for name in recordings {
        let (result, calls) = reconcile_recording(api, ctx, name).await;
        result.unwrap_or_else(|err| panic!("Recording {name}: {err}"));
        all.extend(lines(&calls));
    }
    all
}

#[tokio::test]
async fn control_matches_the_resources_across_operator_restarts() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (first, _metrics) = operator(client.clone(), settings(&node.management));

    let lobby = unique("lobby");
    let entrance = unique("entrance");
    let entrance_name = unique("studio-b.entrance");
    let mut entrance_vs = video_source(&entrance, false);
    entrance_vs.spec.name = Some(entrance_name.clone());
    let lobby_id = settle_source(&api, &first, &video_source(&lobby, true)).await.source_id().unwrap();
    let entrance_id = settle_source(&api, &first, &entrance_vs).await.source_id().unwrap();
    let (morning, door) = (unique("morning"), unique("door"));
    let morning_id =
        settle_recording(&api, &first, &recording(&morning, &lobby)).await.recording_id().unwrap().to_owned();
    let door_id = settle_recording(&api, &first, &recording(&door, &entrance)).await.recording_id().unwrap().to_owned();

    let check_control = |streaming: (bool, bool), active: (bool, bool)| {
        let (control, lobby, entrance_name, morning_id, door_id) =
            (control.clone(), lobby.clone(), entrance_name.clone(), morning_id.clone(), door_id.clone());
        async move {
            let sources = control.list_sources().await.unwrap();
            let named = |name: &str| sources.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
            let (l, e) = (named(&lobby), named(&entrance_name));
            assert_eq!((l.len(), e.len()), (1, 1), "exactly one source per VideoSource");
            assert_eq!((l[0].id, e[0].id), (lobby_id, entrance_id), "the same sources all along");
            assert_eq!((l[0].streaming, e[0].streaming), streaming);
            for (source, id, active) in [(lobby_id, &morning_id, active.0), (entrance_id, &door_id, active.1)] {
                let recordings = control.source_recordings(source, false).await.unwrap();
                assert_eq!(recordings.len(), 1, "exactly one recording per Recording: {recordings:?}");
                assert_eq!((&recordings[0].id, recordings[0].active), (id, active));
            }
        }
    };
    check_control((true, false), (true, true)).await;

    // Restart with the status in place: nothing to do, no call to Kubernetes.
    let (second, _metrics) = operator(client.clone(), settings(&node.management));
    let calls = reconcile_all(&api, &second, &[&lobby, &entrance], &[&morning, &door]).await;
    assert!(calls.is_empty(), "{calls:?}");
    check_control((true, false), (true, true)).await;

    // Restart after the previous operator registered everything but died before writing any status: adopted.
    for name in [&lobby, &entrance] {
        api.edit::<VideoSource, _>(NAMESPACE, name, |vs| vs.status = None);
    }
    for name in [&morning, &door] {
        api.edit::<Recording, _>(NAMESPACE, name, |rec| rec.status = None);
    }
    let (third, _metrics) = operator(client.clone(), settings(&node.management));
    reconcile_all(&api, &third, &[&lobby, &entrance], &[&morning, &door]).await;
    check_control((true, false), (true, true)).await;
    let vs: VideoSource = api.get(NAMESPACE, &lobby).unwrap();
    assert_eq!(vs.source_id(), Some(lobby_id));
    let rec: Recording = api.get(NAMESPACE, &door).unwrap();
    assert_eq!(rec.recording_id(), Some(door_id.as_str()));

    // Edits while the operator is down, then a fresh operator.
    api.edit::<VideoSource, _>(NAMESPACE, &lobby, |vs| vs.spec.streaming = false);
    api.edit::<VideoSource, _>(NAMESPACE, &entrance, |vs| vs.spec.streaming = true);
    api.edit::<Recording, _>(NAMESPACE, &morning, |rec| rec.spec.stopped = true);
    let (fourth, _metrics) = operator(client.clone(), settings(&node.management));
    reconcile_all(&api, &fourth, &[&lobby, &entrance], &[&morning, &door]).await;
    check_control((false, true), (false, true)).await;

    // An edge reports for the lobby: the status says reachable, by which edge, and when.
    node.edge_report(lobby_id, "edge-lobby-topic").await;
    let (result, calls) = reconcile_source(&api, &fourth, &lobby).await;
    result.unwrap();
    assert_eq!(lines(&calls), [status_patch(VIDEOSOURCES, &lobby)]);
    let status = applied_status(&calls[0], "VideoSource");
    assert_eq!((&status["reachable"], &status["rrTarget"]), (&json!(true), &json!("edge-lobby-topic")));
    assert!(status["lastSeen"].is_string(), "{status}");
    let reachable = condition(status, "Reachable");
    assert_eq!((&reachable["status"], &reachable["reason"]), (&json!("True"), &json!("EdgeReporting")));

    // Everything deleted (deletionPolicy: Retain by default): the sources go, the recordings stay, stopped.
    for name in [&morning, &door] {
        api.edit::<Recording, _>(NAMESPACE, name, |rec| mark_deleted(&mut rec.metadata));
    }
    for name in [&lobby, &entrance] {
        api.edit::<VideoSource, _>(NAMESPACE, name, |vs| mark_deleted(&mut vs.metadata));
    }
    reconcile_all(&api, &fourth, &[&lobby, &entrance], &[&morning, &door]).await;
    for id in [lobby_id, entrance_id] {
        assert!(control.get_source(id).await.unwrap_err().is_not_found());
    }
    for id in [&morning_id, &door_id] {
        let kept = control.get_recording(id).await.expect("the recording is retained");
        assert!(!kept.active && kept.end_ts.is_some(), "{kept:?}");
    }
    assert!(api.get::<VideoSource>(NAMESPACE, &lobby).is_none() && api.get::<Recording>(NAMESPACE, &door).is_none());
    node.stop().await;
}

/// A source registered by hand (no owner) is not taken over by a VideoSource of the same name: a condition says
/// whose it is and how to adopt it; with `livemix.io/adopt: "true"` it is adopted, not duplicated.
#[tokio::test]
async fn a_source_registered_by_hand_is_adopted_only_when_annotated() {
    let node = ControlNode::start().await;
    let control = node.client();
    let name = unique("cam");
    let existing = control
        .create_source(&livemix_operator::control_client::NewSource {
            name: name.clone(),
            segment_len: 4,
            description: Some(String::new()),
            owner: None,
            retention: None,
            edge: None,
            recording: None,
        })
        .await
        .unwrap();
    let (client, api) = MockApi::start();
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let mut vs = video_source(&name, false);
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&vs);

    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.unwrap_err().reason(), "SourceNotOwned");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "SourceNotOwned", "VideoSource", &name, &["livemix.io/adopt", "no owner"]);
    let status = applied_status(&calls[1], "VideoSource");
    assert!(status.get("id").is_none(), "{status}");
    let ready = condition(status, "Ready");
    assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!("SourceNotOwned")));
    assert!(ready["message"].as_str().unwrap().contains("registered by someone else"), "{ready}");
    assert_eq!(control.get_source(existing.id).await.unwrap().description, "", "not touched");

    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| {
        vs.metadata.annotations = Some([(ADOPT_ANNOTATION.to_owned(), "true".to_owned())].into());
    });
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.unwrap();
    assert_eq!(lines(&calls), [event_post(), event_post(), event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Normal", "Adopted", "VideoSource", &name, &[&existing.id.to_string(), ADOPT_ANNOTATION]);
    assert_event(&calls[1], "Warning", "SegmentLengthMismatch", "VideoSource", &name, &["4s", "2s"]);
    assert_event(&calls[2], "Normal", "DescriptionUpdated", "VideoSource", &name, &[]);
    let status = applied_status(&calls[3], "VideoSource");
    assert_eq!(status["id"], existing.id.to_string());
    assert!(condition(status, "Ready")["message"].as_str().unwrap().contains("segment length 4s"), "{status}");
    let sources = control.list_sources().await.unwrap();
    assert_eq!(sources.iter().filter(|s| s.name == name).count(), 1);
    assert_eq!(control.get_source(existing.id).await.unwrap().description, "lobby camera");
}

#[tokio::test]
async fn two_resources_wanting_one_name_never_share_or_delete_each_others_source() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();
    let (plain, _metrics) = operator(client.clone(), settings(&node.management));
    let shared = unique("shared");
    let spec = VideoSourceSpec {
        name: Some(shared.clone()),
        description: String::new(),
        segment_length: 2,
        streaming: false,
        deletion_policy: None,
        retention: None,
        edge: None,
        recording: None,
    };
    let mut first = video_source(&unique("first"), false);
    first.spec = spec.clone();
    let first = settle_source(&api, &plain, &first).await;
    let mut second = video_source(&unique("second"), false);
    second.spec = spec;
    second.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&second);
    let second_name = second.metadata.name.clone().unwrap();

    // The running operator knows both resources from its watch.
    let (store, mut writer) = reflector::store::<VideoSource>();
    writer.apply_watcher_event(&watcher::Event::InitApply(first.clone()));
    writer.apply_watcher_event(&watcher::Event::InitApply(second.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let ctx = Arc::new(Arc::unwrap_or_clone(ctx).with_video_sources(store));

    let (result, calls) = reconcile_source(&api, &ctx, &second_name).await;
    assert_eq!(result.unwrap_err().reason(), "NameConflict");
    assert_eq!(lines(&calls), [event_post(), status_patch(VIDEOSOURCES, &second_name)]);
    let first_name = first.metadata.name.clone().unwrap();
    assert_event(&calls[0], "Warning", "NameConflict", "VideoSource", &second_name, &[&first_name]);

    api.edit::<VideoSource, _>(NAMESPACE, &second_name, |vs| mark_deleted(&mut vs.metadata));
    let (result, calls) = reconcile_source(&api, &ctx, &second_name).await;
    result.unwrap();
    assert_eq!(lines(&calls), [crate::support::object_patch(VIDEOSOURCES, &second_name)], "no Deleted event");
    let source = control.find_source(&shared).await.unwrap().expect("the first resource's source survives");
    assert_eq!(Some(source.id), first.source_id());
}

#[tokio::test]
async fn a_wrong_token_or_an_unconfirmed_edge_is_reported() {
    let node = ControlNode::start().await;
    let control = node.client();
    let (client, api) = MockApi::start();

    let mut wrong = settings(&node.management);
    wrong.management_token = Some(format!("{MANAGEMENT_TOKEN}-wrong"));
    let (ctx, _metrics) = operator(client.clone(), wrong);
    let name = unique("cam");
    let mut vs = video_source(&name, false);
    vs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    api.put(&vs);
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.unwrap_err().reason(), "ControlNodeError");
    let ready = condition(applied_status(&calls[1], "VideoSource"), "Ready");
    assert!(ready["message"].as_str().unwrap().contains("HTTP 401"), "{ready}");
    // The same failure again, with a new request id: the Event repeats, the status stays as it is (a status write
    // would wake the controller at once, bypassing the backoff, in a loop).
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    assert_eq!(result.unwrap_err().reason(), "ControlNodeError");
    assert_eq!(calls.len(), 1, "{:?}", lines(&calls));
    assert!(
        calls[0].line().starts_with("PATCH /apis/events.k8s.io/v1/namespaces/default/events/"),
        "{:?}",
        lines(&calls)
    );

    // With the right token, a reachable edge that never answers: streaming is saved in control and the edge
    // gets it with its next report; the operator says so and carries on.
    let (ctx, _metrics) = operator(client, settings(&node.management));
    let id = settle_source(&api, &ctx, &api.get(NAMESPACE, &name).unwrap()).await.source_id().unwrap();
    node.edge_report(id, &unique("silent-edge")).await;
    api.edit::<VideoSource, _>(NAMESPACE, &name, |vs| vs.spec.streaming = true);
    let (result, calls) = reconcile_source(&api, &ctx, &name).await;
    result.unwrap();
    assert_eq!(lines(&calls), [event_post(), event_post(), status_patch(VIDEOSOURCES, &name)]);
    assert_event(&calls[0], "Warning", "EdgeNotConfirmed", "VideoSource", &name, &["next report"]);
    assert_event(&calls[1], "Normal", "StreamingStarted", "VideoSource", &name, &[]);
    assert_eq!(applied_status(&calls[2], "VideoSource")["streaming"], true);
    assert!(control.get_source(id).await.unwrap().streaming);
}
