//! Operator restarts against the real API server: a new operator takes over what the old one registered, applies
//! what changed while none ran, re-finds what it lost from the status, and never duplicates anything in the
//! control node.

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use livemix_operator::crd::{Recording, VideoSource};
use serde_json::json;

use crate::support::{
    Fixture, RunningOperator, USER, events_about, ready, unique, wait_event, wait_gone, wait_recording, wait_source,
};

fn source(name: &str, streaming: bool) -> Patch<serde_json::Value> {
    Patch::Apply(json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": name},
                        "spec": {"segmentLength": 2, "streaming": streaming}}))
}

fn recording(name: &str, source: &str, stopped: bool) -> Patch<serde_json::Value> {
    Patch::Apply(json!({"apiVersion": "livemix.io/v1alpha1", "kind": "Recording", "metadata": {"name": name},
                        "spec": {"source": source, "stopped": stopped}}))
}

fn streaming(want: bool) -> impl Fn(&VideoSource) -> Result<(), String> {
    move |vs| {
        let status = vs.status.as_ref().unwrap();
        ready(&status.conditions)?;
        if status.streaming == want { Ok(()) } else { Err(format!("streaming is not {want}")) }
    }
}

fn active(want: bool) -> impl Fn(&Recording) -> Result<(), String> {
    move |rec| {
        let status = rec.status.as_ref().unwrap();
        ready(&status.conditions)?;
        if status.active == want { Ok(()) } else { Err(format!("active is not {want}")) }
    }
}

async fn resource_versions(sources: &Api<VideoSource>, recordings: &Api<Recording>) -> Vec<String> {
    let mut versions: Vec<String> = sources
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.resource_version().unwrap())
        .collect();
    versions.extend(
        recordings.list(&ListParams::default()).await.unwrap().items.iter().map(|o| o.resource_version().unwrap()),
    );
    versions
}

/// Names of the Events of the namespace.
async fn all_events(client: &kube::Client, namespace: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut names: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.iter().map(|e| e.name_any()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_operator_restart_duplicates_nothing_in_control() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (lobby, door, morning, evening) = (unique("lobby"), unique("door"), unique("morning"), unique("evening"));

    let first = RunningOperator::start(settings.clone()).await;
    sources.patch(&lobby, &user, &source(&lobby, true)).await.unwrap();
    sources.patch(&door, &user, &source(&door, false)).await.unwrap();
    recordings.patch(&morning, &user, &recording(&morning, &lobby, false)).await.unwrap();
    recordings.patch(&evening, &user, &recording(&evening, &door, false)).await.unwrap();
    let lobby_id = wait_source(&sources, &lobby, streaming(true)).await.source_id().unwrap();
    let door_id = wait_source(&sources, &door, streaming(false)).await.source_id().unwrap();
    let morning_id = wait_recording(&recordings, &morning, active(true)).await.recording_id().unwrap().to_owned();
    let evening_id = wait_recording(&recordings, &evening, active(true)).await.recording_id().unwrap().to_owned();
    first.stop().await;

    // While no operator runs: the spec changes, and the status of one of each kind is lost (as when an operator
    // died between registering and writing the status).
    sources.patch(&lobby, &user, &source(&lobby, false)).await.unwrap();
    sources.patch(&door, &user, &source(&door, true)).await.unwrap();
    recordings.patch(&morning, &user, &recording(&morning, &lobby, true)).await.unwrap();
    let wipe = PatchParams::default();
    sources.patch_status(&door, &wipe, &Patch::Merge(json!({"status": null}))).await.unwrap();
    recordings.patch_status(&evening, &wipe, &Patch::Merge(json!({"status": null}))).await.unwrap();
    assert!(sources.get(&door).await.unwrap().status.is_none());

    let second = RunningOperator::start(settings.clone()).await;
    let vs = wait_source(&sources, &lobby, streaming(false)).await;
    assert_eq!(vs.source_id(), Some(lobby_id));
    let vs = wait_source(&sources, &door, streaming(true)).await;
    assert_eq!(vs.source_id(), Some(door_id), "the same source, found again by name");
    let rec = wait_recording(&recordings, &morning, active(false)).await;
    assert_eq!(rec.recording_id(), Some(morning_id.as_str()));
    let rec = wait_recording(&recordings, &evening, active(true)).await;
    assert_eq!(rec.recording_id(), Some(evening_id.as_str()), "the same recording, found again by alias");
    wait_event(&client, &ns.name, "VideoSource", &door, "Adopted").await;
    wait_event(&client, &ns.name, "Recording", &evening, "Adopted").await;
    second.stop().await;

    // A third operator with everything in step: it reconciles each resource and changes nothing.
    let events_before = all_events(&client, &ns.name).await;
    let before = resource_versions(&sources, &recordings).await;
    let third = RunningOperator::start(settings).await;
    third.wait_reconciled("VideoSource", 2).await;
    third.wait_reconciled("Recording", 2).await;
    assert_eq!(resource_versions(&sources, &recordings).await, before, "nothing written when in step");
    assert_eq!(all_events(&client, &ns.name).await, events_before, "no Event when in step");

    let all = control.list_sources().await.unwrap();
    for (name, id, streaming) in [(&lobby, lobby_id, false), (&door, door_id, true)] {
        let named: Vec<_> = all.iter().filter(|s| &s.name == name).collect();
        assert_eq!(named.len(), 1, "exactly one control-node source for {name}: {named:?}");
        assert_eq!((named[0].id, named[0].streaming), (id, streaming));
        let created = events_about(&client, &ns.name, "VideoSource", name)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Created"))
            .count();
        assert_eq!(created, 1, "{name} was registered once");
    }
    for (source_id, id, active) in [(lobby_id, &morning_id, false), (door_id, &evening_id, true)] {
        let in_control = control.source_recordings(source_id, false).await.unwrap();
        assert_eq!(in_control.len(), 1, "exactly one recording: {in_control:?}");
        assert_eq!((&in_control[0].id, in_control[0].active), (id, active));
    }

    for name in [&morning, &evening] {
        recordings.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in [&lobby, &door] {
        sources.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in [&morning, &evening] {
        wait_gone(&recordings, name).await;
    }
    for name in [&lobby, &door] {
        wait_gone(&sources, name).await;
    }
    for id in [lobby_id, door_id] {
        assert!(control.get_source(id).await.unwrap_err().is_not_found());
    }

    third.stop().await;
    ns.delete().await;
    node.stop().await;
}
