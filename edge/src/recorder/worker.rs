//! One worker per source: delivers its spooled jobs in recording order. Each job is uploaded (retried with
//! backoff while the failure is transient), reported to the control node (retried until the bus takes it), and
//! only then deleted from the spool.
//!
//! A crash between the upload and the delete delivers the job again after the restart: the same key gets the
//! same bytes, and the control node's segment index is idempotent by key.

use std::{sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use livemix_common::{
    messages::{Envelope, Message},
    segment_id::SegmentId,
    store::StoreError,
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Shared, spool::Sidecar};

/// Longest wait between two attempts: an outage is noticed to be over within this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(MAX_BACKOFF)
        .without_max_times()
}

/// What a worker does next.
enum Next {
    Deliver(Box<Sidecar>),
    /// The oldest job is still being written.
    Wait,
    /// Nothing left: the queue is gone and the worker stops (the next job starts a new one).
    Stop,
}

/// Delivers `source`'s jobs until none is left or the recorder stops.
pub(super) async fn run(shared: Arc<Shared>, source: Uuid, wake: Arc<Notify>) {
    while !shared.cancel.is_cancelled() {
        match shared.next_job(source) {
            Next::Deliver(sidecar) => {
                if shared.cancel.run_until_cancelled(shared.deliver(*sidecar)).await.is_none() {
                    return;
                }
            }
            Next::Wait => tokio::select! {
                () = wake.notified() => {}
                () = shared.cancel.cancelled() => return,
            },
            Next::Stop => return,
        }
    }
}

impl Shared {
    /// The source's oldest job, once it is wholly on disk (a job still being written holds back the later ones,
    /// so they are delivered in order).
    fn next_job(&self, source: Uuid) -> Next {
        let mut state = self.state.lock();
        let Some(queue) = state.queues.get(&source) else { return Next::Stop };
        match queue.jobs.first_key_value() {
            Some((_, job)) if job.spooled => Next::Deliver(Box::new(job.sidecar.clone())),
            Some(_) => Next::Wait,
            None => {
                state.queues.remove(&source);
                Next::Stop
            }
        }
    }

    #[tracing::instrument(skip_all, fields(segment = %sidecar.id, key = %sidecar.segment.uri))]
    async fn deliver(self: &Arc<Self>, sidecar: Sidecar) {
        let id = sidecar.id;
        let key = sidecar.segment.uri.as_str();
        let data = match tokio::fs::read(self.spool.segment_path(&id)).await {
            Ok(data) => Bytes::from(data),
            Err(err) => {
                tracing::error!(%err, "cannot read a spooled segment; moving it to failed/");
                self.metrics.failure("spool");
                self.blocking(move |shared| shared.reject(id)).await;
                return;
            }
        };
        let uploaded = (|| self.store.put(key, data.clone()))
            .retry(backoff())
            .when(|err: &StoreError| !err.is_permanent())
            .notify(|err, delay| {
                self.metrics.failure("upload");
                tracing::warn!(%err, retry_in_ms = delay.as_millis() as u64, "recording upload failed; retrying");
            })
            .await;
        if let Err(err) = uploaded {
            tracing::error!(%err, key, "the object store refused a recorded segment for good; moved to failed/");
            self.metrics.failure("rejected");
            self.blocking(move |shared| shared.reject(id)).await;
            return;
        }
        drop(data);

        // Recordings may join the job while it is reported: report again for them before deleting it.
        let mut reported = Vec::new();
        let mut to_report = sidecar.recording_ids;
        while !to_report.is_empty() {
            let message = Envelope::new(Message::NewVideoRecordingSegment {
                recording_ids: to_report.clone(),
                segment: sidecar.segment.clone(),
            });
            let published = (|| self.bus.publish(&self.control_topic, &message))
                .retry(backoff())
                .notify(|err, delay| {
                    self.metrics.failure("report");
                    tracing::warn!(%err, retry_in_ms = delay.as_millis() as u64, "recording report failed; retrying");
                })
                .await;
            if let Err(err) = published {
                // Not reached (retried until it succeeds); the job stays spooled for the next start.
                tracing::error!(%err, "recorded segment not reported");
                return;
            }
            reported.extend(to_report);
            let so_far = reported.clone();
            to_report = self.blocking(move |shared| shared.forget(id, Some(&so_far))).await.unwrap_or_default();
        }
        self.metrics.uploaded.inc();
        tracing::info!(recordings = ?reported, "recorded segment uploaded and reported");
    }

    /// Runs file work on the blocking pool; `None` if it panicked.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Shared) -> T + Send + 'static,
    ) -> Option<T> {
        let shared = Arc::clone(self);
        self.tasks.spawn_blocking(move || work(&shared)).await.ok()
    }

    /// Moves a job the store refused for good to `failed/` (blocking). Its bytes still count toward the budget.
    fn reject(&self, id: SegmentId) {
        let _files = self.files.lock();
        {
            let mut state = self.state.lock();
            state.remove(&id);
            self.update_gauges(&state);
        }
        if let Err(err) = self.spool.move_to_failed(&id) {
            tracing::error!(segment = %id, %err, "could not move a refused segment to failed/; it is tried again at the next start");
        }
    }
}
