//! Recordings with a lifecycle: what a delete removes, how long recordings are kept, and how their objects leave
//! the store. The rules (see `docs/lifecycle.md`):
//!
//! - Nothing is destroyed by a routine delete: a source with recordings is deleted only when the caller says what
//!   becomes of them, and a recording on hold is never deleted, by a user or automatically.
//! - A segment's object is deleted only when no recording refers to it any more; the database records that
//!   deletion in the same transaction ([`crate::db::lifecycle`]), and the [`deletions`] worker carries it out,
//!   one replica at a time, retrying until the store confirms.
//! - [`retention`] deletes by age and by bytes, oldest first; [`gc`] finds objects no segment refers to, and
//!   segments whose object is missing.

pub mod deletions;
pub mod gc;
pub mod metrics;
pub mod retention;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use livemix_common::{
    management_api::{Deletion, RecordingsPolicy, Usage},
    model::{Recording, Retention},
    store::SharedStore,
    telemetry::Metrics,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    config::LifecycleSettings,
    db::{Db, DbError, lifecycle::DeletionReason},
};

pub use metrics::LifecycleMetrics;

/// What went wrong in a lifecycle operation.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Store(#[from] livemix_common::store::StoreError),
}

/// The recordings' lifecycle, shared by the handlers, the inbox and the background workers.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    store: SharedStore,
    settings: LifecycleSettings,
    metrics: LifecycleMetrics,
    /// Wakes the deletion worker when deletions were recorded.
    wake: Notify,
}

impl Lifecycle {
    pub fn new(db: Db, store: SharedStore, settings: LifecycleSettings, metrics: &Metrics) -> Self {
        let metrics = LifecycleMetrics::new(metrics);
        Self { inner: Arc::new(Inner { db, store, settings, metrics, wake: Notify::new() }) }
    }

    pub fn settings(&self) -> &LifecycleSettings {
        &self.inner.settings
    }

    /// The control node's default retention.
    pub fn default_retention(&self) -> Retention {
        self.inner.settings.default_retention()
    }

    /// Deletes a recording (stopped by the caller) and queues the objects no other recording needs.
    #[tracing::instrument(skip(self))]
    pub async fn delete_recording(&self, id: &str) -> Result<Deletion, LifecycleError> {
        let queued = self.inner.db.delete_recording(id, DeletionReason::User).await?;
        tracing::info!(
            recording = id,
            objects = queued,
            reason = "user",
            "recording deleted; its unshared objects are queued for deletion"
        );
        self.queued(queued);
        Ok(Deletion { recordings_retained: 0, recordings_deleted: 1, objects_queued: queued })
    }

    /// Deletes a source (its active recordings stopped by the caller) as `policy` says.
    #[tracing::instrument(skip(self))]
    pub async fn delete_source(&self, id: Uuid, policy: Option<RecordingsPolicy>) -> Result<Deletion, LifecycleError> {
        let deletion = self.inner.db.delete_source(id, policy).await?;
        tracing::info!(
            source = %id,
            policy = policy.map(RecordingsPolicy::as_str),
            recordings_retained = deletion.recordings_retained,
            recordings_deleted = deletion.recordings_deleted,
            objects = deletion.objects_queued,
            reason = "source",
            "source deleted"
        );
        self.queued(deletion.objects_queued);
        Ok(deletion)
    }

    /// Keeps the source within its storage cap after a new recorded segment: at most that segment over.
    pub async fn enforce_cap(&self, source: Uuid) -> Result<(), LifecycleError> {
        let report = retention::cap(&self.inner.db, source, self.inner.settings.retention_max_bytes).await?;
        self.inner.metrics.retention_deleted(DeletionReason::Cap, &report);
        self.queued(report.segments_deleted);
        Ok(())
    }

    /// Bytes and segments stored, and object deletions pending, over all sources.
    pub async fn totals(&self) -> Result<(i64, i64, i64), LifecycleError> {
        Ok(self.inner.db.storage_totals().await?)
    }

    /// What a source stores.
    pub async fn source_usage(&self, source: Uuid) -> Result<Usage, LifecycleError> {
        let (bytes, segments) = self.inner.db.source_usage(source).await?;
        Ok(Usage { bytes, segments, expires_at: None })
    }

    /// What a recording stores, and when retention deletes the last of it.
    pub async fn recording_usage(&self, recording: &Recording) -> Result<Usage, LifecycleError> {
        let usage = self.inner.db.recording_usage(&recording.id).await?;
        let own = match self.inner.db.get_source(recording.source).await {
            Ok(source) => source.retention,
            Err(DbError::NotFound { .. }) => Retention::default(),
            Err(err) => return Err(err.into()),
        };
        let policy = own.or(self.default_retention());
        Ok(Usage {
            bytes: usage.bytes,
            segments: usage.segments,
            expires_at: expires_at(recording, policy, usage.newest_end),
        })
    }

    /// Deletions were recorded: the worker should look now.
    fn queued(&self, objects: u64) {
        if objects > 0 {
            self.inner.wake.notify_one();
        }
    }
}

/// When age retention deletes the last segment of a finished recording not on hold: its newest segment's end
/// (or the recording's) plus the age limit. `None` when nothing will: no age limit, on hold, or still recording.
pub fn expires_at(
    recording: &Recording,
    policy: Retention,
    newest_end: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    if recording.hold || recording.active {
        return None;
    }
    let age = TimeDelta::try_seconds(policy.max_age_secs?)?;
    newest_end.or(recording.end_ts)?.checked_add_signed(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(active: bool, hold: bool, end: Option<DateTime<Utc>>) -> Recording {
        let now = Utc::now();
        Recording {
            id: ulid::Ulid::new().to_string(),
            alias: None,
            description: None,
            source: Uuid::new_v4(),
            start_ts: now,
            end_ts: end,
            active,
            hold,
            source_name: None,
            continuous: false,
            verification: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn only_finished_unheld_recordings_under_an_age_limit_expire() {
        let end = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let day = Retention { max_age_secs: Some(86_400), max_bytes: None };
        let finished = recording(false, false, Some(end));
        assert_eq!(expires_at(&finished, day, None), Some(end + TimeDelta::days(1)));
        let later = end + TimeDelta::hours(2);
        assert_eq!(expires_at(&finished, day, Some(later)), Some(later + TimeDelta::days(1)));
        assert_eq!(expires_at(&finished, Retention::default(), Some(later)), None);
        assert_eq!(expires_at(&recording(true, false, None), day, Some(later)), None);
        assert_eq!(expires_at(&recording(false, true, Some(end)), day, Some(later)), None);
        let forever = Retention { max_age_secs: Some(i64::MAX), max_bytes: None };
        assert_eq!(expires_at(&finished, forever, Some(later)), None, "an absurd age never panics");
    }
}
