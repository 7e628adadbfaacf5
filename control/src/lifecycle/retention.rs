//! Retention: recorded segments older than their source's age limit, and the oldest segments of a source over its
//! storage cap, are deleted, never a segment of a recording on hold. A finished recording left without a segment
//! goes with its last one. One replica at a time runs the periodic pass; the cap is also enforced as each new
//! segment is indexed, so a source exceeds it by at most one segment.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use livemix_common::management_api::RetentionReport;
use uuid::Uuid;

use super::{Lifecycle, LifecycleError};
use crate::db::{
    Db, DbResult,
    lifecycle::{DeletionReason, Work},
};

/// Segments deleted per transaction: keeps each one short however much expires at once.
const BATCH: i64 = 1000;

impl Lifecycle {
    /// Runs the periodic pass until the task is dropped.
    pub async fn run_retention(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.inner.settings.retention_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.retention_pass().await {
                tracing::warn!(%err, "retention pass failed; retrying at the next one");
            }
        }
    }

    /// One pass over every source with recorded segments (deleted sources' retained recordings follow the
    /// default), if no other replica is running one.
    pub async fn retention_pass(&self) -> Result<RetentionReport, LifecycleError> {
        let db = &self.inner.db;
        // Every replica exports the object-state gauges, so any one scraped tells.
        match db.fleet_state().await {
            Ok(state) => self.inner.metrics.set_state(&state),
            Err(err) => tracing::debug!(%err, "object-state gauges not updated"),
        }
        let Some(lead) = db.try_lead(Work::Retention).await? else {
            return Ok(RetentionReport::default());
        };
        let result = self.sweep().await;
        lead.release().await;
        if let Ok((bytes, segments, pending)) = db.storage_totals().await {
            let metrics = &self.inner.metrics;
            metrics.stored_bytes.set(bytes);
            metrics.stored_segments.set(segments);
            metrics.pending_deletions.set(pending);
        }
        result
    }

    async fn sweep(&self) -> Result<RetentionReport, LifecycleError> {
        let (db, metrics) = (&self.inner.db, &self.inner.metrics);
        let default = self.default_retention();
        let mut total = RetentionReport::default();
        for stored in db.stored_sources().await? {
            let policy = stored.own.or(default);
            if let Some(cutoff) =
                policy.max_age_secs.and_then(TimeDelta::try_seconds).and_then(|age| Utc::now().checked_sub_signed(age))
            {
                let report = repeat(|| db.expire_segments(stored.source, cutoff, BATCH)).await?;
                if report.segments_deleted > 0 {
                    tracing::info!(source = %stored.source, segments = report.segments_deleted, bytes = report.bytes_deleted, recordings = report.recordings_deleted, %cutoff, reason = "retention", "expired recorded segments");
                }
                metrics.retention_deleted(DeletionReason::Retention, &report);
                add(&mut total, &report);
            }
            if policy.max_bytes.is_some() {
                let report = cap(db, stored.source, default.max_bytes).await?;
                metrics.retention_deleted(DeletionReason::Cap, &report);
                add(&mut total, &report);
            }
        }
        self.queued(total.segments_deleted);
        Ok(total)
    }
}

/// Brings one source within its cap (its own, else `default_max`).
pub(super) async fn cap(db: &Db, source: Uuid, default_max: Option<i64>) -> DbResult<RetentionReport> {
    let report = repeat(|| db.cap_segments(source, default_max, BATCH)).await?;
    if report.segments_deleted > 0 {
        tracing::info!(%source, segments = report.segments_deleted, bytes = report.bytes_deleted, recordings = report.recordings_deleted, reason = "cap", "deleted the oldest recorded segments over the storage cap");
    }
    Ok(report)
}

/// Runs a batch until it deletes nothing more.
async fn repeat<F, Fut>(mut batch: F) -> DbResult<RetentionReport>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DbResult<RetentionReport>>,
{
    let mut total = RetentionReport::default();
    loop {
        let report = batch().await?;
        if report.segments_deleted == 0 {
            return Ok(total);
        }
        add(&mut total, &report);
    }
}

fn add(total: &mut RetentionReport, report: &RetentionReport) {
    total.segments_deleted += report.segments_deleted;
    total.bytes_deleted += report.bytes_deleted;
    total.recordings_deleted += report.recordings_deleted;
}
