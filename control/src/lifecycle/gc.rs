//! Garbage collection: walks the bucket under the prefix and the segment index side by side, both in byte order,
//! so memory stays at one page of each however large the store. An object no segment refers to, older than the
//! grace period (its index report may still be on its way) and not already queued, is an orphan; an indexed
//! segment whose object is not there is reported as missing, never dropped.

use std::{collections::VecDeque, time::Duration};

use chrono::{TimeDelta, Utc};
use livemix_common::management_api::GcReport;

use super::{Lifecycle, LifecycleError};

/// Objects listed (and index rows read) per page.
const PAGE: usize = 1000;
/// Keys a report lists of each kind; the counts cover them all.
const REPORTED_KEYS: usize = 1000;

impl Lifecycle {
    /// Runs the periodic scan (deleting only with `--gc-delete`) until the task is dropped; off when the
    /// interval is 0.
    pub async fn run_gc(self) {
        let every = self.inner.settings.gc_interval_secs;
        if every == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let grace = Duration::from_secs(self.inner.settings.gc_grace_secs);
            let prefix = self.gc_prefix();
            match self.collect_garbage(&prefix, grace, !self.inner.settings.gc_delete).await {
                Ok(report) => tracing::info!(
                    listed = report.listed,
                    orphans = report.orphan_count,
                    orphan_bytes = report.orphan_bytes,
                    queued = report.queued,
                    missing = report.missing_count,
                    "garbage collection scan done"
                ),
                Err(err) => tracing::warn!(%err, "garbage collection scan failed"),
            }
        }
    }

    /// The prefix every recorded segment's key starts with.
    pub fn gc_prefix(&self) -> String {
        format!("{}/", self.inner.settings.object_prefix.trim_end_matches('/'))
    }

    /// One scan of the objects under `prefix` (which must lie under [`Self::gc_prefix`]). Out of `dry_run`, the
    /// orphans are queued for deletion (reason `orphan`) and the worker deletes them.
    #[tracing::instrument(skip(self))]
    pub async fn collect_garbage(
        &self,
        prefix: &str,
        grace: Duration,
        dry_run: bool,
    ) -> Result<GcReport, LifecycleError> {
        let (db, store, metrics) = (&self.inner.db, &self.inner.store, &self.inner.metrics);
        let young = Utc::now() - TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
        let mut report = GcReport { dry_run, ..GcReport::default() };
        let mut index = IndexCursor::new(prefix);
        let mut after: Option<String> = None;
        loop {
            let page = store.list(prefix, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            report.listed += page.len() as u64;
            let mut candidates = Vec::new();
            for object in page {
                // Index rows before this key have no object.
                while let Some(uri) = index.peek_before(db, &object.key).await? {
                    missing(&mut report, uri);
                }
                if index.take_if(db, &object.key).await? {
                    continue;
                }
                if object.last_modified.is_none_or(|modified| modified < young) {
                    candidates.push((object.key, i64::try_from(object.size).unwrap_or(i64::MAX)));
                }
            }
            if candidates.is_empty() {
                continue;
            }
            let keys: Vec<String> = candidates.iter().map(|(key, _)| key.clone()).collect();
            let pending = db.pending_keys(&keys).await?;
            candidates.retain(|(key, _)| !pending.contains(key));
            for (key, size) in &candidates {
                report.orphan_count += 1;
                report.orphan_bytes += u64::try_from(*size).unwrap_or(0);
                if report.orphans.len() < REPORTED_KEYS {
                    report.orphans.push(key.clone());
                }
            }
            if !dry_run {
                report.queued += db.queue_orphans(&candidates).await?;
            }
        }
        while let Some(uri) = index.next(db).await? {
            missing(&mut report, uri);
        }
        metrics.orphans_found.inc_by(report.orphan_count);
        metrics.missing_objects_found.inc_by(report.missing_count);
        for key in &report.missing {
            tracing::warn!(key, "an indexed segment's object is missing from the store");
        }
        self.queued(report.queued);
        Ok(report)
    }
}

fn missing(report: &mut GcReport, uri: String) {
    report.missing_count += 1;
    if report.missing.len() < REPORTED_KEYS {
        report.missing.push(uri);
    }
}

/// The segment index's object keys under a prefix, in byte order, a page at a time.
struct IndexCursor {
    prefix: String,
    after: String,
    page: VecDeque<String>,
    done: bool,
}

impl IndexCursor {
    fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), after: prefix.to_owned(), page: VecDeque::new(), done: false }
    }

    async fn fill(&mut self, db: &crate::db::Db) -> Result<(), LifecycleError> {
        if self.page.is_empty() && !self.done {
            let keys = db.segment_keys_after(&self.after, PAGE as i64).await?;
            self.done = keys.len() < PAGE;
            if let Some(last) = keys.last() {
                self.after.clone_from(last);
            }
            // Past the prefix, nothing more of ours follows.
            let ours: Vec<String> = keys.into_iter().take_while(|key| key.starts_with(&self.prefix)).collect();
            if ours.len() < PAGE {
                self.done = true;
            }
            self.page.extend(ours);
        }
        Ok(())
    }

    async fn next(&mut self, db: &crate::db::Db) -> Result<Option<String>, LifecycleError> {
        self.fill(db).await?;
        Ok(self.page.pop_front())
    }

    /// The next key if it sorts before `key`.
    async fn peek_before(&mut self, db: &crate::db::Db, key: &str) -> Result<Option<String>, LifecycleError> {
        self.fill(db).await?;
        if self.page.front().is_some_and(|next| next.as_bytes() < key.as_bytes()) {
            return Ok(self.page.pop_front());
        }
        Ok(None)
    }

    /// Consumes the next key if it is `key`.
    async fn take_if(&mut self, db: &crate::db::Db, key: &str) -> Result<bool, LifecycleError> {
        self.fill(db).await?;
        if self.page.front().is_some_and(|next| next == key) {
            self.page.pop_front();
            return Ok(true);
        }
        Ok(false)
    }
}
