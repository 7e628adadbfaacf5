//! Finding the VideoSource's own source in the control node, or registering it, without ever taking over a
//! source that belongs to someone else.
//!
//! Every source the operator registers carries its resource's owner string (`k8s/<namespace>/<name>/<uid>`).
//! A source found by name is adopted only when it carries that string (the status write after a create was
//! lost) or the resource is annotated `livemix.io/adopt: "true"`. `status.id` is user-writable, so a source
//! found through it is also checked: one whose owner is set and is not this resource's is not touched.
//!
//! A source is registered bound to `spec.edge` when the spec names one, and continuous when `spec.recording` says
//! so; the reconcile keeps the binding and the mode in step afterwards.

use kube::ResourceExt;
use livemix_common::model::{RecordingMode as ControlRecordingMode, Retention, Source};

use super::super::{Error, Note};
use crate::{
    context::Context,
    control_client::NewSource,
    crd::{
        VideoSource,
        lifecycle::{ADOPT_ANNOTATION, annotated, owner_of},
    },
};

/// Whose a control-node source is, seen from one VideoSource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    /// Registered by this resource.
    Own,
    /// Registered with no owner (by hand, or by an operator that did not record owners).
    Unowned,
    /// Registered by someone else.
    Foreign,
}

pub(super) fn ownership(vs: &VideoSource, source: &Source) -> Ownership {
    match source.owner.as_deref() {
        None => Ownership::Unowned,
        Some(owner) if owner == owner_of(vs) => Ownership::Own,
        Some(_) => Ownership::Foreign,
    }
}

/// Whether the resource may act on `source`, found through its `status.id`: not when the source is someone
/// else's, unless the resource says to adopt it. Unowned sources pass: operators before owners registered them.
pub(super) fn check_known(vs: &VideoSource, source: &Source) -> Result<(), Error> {
    if ownership(vs, source) == Ownership::Foreign && !annotated(vs, ADOPT_ANNOTATION) {
        return Err(not_owned(source));
    }
    Ok(())
}

/// Whether the resource may adopt `source`, found by name: only its own, or any with the adopt annotation.
pub(super) fn check_adoptable(vs: &VideoSource, source: &Source) -> Result<(), Error> {
    if ownership(vs, source) != Ownership::Own && !annotated(vs, ADOPT_ANNOTATION) {
        return Err(not_owned(source));
    }
    Ok(())
}

fn not_owned(source: &Source) -> Error {
    Error::SourceNotOwned { name: source.name.clone(), id: source.id, owner: source.owner.clone() }
}

/// Finds the resource's source in the control node, by id and then by name (an operator restart that lost the
/// status is adopted, never duplicated), or registers it with this resource as owner and the wanted retention.
pub(super) async fn locate_or_register(
    vs: &VideoSource,
    name: &str,
    retention: &Retention,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> Result<Source, Error> {
    if let Some(id) = vs.source_id() {
        match ctx.control.get_source(id).await {
            Ok(source) => {
                check_known(vs, &source)?;
                return Ok(source);
            }
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
    let new = new_source(vs, name, retention);
    match ctx.control.create_source(&new).await {
        Ok(source) => {
            notes.push(Note::normal(
                "Created",
                "Create",
                format!("registered source {name:?} in the control node as {}", source.id),
            ));
            Ok(source)
        }
        // Registered in the meantime (another replica, a user): adopt it if it may be.
        Err(err) if err.is_conflict() => match ctx.control.find_source(name).await? {
            Some(found) => adopt(vs, found, ctx, notes).await,
            None => Err(err.into()),
        },
        Err(err) => Err(err.into()),
    }
}

/// What registering the resource's source sends: this resource as owner, its edge, and its retention and
/// recording mode when they are not the control node's defaults (so an on-demand source registers as before).
pub(super) fn new_source(vs: &VideoSource, name: &str, retention: &Retention) -> NewSource {
    let mode = vs.recording_mode().to_control();
    NewSource {
        name: name.to_owned(),
        segment_len: vs.spec.segment_length,
        description: Some(vs.spec.description.clone()),
        owner: Some(owner_of(vs)),
        retention: (*retention != Retention::default()).then_some(*retention),
        edge: vs.spec.edge.clone(),
        recording: (mode != ControlRecordingMode::default()).then_some(mode),
    }
}

async fn adopt(vs: &VideoSource, found: Source, ctx: &Context, notes: &mut Vec<Note>) -> Result<Source, Error> {
    // Another VideoSource managing it is the more useful thing to say first.
    ensure_unclaimed(vs, &found, ctx).await?;
    check_adoptable(vs, &found)?;
    let how = match ownership(vs, &found) {
        Ownership::Own => "registered earlier by this resource".to_owned(),
        Ownership::Unowned => format!("registered with no owner; {ADOPT_ANNOTATION} is set"),
        Ownership::Foreign => {
            format!("registered by {:?}; {ADOPT_ANNOTATION} is set", found.owner.as_deref().unwrap_or_default())
        }
    };
    notes.push(Note::normal(
        "Adopted",
        "Register",
        format!("adopted source {:?} ({}) that already existed in the control node ({how})", found.name, found.id),
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
pub(super) async fn ensure_unclaimed(vs: &VideoSource, found: &Source, ctx: &Context) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::crd::VideoSourceSpec;

    fn resource(adopt: bool) -> VideoSource {
        let mut vs = VideoSource::new(
            "cam",
            VideoSourceSpec {
                name: None,
                description: String::new(),
                segment_length: 2,
                streaming: false,
                deletion_policy: None,
                retention: None,
                edge: None,
                recording: None,
            },
        );
        vs.metadata.namespace = Some("studio".into());
        vs.metadata.uid = Some("u-1".into());
        if adopt {
            vs.metadata.annotations = Some([(ADOPT_ANNOTATION.to_owned(), "true".to_owned())].into());
        }
        vs
    }

    fn source(owner: Option<&str>) -> Source {
        Source {
            id: Uuid::nil(),
            name: "cam".into(),
            segment_length: 2,
            description: String::new(),
            streaming: false,
            rr_target: None,
            local_time: None,
            last_seen: None,
            reachable: false,
            owner: owner.map(str::to_owned),
            edge: None,
            retention: Retention::default(),
            recording: Default::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn only_own_sources_are_adopted_by_name_unless_annotated() {
        let vs = resource(false);
        assert_eq!(owner_of(&vs), "k8s/studio/cam/u-1");
        assert!(check_adoptable(&vs, &source(Some("k8s/studio/cam/u-1"))).is_ok());
        for other in [None, Some("k8s/studio/cam/u-0"), Some("someone")] {
            let err = check_adoptable(&vs, &source(other)).unwrap_err();
            assert_eq!(err.reason(), "SourceNotOwned");
            assert!(err.to_string().contains(ADOPT_ANNOTATION), "{err}");
        }
        let annotated = resource(true);
        for other in [None, Some("k8s/studio/cam/u-0")] {
            assert!(check_adoptable(&annotated, &source(other)).is_ok());
        }
    }

    #[test]
    fn registration_carries_a_continuous_recording_mode() {
        let mut vs = resource(false);
        let body = |vs: &VideoSource| serde_json::to_value(new_source(vs, "cam", &Retention::default())).unwrap();
        assert_eq!(new_source(&vs, "cam", &Retention::default()).recording, None);
        assert!(body(&vs).get("recording").is_none(), "on demand registers as before: {}", body(&vs));
        vs.spec.recording = Some(crate::crd::RecordingMode::OnDemand);
        assert!(body(&vs).get("recording").is_none(), "the default is not sent");
        vs.spec.recording = Some(crate::crd::RecordingMode::Continuous);
        assert_eq!(new_source(&vs, "cam", &Retention::default()).recording, Some(ControlRecordingMode::Continuous));
        assert_eq!(body(&vs)["recording"], "continuous");
    }

    #[test]
    fn a_status_id_never_reaches_another_owners_source() {
        let vs = resource(false);
        assert!(check_known(&vs, &source(Some("k8s/studio/cam/u-1"))).is_ok());
        assert!(check_known(&vs, &source(None)).is_ok(), "sources from before owners");
        assert!(check_known(&vs, &source(Some("k8s/other/cam/u-9"))).is_err());
        assert!(check_known(&resource(true), &source(Some("k8s/other/cam/u-9"))).is_ok());
    }
}
