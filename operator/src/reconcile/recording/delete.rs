//! Deleting a Recording: the recording is always stopped; `Retain` (the default) keeps it in the control node,
//! `Delete` (or the deprecated `purgeOnDelete: true`) deletes it there, unless it is on hold.

use kube::runtime::controller::Action;

use super::{
    super::{Error, Note, publish_all},
    start::{check_own, find_own, ready_source},
};
use crate::{
    context::Context,
    crd::{DeletionPolicy, Recording},
};

pub(super) async fn cleanup(rec: &Recording, ctx: &Context) -> Result<Action, Error> {
    let Some(id) = own_recording_id(rec, ctx).await? else {
        return Ok(Action::await_change());
    };
    let recording = match ctx.control.get_recording(&id).await {
        Ok(recording) => recording,
        Err(err) if err.is_not_found() => return Ok(Action::await_change()),
        Err(err) => return Err(err.into()),
    };
    if let Err(err) = check_own(rec, &recording) {
        let note = Note::warning("RecordingNotOwned", "Delete", format!("left the recording alone: {err}"));
        publish_all(rec, &[note], ctx).await;
        return Ok(Action::await_change());
    }
    let mut notes = Vec::new();
    if recording.active {
        ctx.control.stop_recording(&id).await?;
        notes.push(Note::normal(
            "Stopped",
            "Stop",
            format!("stopped recording {id} because the Recording is being deleted"),
        ));
    }
    let result = match rec.deletion_policy() {
        DeletionPolicy::Retain => {
            notes.push(Note::normal(
                "Retained",
                "Delete",
                format!("kept recording {id} in the control node (deletionPolicy: Retain)"),
            ));
            Ok(())
        }
        DeletionPolicy::Delete => delete(rec, &id, recording.hold, ctx, &mut notes).await,
    };
    publish_all(rec, &notes, ctx).await;
    result.map(|()| Action::await_change())
}

/// `deletionPolicy: Delete`: deletes the recording, after lifting a hold the spec no longer asks for (the spec
/// is the hold's source of truth, as when the resource lives); a hold the spec asks for refuses the delete.
async fn delete(rec: &Recording, id: &str, held: bool, ctx: &Context, notes: &mut Vec<Note>) -> Result<(), Error> {
    if rec.spec.hold {
        return Err(Error::OnHold { id: id.to_owned() });
    }
    if held {
        ctx.control.set_hold(id, false).await?;
        notes.push(Note::normal("HoldLifted", "SetHold", format!("lifted the hold of recording {id} (spec.hold)")));
    }
    let how = if rec.spec.deletion_policy.is_none() {
        "purgeOnDelete, deprecated: use deletionPolicy: Delete"
    } else {
        "deletionPolicy: Delete"
    };
    match ctx.control.delete_recording(id).await {
        Ok(deleted) => {
            notes.push(Note::normal(
                "Deleted",
                "Delete",
                format!(
                    "deleted recording {id} from the control node, {} object(s) queued for deletion from the \
                     object store ({how})",
                    deleted.objects_queued
                ),
            ));
            Ok(())
        }
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The id of the recording this resource started: its `status.id`, else (started but the status never written)
/// the one with its alias, found while its source is there to ask.
async fn own_recording_id(rec: &Recording, ctx: &Context) -> Result<Option<String>, Error> {
    if let Some(id) = rec.recording_id() {
        return Ok(Some(id.to_owned()));
    }
    match ready_source(rec, ctx).await {
        Ok(source_id) => match find_own(rec, source_id, ctx).await {
            Ok(found) => Ok(found.map(|r| r.id)),
            // The alias belongs to a recording this resource never started.
            Err(Error::AliasConflict { .. }) => Ok(None),
            Err(err) => Err(err),
        },
        Err(err @ Error::Kube { .. }) => Err(err),
        // No source, no recording of it to stop.
        Err(_) => Ok(None),
    }
}
