//! The deletion worker: carries out the object deletions the database recorded, one replica at a time (see
//! [`crate::db::lifecycle::Leadership`]), in batches of one `DeleteObjects` call, and retries what the store
//! refuses with a growing delay. A deletion is forgotten only once the store confirmed it, so a control node
//! killed at any moment, or a store that stops answering, delays deletions and loses none.

use std::{collections::HashSet, time::Duration};

use chrono::{TimeDelta, Utc};

use super::{Lifecycle, LifecycleError};
use crate::db::lifecycle::Work;

/// Batches one turn may carry out before it lets another replica have a go.
const BATCHES_PER_TURN: usize = 50;
/// First delay after a failed deletion; doubles with each failure of the same object.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest delay between tries of one object.
const MAX_RETRY: Duration = Duration::from_secs(3600);

impl Lifecycle {
    /// Runs the worker until the task is dropped.
    pub async fn run_deletions(self) {
        let interval = Duration::from_secs(self.inner.settings.deletion_interval_secs);
        loop {
            match self.delete_due().await {
                // A full turn: there may be more, but give other work (and replicas) the lock first.
                Ok(done) if done >= BATCHES_PER_TURN * usize::from(self.inner.settings.deletion_batch_size) => {
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "object deletion pass failed; retrying later"),
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Carries out the deletions due now, if no other replica is; returns how many objects were tried.
    pub async fn delete_due(&self) -> Result<usize, LifecycleError> {
        let Some(lead) = self.inner.db.try_lead(Work::Deletions).await? else {
            return Ok(0);
        };
        let mut tried = 0;
        let mut result = Ok(());
        for _ in 0..BATCHES_PER_TURN {
            match self.delete_batch().await {
                Ok(0) => break,
                Ok(n) => tried += n,
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        lead.release().await;
        if let Ok((_, _, pending)) = self.inner.db.storage_totals().await {
            self.inner.metrics.pending_deletions.set(pending);
        }
        result.map(|()| tried)
    }

    async fn delete_batch(&self) -> Result<usize, LifecycleError> {
        let (db, metrics) = (&self.inner.db, &self.inner.metrics);
        let due = db.due_deletions(i64::from(self.inner.settings.deletion_batch_size)).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = due.iter().map(|d| d.key.clone()).collect();
        // A redelivered report may have brought a segment back since its deletion was recorded.
        let referenced: HashSet<String> = db.referenced_keys(&keys).await?.into_iter().collect();
        if !referenced.is_empty() {
            for key in &referenced {
                tracing::warn!(key, "object deletion cancelled: a recording refers to the segment again");
            }
            db.finish_deletions(&referenced.iter().cloned().collect::<Vec<_>>()).await?;
        }
        let todo: Vec<_> = due.into_iter().filter(|d| !referenced.contains(&d.key)).collect();
        let todo_keys: Vec<String> = todo.iter().map(|d| d.key.clone()).collect();
        let results = if todo_keys.is_empty() {
            Vec::new()
        } else {
            metrics.delete_requests.inc();
            self.inner.store.delete_many(&todo_keys).await
        };
        let mut done = Vec::with_capacity(todo.len());
        for (deletion, result) in todo.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(key = deletion.key, reason = deletion.reason.as_str(), "object deleted");
                    metrics.object_deleted(deletion.reason);
                    done.push(deletion.key.clone());
                }
                Err(err) => {
                    metrics.deletion_failures.inc();
                    let wait = retry_delay(deletion.attempts);
                    tracing::warn!(key = deletion.key, reason = deletion.reason.as_str(), %err, ?wait, "object deletion failed; will retry");
                    let when = Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1));
                    db.defer_deletion(&deletion.key, &err.to_string(), when).await?;
                }
            }
        }
        // Forgotten only now: a crash before this line deletes the same objects again, which is harmless.
        db.finish_deletions(&done).await?;
        Ok(todo.len() + referenced.len())
    }
}

/// `FIRST_RETRY` doubled per earlier failure, capped at `MAX_RETRY`.
fn retry_delay(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts).unwrap_or(0).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(0), Duration::from_secs(5));
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(30), MAX_RETRY);
        assert_eq!(retry_delay(-3), Duration::from_secs(5));
    }
}
