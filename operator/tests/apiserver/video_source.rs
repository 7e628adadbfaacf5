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
    Fixture, RunningOperator, USER, VOD_URL, find, ready, unique, wait_event, wait_gone, wait_source,
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
    let Fixture { client, ns, node, settings } = Fixture::new().await;
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
    assert_reported(
        &wait_event(&client, &ns.name, "VideoSource", &name, "StreamingStarted").await,
        "Normal",
        &instance,
    );

    // A new control-node name, a new description and streaming off: the same source follows.
    let renamed = unique("renamed");
    let spec = json!({"segmentLength": 2, "name": renamed, "description": "entrance", "streaming": false});
    sources.patch(&name, &user, &Patch::Apply(apply(&name, spec))).await.expect("apply");
    wait_source(&sources, &name, |vs| {
        if vs.status.as_ref().unwrap().streaming { Err("still streaming".into()) } else { Ok(()) }
    })
    .await;
    let source = control.get_source(id).await.unwrap();
    assert_eq!(
        (source.name.as_str(), source.description.as_str(), source.streaming),
        (renamed.as_str(), "entrance", false)
    );
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

/// A failing reconcile writes `Ready=False` once and then waits for its backoff: its own status write (a watch
/// event for the real API server) must not start the next attempt at once, again and again.
#[tokio::test]
async fn a_failing_reconcile_backs_off_instead_of_looping() {
    let Fixture { client, ns, node, mut settings } = Fixture::new().await;
    settings.management_token = Some("not-the-management-token".into());
    settings.backoff_base_ms = 5_000;
    settings.backoff_max_secs = 5;
    let operator = RunningOperator::start(settings).await;
    let sources: Api<VideoSource> = ns.api();

    let name = unique("cam");
    sources
        .patch(&name, &PatchParams::apply(USER), &Patch::Apply(apply(&name, json!({"segmentLength": 2}))))
        .await
        .unwrap();
    let vs = wait_source(&sources, &name, |vs| {
        let ready = find(&vs.status.as_ref().unwrap().conditions, "Ready").unwrap();
        if (ready.status.as_str(), ready.reason.as_str()) == ("False", "ControlNodeError") {
            Ok(())
        } else {
            Err("no failure reported yet".into())
        }
    })
    .await;
    let message = find(&vs.status.unwrap().conditions, "Ready").unwrap().message.clone();
    assert!(message.contains("HTTP 401"), "{message}");
    let warning = wait_event(&client, &ns.name, "VideoSource", &name, "ControlNodeError").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // Attempts come at most every 5 s from now on: in 3 s, at most the one already under way and one more.
    let before = operator.reconciles("VideoSource");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let attempts = operator.reconciles("VideoSource") - before;
    assert!(attempts <= 2, "{attempts} reconciles in 3 s despite a 5 s backoff");

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}

/// Control-node names are global: a second VideoSource wanting a name another one manages is refused (the
/// operator's watch knows the first), and deleting it leaves the first one's source alone.
#[tokio::test]
async fn two_resources_wanting_one_name_never_share_a_source() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let user = PatchParams::apply(USER);
    let (first, second, shared) = (unique("first"), unique("second"), unique("shared"));

    let spec = json!({"segmentLength": 2, "name": shared});
    sources.patch(&first, &user, &Patch::Apply(apply(&first, spec.clone()))).await.unwrap();
    let id = wait_source(&sources, &first, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await.source_id();
    sources.patch(&second, &user, &Patch::Apply(apply(&second, spec))).await.unwrap();
    let vs = wait_source(&sources, &second, |vs| {
        let ready = find(&vs.status.as_ref().unwrap().conditions, "Ready").unwrap();
        if (ready.status.as_str(), ready.reason.as_str()) == ("False", "NameConflict") {
            Ok(())
        } else {
            Err("no conflict reported".into())
        }
    })
    .await;
    let message = find(&vs.status.as_ref().unwrap().conditions, "Ready").unwrap().message.clone();
    assert!(message.contains(&format!("{}/{first}", ns.name)), "{message}");
    assert!(vs.source_id().is_none(), "{:?}", vs.status);
    wait_event(&client, &ns.name, "VideoSource", &second, "NameConflict").await;

    sources.delete(&second, &DeleteParams::default()).await.unwrap();
    wait_gone(&sources, &second).await;
    let source = control.find_source(&shared).await.unwrap().expect("the first resource's source is still there");
    assert_eq!(Some(source.id), id);
    assert_eq!(wait_source(&sources, &first, |_| Ok(())).await.source_id(), id);

    sources.delete(&first, &DeleteParams::default()).await.unwrap();
    wait_gone(&sources, &first).await;
    assert!(control.find_source(&shared).await.unwrap().is_none());
    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}

/// `kubectl delete namespace` with the operator running: the namespace controller deletes the resources, their
/// finalizers clean up the control node, and the namespace can go; no recording is lost (`deletionPolicy`
/// defaults to `Retain`).
#[tokio::test]
async fn deleting_the_namespace_cleans_up_control() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<livemix_operator::crd::Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show) = (unique("cam"), unique("show"));

    sources.patch(&cam, &user, &Patch::Apply(apply(&cam, json!({"segmentLength": 2})))).await.unwrap();
    let rec = json!({"apiVersion": "livemix.io/v1alpha1", "kind": "Recording", "metadata": {"name": show},
                     "spec": {"source": cam}});
    recordings.patch(&show, &user, &Patch::Apply(rec)).await.unwrap();
    let id =
        wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await.source_id().unwrap();
    let rec = crate::support::wait_recording(&recordings, &show, |rec| {
        if rec.status.as_ref().unwrap().active { Ok(()) } else { Err("not active".into()) }
    })
    .await;
    let recording_id = rec.recording_id().unwrap().to_owned();

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&ns.name, &DeleteParams::background()).await.expect("delete the namespace");
    wait_gone(&recordings, &show).await;
    wait_gone(&sources, &cam).await;
    assert!(control.get_source(id).await.unwrap_err().is_not_found(), "the source is deleted from control");
    // The recording is stopped and kept, and still says whose it was.
    let kept = control.get_recording(&recording_id).await.expect("the recording is retained");
    assert!(!kept.active && kept.end_ts.is_some(), "{kept:?}");
    assert_eq!(kept.source_name.as_deref(), Some(cam.as_str()));

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
