//! VideoSource: register (or adopt) the source in the control node, keep its edge binding, name, description,
//! streaming state, retention and recording mode in step with the spec, report what the control node knows and stores, and
//! delete it when the resource goes, keeping or deleting its recordings as `deletionPolicy` says.

mod delete;
mod register;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{ResourceExt, runtime::controller::Action};
use livemix_common::model::{Retention, Source};
use tracing::{Instrument, info_span};

use super::{Error, Note, Reconciled, publish_all, with_finalizer, write_status};
use crate::{
    context::Context,
    control_client::Usage,
    crd::{RecordingMode, VideoSource, VideoSourceStatus, condition},
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

    fn control_object(&self) -> Option<String> {
        self.source_id().map(|id| format!("source {id}"))
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
        |vs| async move { apply(&vs, ctx).await },
        |vs| async move { delete::cleanup(&vs, ctx).await },
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
    validate_edge(vs)?;
    let retention = wanted_retention(vs)?;
    let mut source = register::locate_or_register(vs, &name, &retention, ctx, notes).await?;
    let id = source.id;

    // Bound first, so the edge that is to serve the source is the one asked about streaming below. A spec without
    // an edge leaves the binding as it is (unbinding is the management API's DELETE /v1/source/{id}/edge).
    if let Some(wanted) = vs.spec.edge.as_deref()
        && source.edge.as_deref() != Some(wanted)
    {
        let previous = source.edge.take();
        source.edge = ctx.control.bind_edge(id, wanted).await?;
        let message = match previous {
            Some(old) => format!("moved source {name:?} from edge {old:?} to edge {wanted:?}"),
            None => format!("bound source {name:?} to edge {wanted:?}"),
        };
        notes.push(Note::normal("EdgeBound", "BindEdge", message));
    }

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

    if source.retention != retention {
        source = ctx.control.set_retention(id, &retention).await?;
        notes.push(Note::normal(
            "RetentionUpdated",
            "SetRetention",
            format!("set the retention of source {name:?} to {}", describe_retention(&retention)),
        ));
    }

    let mode = vs.recording_mode();
    if source.recording != mode.to_control() {
        let previous = RecordingMode::from_control(source.recording);
        source = ctx.control.set_recording_mode(id, mode.to_control()).await?;
        notes.push(Note::normal(
            "RecordingModeUpdated",
            "SetRecordingMode",
            format!(
                "switched source {name:?} from {} to {} recording",
                previous.as_str(),
                RecordingMode::from_control(source.recording).as_str()
            ),
        ));
    }

    let usage = ctx.control.source_storage(id).await?;
    Ok(status_of(vs, &source, &usage, ctx))
}

/// The retention the spec asks for; an invalid value (one the schema let through) is a clear condition, and
/// nothing is changed in the control node.
fn wanted_retention(vs: &VideoSource) -> Result<Retention, Error> {
    let Some(spec) = &vs.spec.retention else {
        return Ok(Retention::default());
    };
    let retention = spec.to_retention().map_err(Error::InvalidSpec)?;
    retention.validate().map_err(|err| Error::InvalidSpec(format!("spec.retention: {err}")))?;
    Ok(retention)
}

/// `max age 30d, max bytes 500Gi`, in the units the control node counts.
fn describe_retention(retention: &Retention) -> String {
    let age = retention.max_age_secs.map_or_else(|| "the control node's default".to_owned(), |s| format!("{s}s"));
    let bytes = retention.max_bytes.map_or_else(|| "the control node's default".to_owned(), |b| format!("{b} bytes"));
    format!("max age {age}, max bytes {bytes}")
}

fn status_of(vs: &VideoSource, source: &Source, usage: &Usage, ctx: &Context) -> VideoSourceStatus {
    let mut status = vs.status.clone().unwrap_or_default();
    status.id = Some(source.id);
    status.streaming = source.streaming;
    status.reachable = source.reachable;
    status.edge.clone_from(&source.edge);
    status.recording = Some(RecordingMode::from_control(source.recording));
    status.rr_target.clone_from(&source.rr_target);
    status.last_seen = source.last_seen;
    status.live_url = ctx.live_url(source.id);
    status.stored_bytes = Some(usage.bytes);
    status.stored_segments = Some(usage.segments);

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

/// The control node's rule for source names, checked here so a bad name is a clear condition, not a 400.
fn validate_name(name: &str) -> Result<(), Error> {
    livemix_common::model::validate_source_name(name).map_err(Error::InvalidSpec)
}

/// The control node's rule for edge ids, checked before anything is registered or bound.
fn validate_edge(vs: &VideoSource) -> Result<(), Error> {
    match vs.spec.edge.as_deref() {
        Some(edge) => {
            livemix_common::model::validate_edge_id(edge).map_err(|err| Error::InvalidSpec(format!("spec.edge: {err}")))
        }
        None => Ok(()),
    }
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

    #[test]
    fn edge_ids_follow_the_control_node_rules() {
        let with_edge = |edge: Option<&str>| {
            let mut vs = VideoSource::new(
                "cam",
                crate::crd::VideoSourceSpec {
                    name: None,
                    description: String::new(),
                    segment_length: 2,
                    streaming: false,
                    deletion_policy: None,
                    retention: None,
                    edge: edge.map(str::to_owned),
                    recording: None,
                },
            );
            vs.metadata.namespace = Some("studio".into());
            vs
        };
        for good in [None, Some("livemix-edge-livemix-edge-0"), Some("site_b.edge-1"), Some(&*"e".repeat(128))] {
            assert!(validate_edge(&with_edge(good)).is_ok(), "{good:?}");
        }
        for bad in ["", "edge 0", "edge/0", "édge", &"e".repeat(129)] {
            match validate_edge(&with_edge(Some(bad))) {
                Err(Error::InvalidSpec(message)) => assert!(message.starts_with("spec.edge: "), "{message}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
