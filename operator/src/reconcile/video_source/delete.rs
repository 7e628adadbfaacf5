//! Deleting a VideoSource: its source goes from the control node, its recordings stay (`Retain`, the default)
//! or go with it (`Delete`). A source that is not this resource's is left alone.

use kube::runtime::controller::Action;
use livemix_common::model::Source;

use super::{
    super::{Error, Note, publish_all},
    register::{self, Ownership},
};
use crate::{
    context::Context,
    control_client::{Deletion, RecordingsPolicy},
    crd::{
        DeletionPolicy, VideoSource,
        lifecycle::{ADOPT_ANNOTATION, annotated},
    },
};

pub(super) async fn cleanup(vs: &VideoSource, ctx: &Context) -> Result<Action, Error> {
    let Some(source) = own_source(vs, ctx).await? else {
        return Ok(Action::await_change());
    };
    let (id, name) = (source.id, source.name.clone());
    if register::check_known(vs, &source).is_err() {
        let note = Note::warning(
            "SourceNotOwned",
            "Delete",
            format!(
                "left source {name:?} ({id}) in the control node: it is registered by {:?}, not by this resource",
                source.owner.as_deref().unwrap_or_default()
            ),
        );
        publish_all(vs, &[note], ctx).await;
        return Ok(Action::await_change());
    }
    let policy = vs.deletion_policy();
    let recordings = match policy {
        DeletionPolicy::Retain => RecordingsPolicy::Retain,
        DeletionPolicy::Delete => RecordingsPolicy::Delete,
    };
    match ctx.control.delete_source(id, recordings).await {
        Ok(deleted) => {
            let message =
                format!("deleted source {name:?} ({id}) from the control node; {}", what_happened(policy, &deleted));
            publish_all(vs, &[Note::normal("Deleted", "Delete", message)], ctx).await;
        }
        Err(err) if err.is_not_found() => tracing::info!(%id, "source already gone from the control node"),
        Err(err) => return Err(err.into()),
    }
    Ok(Action::await_change())
}

/// The source this resource registered, if it still exists: by `status.id`, else (registered but the status
/// never written) by name, when the source carries this resource's owner (or it is to be adopted) and no other
/// resource claims it.
async fn own_source(vs: &VideoSource, ctx: &Context) -> Result<Option<Source>, Error> {
    if let Some(id) = vs.source_id() {
        return match ctx.control.get_source(id).await {
            Ok(source) => Ok(Some(source)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err.into()),
        };
    }
    let Some(found) = ctx.control.find_source(&vs.control_name()).await? else {
        return Ok(None);
    };
    let adoptable = register::ownership(vs, &found) == Ownership::Own || annotated(vs, ADOPT_ANNOTATION);
    if adoptable && register::ensure_unclaimed(vs, &found, ctx).await.is_ok() { Ok(Some(found)) } else { Ok(None) }
}

fn what_happened(policy: DeletionPolicy, deleted: &Deletion) -> String {
    match policy {
        DeletionPolicy::Retain => {
            format!("kept its {} recording(s) there (deletionPolicy: Retain)", deleted.recordings_retained)
        }
        DeletionPolicy::Delete => format!(
            "deleted its {} recording(s), {} object(s) queued for deletion from the object store (deletionPolicy: \
             Delete)",
            deleted.recordings_deleted, deleted.objects_queued
        ),
    }
}
