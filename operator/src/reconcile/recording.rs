//! Recording: start the recording in the control node once its VideoSource is ready, stop it when `spec.stopped`
//! is set or the resource is deleted (and delete it there too with `purgeOnDelete`), report its progress.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, ResourceExt, runtime::controller::Action};
use livemix_common::model::Recording as ControlRecording;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use super::{Error, Note, Reconciled, publish_all, reported, with_finalizer, write_status};
use crate::{
    context::Context,
    control_client::NewRecording,
    crd::{Recording, RecordingStatus, VideoSource, condition},
};

/// Kept on every Recording until its control-node recording is stopped.
pub const FINALIZER: &str = "recordings.livemix.io/cleanup";

/// A recording with a user-chosen alias created this long before its resource is still taken as the resource's
/// own (clocks of the control node and the API server differ).
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Finished recordings change rarely (late segment uploads); re-read them this many resyncs apart.
const FINISHED_RESYNC_FACTOR: u32 = 10;

impl Reconciled for Recording {
    type Status = RecordingStatus;
    const KIND: &'static str = "Recording";

    fn current_status(&self) -> Option<&RecordingStatus> {
        self.status.as_ref()
    }

    fn conditions(status: &mut RecordingStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
}

/// The controller's reconcile function.
pub async fn reconcile(rec: Arc<Recording>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(Recording::KIND);
    let span = info_span!(
        "reconcile",
        kind = Recording::KIND,
        namespace = rec.namespace().unwrap_or_default(),
        name = %rec.name_any(),
    );
    let ctx = ctx.as_ref();
    with_finalizer(
        rec,
        ctx,
        FINALIZER,
        |rec| async move { reported(rec.as_ref(), ctx, apply(&rec, ctx)).await },
        |rec| async move { reported(rec.as_ref(), ctx, cleanup(&rec, ctx)).await },
    )
    .instrument(span)
    .await
}

async fn apply(rec: &Recording, ctx: &Context) -> Result<Action, Error> {
    let mut notes = Vec::new();
    let status = sync(rec, ctx, &mut notes).await?;
    let resync = if status.active { ctx.settings.resync() } else { ctx.settings.resync() * FINISHED_RESYNC_FACTOR };
    publish_all(rec, &notes, ctx).await;
    write_status(rec, status, ctx).await?;
    Ok(Action::requeue(resync))
}

async fn sync(rec: &Recording, ctx: &Context, notes: &mut Vec<Note>) -> Result<RecordingStatus, Error> {
    let recording = match rec.recording_id() {
        Some(id) => match ctx.control.get_recording(id).await {
            Ok(recording) => recording,
            Err(err) if err.is_not_found() => return Ok(gone(rec, id, notes)),
            Err(err) => return Err(err.into()),
        },
        None => {
            let source_id = ready_source(rec, ctx).await?;
            match find_own(rec, source_id, ctx).await? {
                Some(found) => {
                    notes.push(Note::normal(
                        "Adopted",
                        "Start",
                        format!(
                            "adopted recording {} (alias {:?}) that already existed in the control node",
                            found.id,
                            rec.control_alias()
                        ),
                    ));
                    found
                }
                None if rec.spec.stopped => return Ok(not_started(rec)),
                None => start(rec, source_id, ctx, notes).await?,
            }
        }
    };

    let recording = if rec.spec.stopped && recording.active {
        let stopped = ctx.control.stop_recording(&recording.id).await?;
        notes.push(Note::normal("Stopped", "Stop", format!("stopped recording {}", stopped.id)));
        stopped
    } else {
        recording
    };

    let segments = ctx.control.recording_segments(&recording.id).await?.len();
    Ok(status_of(rec, &recording, segments, ctx))
}

/// The control-node id of the recorded VideoSource, once that resource is registered and in step.
async fn ready_source(rec: &Recording, ctx: &Context) -> Result<Uuid, Error> {
    let namespace = rec.namespace().unwrap_or_default();
    let name = &rec.spec.source;
    let api: Api<VideoSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let vs = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading VideoSource {name}")))?
        .ok_or_else(|| Error::SourceNotFound { namespace: namespace.clone(), name: name.clone() })?;
    if vs.metadata.deletion_timestamp.is_some() {
        return Err(Error::SourceNotReady { name: name.clone(), why: "it is being deleted".into() });
    }
    vs.ready_source_id().ok_or_else(|| {
        let why = vs
            .status
            .as_ref()
            .and_then(|s| condition::find(&s.conditions, condition::READY))
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "it is not registered in the control node yet".into());
        Error::SourceNotReady { name: name.clone(), why }
    })
}

/// The control-node recording this resource started earlier, found by its alias (after an operator restart
/// lost the id, or a start whose reply was lost).
async fn find_own(rec: &Recording, source_id: Uuid, ctx: &Context) -> Result<Option<ControlRecording>, Error> {
    let alias = rec.control_alias();
    let found = ctx
        .control
        .source_recordings(source_id, false)
        .await?
        .into_iter()
        .find(|r| r.alias.as_deref() == Some(alias.as_str()));
    let Some(found) = found else {
        return Ok(None);
    };
    // A derived alias carries the resource's uid, so it is ours; a chosen one is ours only if it was created
    // after this resource.
    let created = rec.creation_timestamp().and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0));
    let ours = rec.spec.alias.is_none() || created.is_none_or(|created| found.created_at + CLOCK_SKEW >= created);
    if ours { Ok(Some(found)) } else { Err(Error::AliasConflict { alias, id: Some(found.id) }) }
}

async fn start(
    rec: &Recording,
    source_id: Uuid,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> Result<ControlRecording, Error> {
    let alias = rec.control_alias();
    let new =
        NewRecording { alias: Some(alias.clone()), description: rec.spec.description.clone(), start_time_epoch: None }
            .starting_at(rec.spec.start_time);
    match ctx.control.start_recording(source_id, &new).await {
        Ok(recording) => {
            notes.push(Note::normal(
                "Started",
                "Start",
                format!("started recording {} of VideoSource {:?} (alias {alias:?})", recording.id, rec.spec.source),
            ));
            Ok(recording)
        }
        Err(err) if err.is_conflict() => {
            match find_own(rec, source_id, ctx).await? {
                Some(found) => {
                    notes.push(Note::normal(
                        "Adopted",
                        "Start",
                        format!("adopted recording {} (alias {alias:?})", found.id),
                    ));
                    Ok(found)
                }
                // Taken by a recording of another source.
                None => Err(Error::AliasConflict { alias, id: None }),
            }
        }
        Err(err) => Err(err.into()),
    }
}

fn status_of(rec: &Recording, recording: &ControlRecording, segments: usize, ctx: &Context) -> RecordingStatus {
    let mut status = rec.status.clone().unwrap_or_default();
    status.id = Some(recording.id.clone());
    status.alias.clone_from(&recording.alias);
    status.active = recording.active;
    status.start_ts = Some(recording.start_ts);
    status.end_ts = recording.end_ts;
    status.segments = i64::try_from(segments).unwrap_or(i64::MAX);
    status.playlist_url = ctx.playlist_url(&recording.id);
    let (reason, message) = if recording.active {
        ("Recording", format!("recording {} is active", recording.id))
    } else {
        ("Stopped", format!("recording {} is finished", recording.id))
    };
    condition::set(&mut status.conditions, condition::READY, true, reason, &message, rec.metadata.generation);
    status
}

/// A stopped Recording that never started: nothing to do in the control node.
fn not_started(rec: &Recording) -> RecordingStatus {
    let mut status = rec.status.clone().unwrap_or_default();
    status.active = false;
    condition::set(
        &mut status.conditions,
        condition::READY,
        true,
        "NotStarted",
        "spec.stopped was set before the recording started",
        rec.metadata.generation,
    );
    status
}

/// The recording vanished from the control node (deleted there, or with its source). Final: never re-created,
/// since a new recording would silently start at another time.
fn gone(rec: &Recording, id: &str, notes: &mut Vec<Note>) -> RecordingStatus {
    const REASON: &str = "RecordingGone";
    let mut status = rec.status.clone().unwrap_or_default();
    let already = status.conditions.iter().any(|c| c.type_ == condition::READY && c.reason == REASON);
    let message =
        format!("recording {id} no longer exists in the control node (deleted there, or together with its source)");
    if !already {
        notes.push(Note::warning(REASON, "Reconcile", message.clone()));
    }
    status.active = false;
    condition::set(&mut status.conditions, condition::READY, false, REASON, &message, rec.metadata.generation);
    status
}

async fn cleanup(rec: &Recording, ctx: &Context) -> Result<Action, Error> {
    let id = match rec.recording_id() {
        Some(id) => Some(id.to_owned()),
        // Started but the status never written: find it by alias while its source is there to ask.
        None => match ready_source(rec, ctx).await {
            Ok(source_id) => match find_own(rec, source_id, ctx).await {
                Ok(found) => found.map(|r| r.id),
                // The alias belongs to a recording this resource never started.
                Err(Error::AliasConflict { .. }) => None,
                Err(err) => return Err(err),
            },
            Err(err @ Error::Kube { .. }) => return Err(err),
            // No source, no recording of it to stop.
            Err(_) => None,
        },
    };
    let Some(id) = id else {
        return Ok(Action::await_change());
    };
    let recording = match ctx.control.get_recording(&id).await {
        Ok(recording) => recording,
        Err(err) if err.is_not_found() => return Ok(Action::await_change()),
        Err(err) => return Err(err.into()),
    };
    let mut notes = Vec::new();
    if recording.active {
        ctx.control.stop_recording(&id).await?;
        notes.push(Note::normal(
            "Stopped",
            "Stop",
            format!("stopped recording {id} because the Recording is being deleted"),
        ));
    }
    let purged = if rec.spec.purge_on_delete {
        match ctx.control.delete_recording(&id).await {
            Ok(()) => {
                notes.push(Note::normal(
                    "Purged",
                    "Delete",
                    format!("deleted recording {id} from the control node (purgeOnDelete)"),
                ));
                Ok(())
            }
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err.into()),
        }
    } else {
        Ok(())
    };
    publish_all(rec, &notes, ctx).await;
    purged.map(|()| Action::await_change())
}
