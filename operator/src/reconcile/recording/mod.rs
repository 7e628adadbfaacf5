//! Recording: start the recording in the control node once its VideoSource is ready, stop it when `spec.stopped`
//! is set, keep its legal hold in step with `spec.hold`, report its progress, coverage, storage and last
//! verification, and when the resource is deleted stop it and keep or delete it as `deletionPolicy` says.

mod delete;
mod start;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{ResourceExt, runtime::controller::Action};
use livemix_common::model::{Recording as ControlRecording, VerificationSummary};
use tracing::{Instrument, info_span};

use self::start::{check_own, find_own, ready_source, start};
use super::{Error, Note, Reconciled, publish_all, with_finalizer, write_status};
use crate::{
    context::Context,
    control_client::{Coverage, GapCause, Usage},
    crd::{Recording, RecordingCoverage, RecordingStatus, condition},
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

    // The count the control node keeps, not the segment list: a long recording lists hundreds of thousands.
    let usage = ctx.control.recording_storage(&recording.id).await?;
    let segments = usize::try_from(usage.segments).unwrap_or(0);
    let coverage = coverage(rec, &recording, ctx).await?;
    let mut status = status_of(rec, &recording, segments, &usage, ctx);
    status.coverage = coverage;
    verified(rec, &recording, &mut status, notes);
    Ok(status)
}

/// The recording's coverage. Read from the control node only while it can still change: while the recording is
/// active, on the pass that first sees it finished (the status still says active), and while the status has none
/// yet; otherwise the status keeps the last one read, so finished recordings cost no coverage call.
async fn coverage(
    rec: &Recording,
    recording: &ControlRecording,
    ctx: &Context,
) -> Result<Option<RecordingCoverage>, Error> {
    let previous = rec.status.as_ref().and_then(|s| s.coverage.clone());
    if !needs_coverage(rec.status.as_ref(), recording) {
        return Ok(previous);
    }
    match ctx.control.recording_coverage(&recording.id).await {
        Ok(coverage) => Ok(Some(summarize(&coverage))),
        // A control node older than the coverage endpoint: no coverage, the rest of the status still counts.
        Err(err) if err.is_not_found() => Ok(previous),
        Err(err) => Err(err.into()),
    }
}

/// Whether the coverage is worth a call: the recording is active, or was when the status was written (the pass
/// that sees it finish reads the final coverage), or the status has none yet.
fn needs_coverage(status: Option<&RecordingStatus>, recording: &ControlRecording) -> bool {
    recording.active || status.is_none_or(|s| s.active || s.coverage.is_none())
}

/// What the status keeps of a coverage: seconds and segments recorded, and the breaks between segments. The
/// `no_recording` stretches before the first and after the last segment are not breaks (an active recording
/// always ends in one, up to now), so they are not counted: the count stays put while nothing breaks.
fn summarize(coverage: &Coverage) -> RecordingCoverage {
    let gaps = coverage.gaps.iter().filter(|gap| gap.cause != GapCause::NoRecording).count();
    RecordingCoverage {
        // Saturating float-to-int cast; the lengths are whole milliseconds.
        recorded_seconds: coverage.recorded_secs.round() as i64,
        segments: i64::try_from(coverage.segments).unwrap_or(i64::MAX),
        gaps: i64::try_from(gaps).unwrap_or(i64::MAX),
    }
}

/// The `Verified` condition, from the control node's last verification of the recording: `True` when every
/// segment read back matched, `False` (reason `Mismatch`, and a Warning Event when it turns so) when a segment's
/// bytes changed or its object is gone, `Unknown` (reason `NotVerified`) until it was verified.
fn verified(rec: &Recording, recording: &ControlRecording, status: &mut RecordingStatus, notes: &mut Vec<Note>) {
    let generation = rec.metadata.generation;
    let Some(summary) = &recording.verification else {
        let message = format!(
            "recording {} has not been verified yet (POST /v1/recording/{}/verify reads its segments back)",
            recording.id, recording.id
        );
        condition::set_status(
            &mut status.conditions,
            condition::VERIFIED,
            "Unknown",
            "NotVerified",
            &message,
            generation,
        );
        return;
    };
    let message = describe_verification(summary);
    if summary.passed() {
        condition::set(&mut status.conditions, condition::VERIFIED, true, "Verified", &message, generation);
        return;
    }
    const REASON: &str = "Mismatch";
    let already = condition::find(&status.conditions, condition::VERIFIED).is_some_and(|c| c.reason == REASON);
    if !already {
        notes.push(Note::warning(REASON, "Verify", format!("recording {}: {message}", recording.id)));
    }
    condition::set(&mut status.conditions, condition::VERIFIED, false, REASON, &message, generation);
}

/// `verified at <time>: 120 segments checked, 0 mismatched, 0 missing`.
fn describe_verification(summary: &VerificationSummary) -> String {
    format!(
        "verified at {}: {} segments checked, {} mismatched, {} missing",
        summary.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        summary.segments,
        summary.mismatched,
        summary.missing
    )
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use livemix_common::management_api::Gap;

    use super::*;
    use crate::crd::RecordingSpec;

    fn resource() -> Recording {
        let mut rec = Recording::new(
            "morning",
            RecordingSpec {
                source: "cam".into(),
                alias: None,
                description: None,
                start_time: None,
                stopped: false,
                deletion_policy: None,
                purge_on_delete: false,
                hold: false,
            },
        );
        rec.metadata.generation = Some(3);
        rec
    }

    fn control(verification: Option<VerificationSummary>) -> ControlRecording {
        let now = Utc::now();
        ControlRecording {
            id: "01JREC".into(),
            alias: None,
            description: None,
            source: uuid::Uuid::nil(),
            start_ts: now,
            end_ts: None,
            active: true,
            hold: false,
            source_name: None,
            continuous: false,
            verification,
            created_at: now,
            updated_at: now,
        }
    }

    fn gap(start: DateTime<Utc>, secs: i64, cause: GapCause) -> Gap {
        Gap { start, end: start + TimeDelta::seconds(secs), secs: secs as f64, cause }
    }

    #[test]
    fn coverage_is_read_while_it_can_change_or_is_unknown() {
        let active = control(None);
        let finished = ControlRecording { active: false, ..control(None) };
        let known = Some(RecordingCoverage { recorded_seconds: 4, segments: 2, gaps: 0 });
        let status = |active: bool, coverage: Option<RecordingCoverage>| RecordingStatus {
            active,
            coverage,
            ..RecordingStatus::default()
        };
        assert!(needs_coverage(None, &active));
        assert!(needs_coverage(None, &finished), "no status yet");
        assert!(needs_coverage(Some(&status(true, known.clone())), &active), "active");
        assert!(needs_coverage(Some(&status(true, known.clone())), &finished), "the pass that sees it stop");
        assert!(needs_coverage(Some(&status(false, None)), &finished), "none yet");
        assert!(!needs_coverage(Some(&status(false, known)), &finished), "finished and known: no call");
    }

    #[test]
    fn coverage_counts_breaks_not_the_edges_of_the_range() {
        let t = Utc::now();
        let coverage = Coverage {
            start: t,
            end: t + TimeDelta::seconds(100),
            recorded_secs: 59.6,
            segments: 30,
            spans: Vec::new(),
            gaps: vec![
                gap(t, 10, GapCause::NoRecording),
                gap(t + TimeDelta::seconds(20), 4, GapCause::NotRecorded),
                gap(t + TimeDelta::seconds(40), 0, GapCause::EncoderRestart),
                gap(t + TimeDelta::seconds(90), 10, GapCause::NoRecording),
            ],
        };
        assert_eq!(summarize(&coverage), RecordingCoverage { recorded_seconds: 60, segments: 30, gaps: 2 });
    }

    #[test]
    fn verified_condition_follows_the_last_verification() {
        let rec = resource();
        let mut status = RecordingStatus::default();
        let mut notes = Vec::new();
        let at: DateTime<Utc> = "2026-12-08T01:00:00Z".parse().unwrap();

        verified(&rec, &control(None), &mut status, &mut notes);
        let c = condition::find(&status.conditions, condition::VERIFIED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "NotVerified"));
        assert!(c.message.contains("/verify"), "{}", c.message);
        assert_eq!(c.observed_generation, Some(3));

        let passed = VerificationSummary { at, segments: 120, mismatched: 0, missing: 0 };
        verified(&rec, &control(Some(passed)), &mut status, &mut notes);
        let c = condition::find(&status.conditions, condition::VERIFIED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Verified"));
        assert_eq!(c.message, "verified at 2026-12-08T01:00:00Z: 120 segments checked, 0 mismatched, 0 missing");
        assert!(notes.is_empty(), "a passed verification is no news");

        let failed = VerificationSummary { at, segments: 120, mismatched: 2, missing: 1 };
        verified(&rec, &control(Some(failed.clone())), &mut status, &mut notes);
        let c = condition::find(&status.conditions, condition::VERIFIED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Mismatch"));
        assert!(c.message.contains("2 mismatched, 1 missing"), "{}", c.message);
        assert_eq!(notes.len(), 1, "a Warning Event when it turns to Mismatch");
        verified(&rec, &control(Some(failed)), &mut status, &mut notes);
        assert_eq!(notes.len(), 1, "only once");
        assert_eq!(status.conditions.len(), 1);
    }
}
