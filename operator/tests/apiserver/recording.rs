//! A Recording's life against the real API server: it waits for its VideoSource (the watch on VideoSources
//! wakes it), starts in the control node, stops on `spec.stopped`, and is stopped (and kept, or deleted with
//! `deletionPolicy: Delete`) when deleted.

use chrono::{DateTime, Utc};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use livemix_operator::{
    crd::{Recording, VideoSource},
    reconcile::recording::FINALIZER,
};
use serde_json::json;

use crate::support::{
    Fixture, RunningOperator, USER, VOD_URL, find, ready, unique, wait_event, wait_gone, wait_recording, wait_source,
};

fn recording(name: &str, spec: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Apply(
        json!({"apiVersion": "livemix.io/v1alpha1", "kind": "Recording", "metadata": {"name": name}, "spec": spec}),
    )
}

fn active(rec: &Recording, want: bool) -> Result<(), String> {
    let status = rec.status.as_ref().unwrap();
    ready(&status.conditions)?;
    if status.active == want { Ok(()) } else { Err(format!("active is not {want}")) }
}

#[tokio::test]
async fn a_recording_waits_for_its_source_starts_stops_and_is_cleaned_up() {
    let Fixture { client, ns, node, settings } = Fixture::new().await;
    let operator = RunningOperator::start(settings).await;
    let control = node.client();
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show) = (unique("cam"), unique("show"));

    // The Recording first: it says what it waits for.
    recordings.patch(&show, &user, &recording(&show, json!({"source": cam, "description": "morning"}))).await.unwrap();
    let rec = wait_recording(&recordings, &show, |rec| {
        let ready = find(&rec.status.as_ref().unwrap().conditions, "Ready").unwrap();
        if (ready.status.as_str(), ready.reason.as_str()) == ("False", "SourceNotFound") {
            Ok(())
        } else {
            Err("not waiting for the source".into())
        }
    })
    .await;
    assert_eq!(rec.finalizers(), [FINALIZER]);
    assert!(rec.recording_id().is_none());
    let warning = wait_event(&client, &ns.name, "Recording", &show, "SourceNotFound").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // The VideoSource appears: the Recording starts without waiting for a retry.
    let source = json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": cam},
                        "spec": {"segmentLength": 2}});
    sources.patch(&cam, &user, &Patch::Apply(source)).await.unwrap();
    let source_id =
        wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await.source_id().unwrap();
    let rec = wait_recording(&recordings, &show, |rec| active(rec, true)).await;
    let status = rec.status.clone().unwrap();
    let id = status.id.clone().expect("recording id");
    assert_eq!(status.playlist_url, Some(format!("{VOD_URL}/v1/vod/recording/{id}/vid.m3u8")));
    assert_eq!(find(&status.conditions, "Ready").unwrap().reason, "Recording");
    assert!(status.start_ts.is_some() && status.end_ts.is_none(), "{status:?}");
    let in_control = control.source_recordings(source_id, false).await.unwrap();
    assert_eq!(in_control.len(), 1, "{in_control:?}");
    assert_eq!((&in_control[0].id, in_control[0].active), (&id, true));
    assert_eq!(in_control[0].alias, Some(rec.control_alias()));
    assert_eq!(status.alias, Some(rec.control_alias()));
    assert_eq!(in_control[0].description.as_deref(), Some("morning"));
    wait_event(&client, &ns.name, "Recording", &show, "Started").await;

    // Stopped by the spec.
    recordings
        .patch(&show, &user, &recording(&show, json!({"source": cam, "description": "morning", "stopped": true})))
        .await
        .unwrap();
    let rec = wait_recording(&recordings, &show, |rec| active(rec, false)).await;
    let status = rec.status.unwrap();
    assert_eq!(find(&status.conditions, "Ready").unwrap().reason, "Stopped");
    let stopped = control.get_recording(&id).await.unwrap();
    assert!(!stopped.active && stopped.end_ts.is_some(), "{stopped:?}");
    assert_eq!(status.end_ts, stopped.end_ts);
    wait_event(&client, &ns.name, "Recording", &show, "Stopped").await;

    // Deleted: the finalizer lets it go; with the default deletionPolicy (Retain) the recording stays in control.
    recordings.delete(&show, &DeleteParams::default()).await.unwrap();
    wait_gone(&recordings, &show).await;
    assert!(!control.get_recording(&id).await.expect("kept in control").active);

    // With a chosen alias, a start time in the past and deletionPolicy: Delete: deleted while active, it is
    // stopped and deleted in control.
    let (clip, alias) = (unique("clip"), unique("alias"));
    let start: DateTime<Utc> = DateTime::from_timestamp(Utc::now().timestamp() - 30, 0).unwrap();
    let spec = json!({"source": cam, "alias": alias, "startTime": start, "deletionPolicy": "Delete"});
    recordings.patch(&clip, &user, &recording(&clip, spec)).await.unwrap();
    let rec = wait_recording(&recordings, &clip, |rec| active(rec, true)).await;
    let clip_id = rec.recording_id().unwrap().to_owned();
    let in_control = control.get_recording(&clip_id).await.unwrap();
    assert_eq!((in_control.alias.as_deref(), in_control.start_ts), (Some(alias.as_str()), start));
    assert_eq!(rec.status.unwrap().start_ts, Some(start));
    recordings.delete(&clip, &DeleteParams::default()).await.unwrap();
    wait_gone(&recordings, &clip).await;
    assert!(control.get_recording(&clip_id).await.unwrap_err().is_not_found(), "deleted from control");
    for reason in ["Started", "Stopped", "Deleted"] {
        wait_event(&client, &ns.name, "Recording", &clip, reason).await;
    }

    sources.delete(&cam, &DeleteParams::default()).await.unwrap();
    wait_gone(&sources, &cam).await;
    assert!(control.get_source(source_id).await.unwrap_err().is_not_found());

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
