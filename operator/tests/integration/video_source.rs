//! VideoSource reconciles against the mocked API server, asserting the exact Kubernetes calls, with a real
//! control node behind the operator.

use std::time::Duration;

use kube::runtime::controller::Action;
use livemix_operator::{
    crd::VideoSource,
    reconcile::{self, Error, video_source::FINALIZER},
};
use serde_json::json;

use crate::support::{
    NAMESPACE, VIDEOSOURCES, VOD_URL, applied_status, assert_event, closed_port_url, condition, control::ControlNode,
    event_post, kube_api::MockApi, lines, mark_deleted, object_patch, operator, reconcile_source, settings,
    settle_source, status_patch, unique, video_source,
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
    let status = applied_status(&calls[1], "VideoSource");
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
    assert_event(&calls[0], "Normal", "Deleted", "VideoSource", &name, &[&id.to_string()]);
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
    let secs = |s: f64| Action::requeue(Duration::from_secs_f64(s));
    assert_eq!(delays, [secs(0.5), secs(1.0), secs(2.0), secs(4.0), secs(4.0)]);
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
