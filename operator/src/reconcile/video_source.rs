//! VideoSource: register (or adopt) the source in the control node, keep its name, description and streaming
//! state in step with the spec, report what the control node knows, and delete it when the resource goes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{ResourceExt, runtime::controller::Action};
use livemix_common::model::Source;
use tracing::{Instrument, info_span};

use super::{Error, Note, Reconciled, publish_all, reported, with_finalizer, write_status};
use crate::{
    context::Context,
    control_client::NewSource,
    crd::{VideoSource, VideoSourceStatus, condition},
};

/// Kept on every VideoSource until its control-node source is deleted.
pub const FINALIZER: &str = "videosources.livemix.io/cleanup";

impl Reconciled for VideoSource {
    type Status = VideoSourceStatus;
    const KIND: &'static str = "VideoSource";

    fn current_status(&self) -> Option<&VideoSourceStatus> {
        self.status.as_ref()
    }

    fn conditions(status: &mut VideoSourceStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
}

/// The controller's reconcile function.
pub async fn reconcile(vs: Arc<VideoSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(VideoSource::KIND);
    let span = info_span!(
        "reconcile",
        kind = VideoSource::KIND,
        namespace = vs.namespace().unwrap_or_default(),
        name = %vs.name_any(),
    );
    let ctx = ctx.as_ref();
    with_finalizer(
        vs,
        ctx,
        FINALIZER,
        |vs| async move { reported(vs.as_ref(), ctx, apply(&vs, ctx)).await },
        |vs| async move { reported(vs.as_ref(), ctx, cleanup(&vs, ctx)).await },
    )
    .instrument(span)
    .await
}

async fn apply(vs: &VideoSource, ctx: &Context) -> Result<Action, Error> {
    let mut notes = Vec::new();
    let status = sync(vs, ctx, &mut notes).await?;
    publish_all(vs, &notes, ctx).await;
    write_status(vs, status, ctx).await?;
    Ok(Action::requeue(ctx.settings.resync()))
}

/// Brings the control node in step with the spec and returns the status to write.
async fn sync(vs: &VideoSource, ctx: &Context, notes: &mut Vec<Note>) -> Result<VideoSourceStatus, Error> {
    let name = vs.control_name();
    validate_name(&name)?;
    let mut source = locate_or_register(vs, &name, ctx, notes).await?;
    let id = source.id;

    if source.name != name {
        let old = std::mem::take(&mut source.name);
        source = ctx
            .control
            .rename_source(id, &name)
            .await
            .map_err(|err| if err.is_conflict() { Error::NameTaken { name: name.clone() } } else { err.into() })?;
        notes.push(Note::normal("Renamed", "Rename", format!("renamed source {id} from {old:?} to {name:?}")));
    }

    if source.description != vs.spec.description {
        source = ctx.control.set_description(id, &vs.spec.description).await?;
        notes.push(Note::normal(
            "DescriptionUpdated",
            "UpdateDescription",
            format!("updated the description of source {name:?}"),
        ));
    }

    let wanted = vs.spec.streaming;
    if source.streaming != wanted {
        source = match ctx.control.set_streaming(id, wanted).await {
            Ok(source) => source,
            // The control node saves the wanted state before asking the edge; if the edge did not confirm, the
            // state is still in place and reaches the edge with its next status report.
            Err(err) => {
                let reread = ctx.control.get_source(id).await?;
                if reread.streaming != wanted {
                    return Err(err.into());
                }
                notes.push(Note::warning(
                    "EdgeNotConfirmed",
                    "SetStreaming",
                    format!("the edge has not confirmed yet; it gets the new state with its next report: {err}"),
                ));
                reread
            }
        };
        let (reason, verb) = if wanted { ("StreamingStarted", "on") } else { ("StreamingStopped", "off") };
        notes.push(Note::normal(reason, "SetStreaming", format!("turned streaming {verb} for source {name:?}")));
    }

    Ok(status_of(vs, &source, ctx))
}

fn status_of(vs: &VideoSource, source: &Source, ctx: &Context) -> VideoSourceStatus {
    let mut status = vs.status.clone().unwrap_or_default();
    status.id = Some(source.id);
    status.streaming = source.streaming;
    status.reachable = source.reachable;
    status.rr_target.clone_from(&source.rr_target);
    status.last_seen = source.last_seen;
    status.live_url = ctx.live_url(source.id);

    let generation = vs.metadata.generation;
    let ready_message = if source.segment_length == vs.spec.segment_length {
        format!("source {:?} ({}) is in step with the spec", source.name, source.id)
    } else {
        format!(
            "source {:?} ({}) is in step, but the control node has segment length {}s, not {}s: it was registered \
             with another length and cannot change",
            source.name, source.id, source.segment_length, vs.spec.segment_length
        )
    };
    condition::set(&mut status.conditions, condition::READY, true, "Synced", &ready_message, generation);
    let (reachable, reason, message) = match (source.reachable, &source.last_seen) {
        (true, _) => (
            true,
            "EdgeReporting",
            format!("edge {} reports for this source", source.rr_target.as_deref().unwrap_or("?")),
        ),
        (false, None) => (false, "NoEdgeReport", "no edge has reported for this source yet".to_owned()),
        (false, Some(last_seen)) => {
            (false, "EdgeSilent", format!("the edge last reported at {}", last_seen.to_rfc3339()))
        }
    };
    condition::set(&mut status.conditions, condition::REACHABLE, reachable, reason, &message, generation);
    status
}

/// Finds the resource's source in the control node, by id and then by name (an operator restart, or a source
/// registered by hand, is adopted, never duplicated), or registers it.
async fn locate_or_register(
    vs: &VideoSource,
    name: &str,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> Result<Source, Error> {
    if let Some(id) = vs.source_id() {
        match ctx.control.get_source(id).await {
            Ok(source) => return Ok(source),
            Err(err) if err.is_not_found() => notes.push(Note::warning(
                "SourceMissing",
                "Register",
                format!("source {id} no longer exists in the control node; registering {name:?} again"),
            )),
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(found) = ctx.control.find_source(name).await? {
        return adopt(vs, found, ctx, notes).await;
    }
    let new = NewSource {
        name: name.to_owned(),
        segment_len: vs.spec.segment_length,
        description: Some(vs.spec.description.clone()),
    };
    match ctx.control.create_source(&new).await {
        Ok(source) => {
            notes.push(Note::normal(
                "Created",
                "Create",
                format!("registered source {name:?} in the control node as {}", source.id),
            ));
            Ok(source)
        }
        // Registered in the meantime (another replica, a user): adopt it.
        Err(err) if err.is_conflict() => match ctx.control.find_source(name).await? {
            Some(found) => adopt(vs, found, ctx, notes).await,
            None => Err(err.into()),
        },
        Err(err) => Err(err.into()),
    }
}

async fn adopt(vs: &VideoSource, found: Source, ctx: &Context, notes: &mut Vec<Note>) -> Result<Source, Error> {
    ensure_unclaimed(vs, &found, ctx).await?;
    notes.push(Note::normal(
        "Adopted",
        "Register",
        format!("adopted source {:?} ({}) that already existed in the control node", found.name, found.id),
    ));
    if found.segment_length != vs.spec.segment_length {
        notes.push(Note::warning(
            "SegmentLengthMismatch",
            "Register",
            format!(
                "the control node has segment length {}s for {:?}, the spec says {}s; it cannot be changed",
                found.segment_length, found.name, vs.spec.segment_length
            ),
        ));
    }
    Ok(found)
}

/// Control-node names are global while resources are namespaced: refuse to adopt a source another VideoSource
/// manages, or wants and was created first, so deleting one resource never deletes another's source.
async fn ensure_unclaimed(vs: &VideoSource, found: &Source, ctx: &Context) -> Result<(), Error> {
    let Some(store) = &ctx.video_sources else {
        return Ok(());
    };
    if store.wait_until_ready().await.is_err() {
        return Ok(());
    }
    let mine = (vs.creation_timestamp(), vs.uid());
    let owner = store.find(|other| {
        other.uid() != vs.uid()
            && other.metadata.deletion_timestamp.is_none()
            && (other.source_id() == Some(found.id)
                || (other.control_name() == found.name
                    && other.source_id().is_none()
                    && (other.creation_timestamp(), other.uid()) < mine))
    });
    match owner {
        Some(owner) => Err(Error::NameConflict {
            name: found.name.clone(),
            owner: format!("{}/{}", owner.namespace().unwrap_or_default(), owner.name_any()),
        }),
        None => Ok(()),
    }
}

/// The control node's rule for source names, checked here so a bad name is a clear condition, not a 400.
fn validate_name(name: &str) -> Result<(), Error> {
    livemix_common::model::validate_source_name(name).map_err(Error::InvalidSpec)
}

async fn cleanup(vs: &VideoSource, ctx: &Context) -> Result<Action, Error> {
    let name = vs.control_name();
    let id = match vs.source_id() {
        Some(id) => Some(id),
        // Registered but the status never written (e.g. the operator stopped in between): find it by name,
        // unless it belongs to another resource.
        None => match ctx.control.find_source(&name).await? {
            Some(found) if ensure_unclaimed(vs, &found, ctx).await.is_ok() => Some(found.id),
            _ => None,
        },
    };
    if let Some(id) = id {
        match ctx.control.delete_source(id).await {
            Ok(()) => {
                let note =
                    Note::normal("Deleted", "Delete", format!("deleted source {name:?} ({id}) from the control node"));
                publish_all(vs, &[note], ctx).await;
            }
            Err(err) if err.is_not_found() => {
                tracing::info!(%id, "source already gone from the control node")
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_control_node_rules() {
        assert!(validate_name("camera-0").is_ok());
        assert!(validate_name("studio.cam_1").is_ok());
        for bad in ["", "a..b", "a/b", "a b", &"x".repeat(254)] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidSpec(_))), "{bad:?}");
        }
    }
}
