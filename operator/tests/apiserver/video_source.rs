//! A VideoSource's life against the real API server: registered in the control node, its streaming state and
//! name followed, status written with server-side apply by the operator's field manager, finalizer and Events,
//! and the source deleted from the control node when the resource goes.

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use livemix_operator::{crd::VideoSource, reconcile::video_source::FINALIZER};
use serde_json::json;

use crate::support::{
    RunningOperator, TestNamespace, USER, VOD_URL, client, control_and_settings, find, install_crds, ready, unique,
    wait_event, wait_gone, wait_source,
};

fn apply(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": name}, "spec": spec})
}

fn assert_reported(event: &Event, type_: &str, instance: &str) {
    assert_eq!(event.type_.as_deref(), Some(type_), "{event:?}");
    assert_eq!(event.reporting_controller.as_deref(), Some("livemix-operator"), "{event:?}");
    assert_eq!(event.reporting_instance.as_deref(), Some(instance), "{event:?}");
    let regarding = event.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.api_version.as_deref(), Some("livemix.io/v1alpha1"), "{event:?}");
    assert!(regarding.uid.is_some(), "{event:?}");
}

#[tokio::test]
async fn a_video_source_is_registered_followed_and_deleted_in_control() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client).await;
    let (node, settings) = control_and_settings(&ns.name).await;
    let instance = settings.instance.clone().unwrap();
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let user = PatchParams::apply(USER);

    let name = unique("cam");
    sources
        .patch(&name, &user, &Patch::Apply(apply(&name, json!({"segmentLength": 2, "description": "lobby"}))))
        .await
        .expect("apply the VideoSource");
    let vs = wait_source(&sources, &name, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await;
    let status = vs.status.clone().unwrap();
    let id = status.id.expect("the status names the control-node source");
    assert_eq!(vs.finalizers(), [FINALIZER]);
    assert_eq!(status.live_url, Some(format!("{VOD_URL}/v1/vod/live/{id}/vid.m3u8")));
    assert!(!status.streaming && !status.reachable, "{status:?}");
    assert_eq!(find(&status.conditions, "Ready").unwrap().reason, "Synced");
    let reachable = find(&status.conditions, "Reachable").expect("Reachable condition");
    assert_eq!((reachable.status.as_str(), reachable.reason.as_str()), ("False", "NoEdgeReport"));

    let source = control.get_source(id).await.expect("registered in control");
    assert_eq!((source.name.as_str(), source.segment_length), (name.as_str(), 2));
    assert_eq!((source.description.as_str(), source.streaming), ("lobby", false));
    let created = wait_event(&client, &ns.name, "VideoSource", &name, "Created").await;
    assert_reported(&created, "Normal", &instance);
    assert_eq!(created.action.as_deref(), Some("Create"));
    assert!(created.note.as_deref().unwrap_or_default().contains(&id.to_string()), "{created:?}");

    // The status is the operator's, written with server-side apply on the status subresource; the spec is the
    // user's.
    let managed = vs.metadata.managed_fields.clone().unwrap_or_default();
    let status_entry = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some("livemix-operator") && m.subresource.as_deref() == Some("status"))
        .unwrap_or_else(|| panic!("no status entry of livemix-operator in {managed:#?}"));
    assert_eq!(status_entry.operation.as_deref(), Some("Apply"), "{status_entry:?}");
    let owned = serde_json::to_string(&status_entry.fields_v1).unwrap();
    for field in ["f:status", "f:id", "f:conditions", "k:{\\\"type\\\":\\\"Ready\\\"}", "f:liveUrl"] {
        assert!(owned.contains(field), "the operator's status entry lacks {field}: {owned}");
    }
    let user_entry = managed.iter().find(|m| m.manager.as_deref() == Some(USER)).expect("the user's entry");
    assert_eq!((user_entry.operation.as_deref(), user_entry.subresource.as_deref()), (Some("Apply"), None));
    assert!(
        !managed.iter().any(|m| m.manager.as_deref() == Some("livemix-operator")
            && m.subresource.as_deref() == Some("status")
            && m.operation.as_deref() != Some("Apply")),
        "the status is only ever applied: {managed:#?}"
    );

    // Streaming on, by re-applying the whole spec as `kubectl apply` would: the status survives it.
    sources
        .patch(
            &name,
            &user,
            &Patch::Apply(apply(&name, json!({"segmentLength": 2, "description": "lobby", "streaming": true}))),
        )
        .await
        .expect("apply");
    let vs = wait_source(&sources, &name, |vs| {
        if vs.status.as_ref().unwrap().streaming { Ok(()) } else { Err("not streaming".into()) }
    })
    .await;
    assert_eq!(vs.metadata.generation, Some(2));
    assert_eq!(vs.source_id(), Some(id));
    assert!(control.get_source(id).await.unwrap().streaming);
    assert_reported(&wait_event(&client, &ns.name, "VideoSource", &name, "StreamingStarted").await, "Normal", &instance);

    // A new control-node name, a new description and streaming off: the same source follows.
    let renamed = unique("renamed");
    let spec = json!({"segmentLength": 2, "name": renamed, "description": "entrance", "streaming": false});
    sources.patch(&name, &user, &Patch::Apply(apply(&name, spec))).await.expect("apply");
    wait_source(&sources, &name, |vs| {
        if vs.status.as_ref().unwrap().streaming { Err("still streaming".into()) } else { Ok(()) }
    })
    .await;
    let source = control.get_source(id).await.unwrap();
    assert_eq!((source.name.as_str(), source.description.as_str(), source.streaming), (renamed.as_str(), "entrance", false));
    assert!(control.find_source(&name).await.unwrap().is_none(), "no second source under the old name");
    for reason in ["Renamed", "DescriptionUpdated", "StreamingStopped"] {
        wait_event(&client, &ns.name, "VideoSource", &name, reason).await;
    }

    // Deleted: the finalizer deletes the source in control, then the object goes.
    sources.delete(&name, &DeleteParams::default()).await.expect("delete");
    wait_gone(&sources, &name).await;
    assert!(control.get_source(id).await.unwrap_err().is_not_found(), "the source is deleted from control");
    assert_reported(&wait_event(&client, &ns.name, "VideoSource", &name, "Deleted").await, "Normal", &instance);

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
