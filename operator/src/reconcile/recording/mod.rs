//! Recording: start the recording in the control node once its VideoSource is ready, stop it when `spec.stopped`
//! is set, keep its legal hold in step with `spec.hold`, report its progress and storage, and when the resource
//! is deleted stop it and keep or delete it as `deletionPolicy` says.

mod delete;
mod start;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{ResourceExt, runtime::controller::Action};
use livemix_common::model::Recording as ControlRecording;
use tracing::{Instrument, info_span};

use self::start::{check_own, find_own, ready_source, start};
use super::{Error, Note, Reconciled, publish_all, with_finalizer, write_status};
use crate::{
    context::Context,
    control_client::Usage,
    crd::{Recording, RecordingStatus, condition},
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

    fn control_object(&self) -> Option<String> {
        self.recording_id().map(|id| format!("recording {id}"))
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
        |rec| async move { apply(&rec, ctx).await },
        |rec| async move { delete::cleanup(&rec, ctx).await },
    )
    .instrument(span)
    .await
}

async fn apply(rec: &Recording, ctx: &Context) -> Result<Action, Error> {
    let mut notes = Vec::new();
    let mut status = sync(rec, ctx, &mut notes).await?;
    deprecations(rec, &mut status, &mut notes);
    let resync = if status.active { ctx.settings.resync() } else { ctx.settings.resync() * FINISHED_RESYNC_FACTOR };
    publish_all(rec, &notes, ctx).await;
    write_status(rec, status, ctx).await?;
    Ok(Action::requeue(resync))
}

async fn sync(rec: &Recording, ctx: &Context, notes: &mut Vec<Note>) -> Result<RecordingStatus, Error> {
    let recording = match rec.recording_id() {
        Some(id) => match ctx.control.get_recording(id).await {
            Ok(recording) => {
                check_own(rec, &recording)?;
                recording
            }
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

    let recording = if rec.spec.hold != recording.hold {
        let updated = ctx.control.set_hold(&recording.id, rec.spec.hold).await?;
        notes.push(if rec.spec.hold {
            Note::normal("HoldSet", "SetHold", format!("put recording {} on hold", updated.id))
        } else {
            Note::normal("HoldLifted", "SetHold", format!("lifted the hold of recording {}", updated.id))
        });
        updated
    } else {
        recording
    };

    let segments = ctx.control.recording_segments(&recording.id).await?.len();
    let usage = ctx.control.recording_storage(&recording.id).await?;
    Ok(status_of(rec, &recording, segments, &usage, ctx))
}

/// Says once, in a Warning Event, that the spec uses a deprecated field, and keeps saying it in a `Deprecated`
/// condition until the field is gone (the condition is also how "once" survives operator restarts).
fn deprecations(rec: &Recording, status: &mut RecordingStatus, notes: &mut Vec<Note>) {
    const REASON: &str = "PurgeOnDeleteDeprecated";
    if !rec.spec.purge_on_delete {
        condition::remove(&mut status.conditions, condition::DEPRECATED);
        return;
    }
    let message = "spec.purgeOnDelete is deprecated and acts as deletionPolicy: Delete; set deletionPolicy: Delete \
                   and remove purgeOnDelete";
    if condition::find(&status.conditions, condition::DEPRECATED).is_none_or(|c| c.reason != REASON) {
        notes.push(Note::warning(REASON, "Reconcile", message));
    }
    condition::set(&mut status.conditions, condition::DEPRECATED, true, REASON, message, rec.metadata.generation);
}

fn status_of(
    rec: &Recording,
    recording: &ControlRecording,
    segments: usize,
    usage: &Usage,
    ctx: &Context,
) -> RecordingStatus {
    let mut status = rec.status.clone().unwrap_or_default();
    status.id = Some(recording.id.clone());
    status.alias.clone_from(&recording.alias);
    status.active = recording.active;
    status.start_ts = Some(recording.start_ts);
    status.end_ts = recording.end_ts;
    status.segments = i64::try_from(segments).unwrap_or(i64::MAX);
    status.playlist_url = ctx.playlist_url(&recording.id);
    status.hold = recording.hold;
    status.stored_bytes = Some(usage.bytes);
    status.expires_at = usage.expires_at;
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
    status.stored_bytes = None;
    status.expires_at = None;
    condition::set(&mut status.conditions, condition::READY, false, REASON, &message, rec.metadata.generation);
    status
}
