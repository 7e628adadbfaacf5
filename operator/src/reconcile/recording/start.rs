//! Finding the control-node recording a Recording started, or starting it once its VideoSource is ready.

use kube::{Api, ResourceExt};
use livemix_common::model::Recording as ControlRecording;
use uuid::Uuid;

use super::{
    super::{Error, Note},
    CLOCK_SKEW,
};
use crate::{
    context::Context,
    control_client::NewRecording,
    crd::{Recording, VideoSource, condition},
};

/// The control-node id of the recorded VideoSource, once that resource is registered and in step.
pub(super) async fn ready_source(rec: &Recording, ctx: &Context) -> Result<Uuid, Error> {
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
pub(super) async fn find_own(
    rec: &Recording,
    source_id: Uuid,
    ctx: &Context,
) -> Result<Option<ControlRecording>, Error> {
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

pub(super) async fn start(
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

/// Whether the recording named by the resource's `status.id` is the resource's own: it carries the alias the
/// resource gives its recordings. `status.id` is user-writable; without this check a Recording could stop, hold
/// or delete another's recording.
pub(super) fn check_own(rec: &Recording, recording: &ControlRecording) -> Result<(), Error> {
    let expected = rec.control_alias();
    if recording.alias.as_deref() == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(Error::RecordingNotOwned { id: recording.id.clone(), alias: recording.alias.clone(), expected })
    }
}
