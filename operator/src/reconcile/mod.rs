//! Reconcilers of both resources and what they share: errors, events, status writes and retry policy.
//!
//! Each reconcile runs inside kube's finalizer helper. Its apply step computes the status from the control
//! node, publishes an Event for every change it made, then writes the status with server-side apply (skipped
//! when nothing changed, so a resource in step costs no Kubernetes calls). A failure publishes a Warning Event,
//! sets `Ready=False` with the error as message (and, while the resource is being deleted, `Deleting=True`
//! saying why its cleanup waits) and is retried with per-object exponential backoff. The
//! `livemix.io/skip-cleanup` annotation releases a resource whose cleanup cannot run.

pub mod recording;
pub mod video_source;

use std::{fmt::Debug, sync::Arc};

use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        finalizer,
    },
};
use livemix_common::api;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    context::{Context, MANAGER},
    control_client::ControlError,
    crd::{
        condition,
        lifecycle::{SKIP_CLEANUP_ANNOTATION, annotated},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("Kubernetes API call failed while {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
    #[error("VideoSource {name:?} does not exist in namespace {namespace:?}")]
    SourceNotFound { namespace: String, name: String },
    #[error("VideoSource {name:?} is not ready: {why}")]
    SourceNotReady { name: String, why: String },
    #[error("control-node source {name:?} is already managed by VideoSource {owner}; give this one another spec.name")]
    NameConflict { name: String, owner: String },
    #[error("cannot rename the source to {name:?}: another control-node source has that name")]
    NameTaken { name: String },
    #[error("alias {alias:?} is already used by another recording in the control node{}", .id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default())]
    AliasConflict { alias: String, id: Option<String> },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error(
        "control-node source {name:?} ({id}) is registered by someone else ({}); to take it over, annotate this \
         VideoSource {ADOPT}=true, or give it another spec.name",
        .owner.as_deref().map(|o| format!("owner {o:?}")).unwrap_or_else(|| "no owner recorded".into()),
        ADOPT = crate::crd::lifecycle::ADOPT_ANNOTATION
    )]
    SourceNotOwned { name: String, id: uuid::Uuid, owner: Option<String> },
    #[error("recording {id} named in status.id is not this resource's (its alias is {alias:?}, not {expected:?})")]
    RecordingNotOwned { id: String, alias: Option<String>, expected: String },
    #[error(
        "recording {id} is on hold (spec.hold: true), so deletionPolicy: Delete cannot delete it; set spec.hold: \
         false to let it be deleted, or deletionPolicy: Retain to keep it"
    )]
    OnHold { id: String },
}

impl Error {
    /// CamelCase reason for conditions, Events and the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Control(_) => "ControlNodeError",
            Self::Kube { .. } => "KubernetesError",
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => err.reason(),
                _ => "FinalizerError",
            },
            Self::SourceNotFound { .. } => "SourceNotFound",
            Self::SourceNotReady { .. } => "SourceNotReady",
            Self::NameConflict { .. } | Self::NameTaken { .. } => "NameConflict",
            Self::AliasConflict { .. } => "AliasConflict",
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::SourceNotOwned { .. } => "SourceNotOwned",
            Self::RecordingNotOwned { .. } => "RecordingNotOwned",
            Self::OnHold { .. } => "OnHold",
        }
    }

    /// CamelCase reason for a failed cleanup: why the resource's deletion waits.
    pub fn cleanup_reason(&self) -> &'static str {
        match self.innermost() {
            Self::Control(ControlError::Unreachable { .. }) => "ControlUnreachable",
            // A recording on hold refuses the delete: the same reason as a hold the spec asks for.
            Self::Control(ControlError::Api { status: 409, reason: Some(reason), .. })
                if reason == api::reason::ON_HOLD =>
            {
                "OnHold"
            }
            Self::Control(err) if err.is_conflict() => "DeletionRefused",
            other => other.reason(),
        }
    }

    /// The error itself, out of the finalizer helper's wrapping.
    fn innermost(&self) -> &Self {
        match self {
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => err.innermost(),
                _ => self,
            },
            other => other,
        }
    }

    /// The control node's id of the request that failed, if one did.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Control(err) => err.request_id(),
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => err.request_id(),
                _ => None,
            },
            _ => None,
        }
    }

    fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Kube { what, source }
    }
}

/// A resource kind this operator reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + Clone + Default + PartialEq + Send + Sync;
    const KIND: &'static str;
    fn current_status(&self) -> Option<&Self::Status>;
    fn conditions(status: &mut Self::Status) -> &mut Vec<Condition>;
    /// What the resource made in the control node, as a phrase for messages (`source 0b5c...`), once known.
    fn control_object(&self) -> Option<String>;
}

/// Which step of a reconcile failed: it decides which conditions say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Bringing the control node in step with the spec.
    Apply,
    /// Cleaning up in the control node before the finalizer is removed.
    Cleanup,
}

/// An Event to publish about the object being reconciled.
#[derive(Debug, Clone)]
pub struct Note {
    warning: bool,
    reason: &'static str,
    action: &'static str,
    message: String,
}

impl Note {
    pub fn normal(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self { warning: false, reason, action, message: message.into() }
    }

    pub fn warning(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self { warning: true, reason, action, message: message.into() }
    }
}

/// The API server refuses an Event whose note is longer than this many bytes (not characters).
const MAX_NOTE_BYTES: usize = 1024;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Publishes an Event; a failure is logged, never fatal: Events are advice, the status is the record.
async fn publish<K: Reconciled>(obj: &K, note: &Note, ctx: &Context) {
    if note.warning {
        tracing::warn!(reason = note.reason, "{}", note.message);
    } else {
        tracing::info!(reason = note.reason, "{}", note.message);
    }
    let event = Event {
        type_: if note.warning { EventType::Warning } else { EventType::Normal },
        reason: note.reason.into(),
        note: Some(truncate_bytes(&note.message, MAX_NOTE_BYTES).to_owned()),
        action: note.action.into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(%err, reason = note.reason, "could not publish an Event");
    }
}

async fn publish_all<K: Reconciled>(obj: &K, notes: &[Note], ctx: &Context) {
    for note in notes {
        publish(obj, note, ctx).await;
    }
}

fn namespace<K: Reconciled>(obj: &K) -> Result<String, Error> {
    obj.namespace().ok_or_else(|| Error::InvalidSpec(format!("{} {} has no namespace", K::KIND, obj.name_any())))
}

/// Writes the status with server-side apply, unless it is unchanged.
async fn write_status<K: Reconciled>(obj: &K, status: K::Status, ctx: &Context) -> Result<(), Error> {
    if obj.current_status() == Some(&status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace(obj)?);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(format!("writing the status of {} {}", K::KIND, obj.name_any())))?;
    Ok(())
}

/// Makes a failure visible: a Warning Event (with the control node's request id, to find it in its logs) and
/// `Ready=False` with the error, keeping the rest of the status. A failed cleanup also sets `Deleting=True`,
/// saying why the deletion waits and how to release the resource anyway.
///
/// The conditions carry no request id: a failure that repeats leaves the status as it is, since a status write
/// is a watch event that would start the next attempt at once, bypassing the backoff, in a loop hammering the
/// control node and the API server.
async fn report_failure<K: Reconciled>(obj: &K, phase: Phase, err: &Error, ctx: &Context) {
    let (reason, action, message) = match phase {
        Phase::Apply => (err.reason(), "Reconcile", err.to_string()),
        Phase::Cleanup => (
            err.cleanup_reason(),
            "Delete",
            format!(
                "cleanup in the control node failed, retrying with backoff: {err}; to release the {} without \
                 cleanup, annotate it {SKIP_CLEANUP_ANNOTATION}=true",
                K::KIND
            ),
        ),
    };
    let event = match err.request_id() {
        Some(id) => format!("{message} (request {id})"),
        None => message.clone(),
    };
    publish(obj, &Note::warning(reason, action, event), ctx).await;
    let mut status = obj.current_status().cloned().unwrap_or_default();
    let conditions = K::conditions(&mut status);
    let generation = obj.meta().generation;
    condition::set(conditions, condition::READY, false, reason, &message, generation);
    if phase == Phase::Cleanup {
        condition::set(conditions, condition::DELETING, true, reason, &message, generation);
    }
    if let Err(write_err) = write_status(obj, status, ctx).await {
        tracing::warn!(%write_err, "could not record the failure in the status");
    }
}

/// Runs a reconcile step and reports its failure, so both apply and cleanup fail the same visible way.
async fn reported<K: Reconciled>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    step: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    match step.await {
        Ok(action) => {
            ctx.backoff.reset(&backoff_key(obj));
            Ok(action)
        }
        Err(err) => {
            report_failure(obj, phase, &err, ctx).await;
            Err(err)
        }
    }
}

/// Releases the resource without cleaning up, when its `livemix.io/skip-cleanup` annotation asks for it: an
/// escape hatch for a control node that is gone for good. Says so in a Warning Event, naming what stays behind.
async fn skip_cleanup<K: Reconciled>(obj: &K, ctx: &Context) -> Option<Action> {
    if !annotated(obj, SKIP_CLEANUP_ANNOTATION) {
        return None;
    }
    let left = match obj.control_object() {
        Some(object) => format!("{object} is left as it is in the control node"),
        None => "its status names no control-node object; whatever was made for it stays there".to_owned(),
    };
    let message =
        format!("{SKIP_CLEANUP_ANNOTATION} is set: removing the finalizer without calling the control node; {left}");
    publish(obj, &Note::warning("CleanupSkipped", "Delete", message), ctx).await;
    ctx.backoff.reset(&backoff_key(obj));
    Some(Action::await_change())
}

fn backoff_key<K: Reconciled>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Retries a failed reconcile after an exponentially growing, capped delay.
pub fn error_policy<K: Reconciled>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(K::KIND, err.reason());
    let delay = ctx.backoff.next_delay(&backoff_key(obj.as_ref()));
    tracing::warn!(
        kind = K::KIND,
        namespace = obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        reason = err.reason(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Runs `apply` or `cleanup` under the kind's finalizer, each reporting its failures; a cleanup is skipped when
/// the resource carries the `livemix.io/skip-cleanup` annotation.
async fn with_finalizer<K, A, C>(
    obj: Arc<K>,
    ctx: &Context,
    finalizer_name: &str,
    apply: impl FnOnce(Arc<K>) -> A,
    cleanup: impl FnOnce(Arc<K>) -> C,
) -> Result<Action, Error>
where
    K: Reconciled,
    A: Future<Output = Result<Action, Error>>,
    C: Future<Output = Result<Action, Error>>,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace(obj.as_ref())?);
    finalizer::finalizer(&api, finalizer_name, obj, |event| async move {
        match event {
            finalizer::Event::Apply(obj) => reported(obj.as_ref(), ctx, Phase::Apply, apply(obj.clone())).await,
            finalizer::Event::Cleanup(obj) => match skip_cleanup(obj.as_ref(), ctx).await {
                Some(action) => Ok(action),
                None => reported(obj.as_ref(), ctx, Phase::Cleanup, cleanup(obj.clone())).await,
            },
        }
    })
    .await
    .map_err(|err| Error::Finalizer(Box::new(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_cut_to_the_api_servers_byte_limit() {
        assert_eq!(truncate_bytes("short", MAX_NOTE_BYTES), "short");
        let long = "é".repeat(1000);
        let cut = truncate_bytes(&long, MAX_NOTE_BYTES);
        assert_eq!(cut.len(), 1024);
        assert_eq!(cut.chars().count(), 512);
        assert_eq!(truncate_bytes("aé", 2), "a");
    }
}
