//! Forwarding live segments to the control node while streaming is on: in order per source, a bounded queue
//! per source (live video goes stale, so the oldest waiting segment is dropped when it is full), retries with
//! backoff.

use std::{collections::HashMap, collections::VecDeque, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use livemix_common::supervise::Supervisor;
use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    cache::CachedSegment,
    control_client::{ControlClient, ControlError},
    sources::Sources,
};

/// A retry gives up after this long: by then the segment has left every live playlist.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ForwardMetrics {
    pub forwarded: Counter,
    pub dropped: Family<Vec<(String, String)>, Counter>,
}

struct Queue {
    segments: Mutex<VecDeque<Arc<CachedSegment>>>,
    wake: Notify,
}

/// Why a segment was not forwarded.
enum NotSent {
    StreamingOff,
    Control(ControlError),
}

pub struct Forwarder {
    client: ControlClient,
    sources: Arc<Sources>,
    capacity: usize,
    queues: Mutex<HashMap<Uuid, Arc<Queue>>>,
    metrics: ForwardMetrics,
    supervisor: Supervisor,
}

impl Forwarder {
    pub fn new(
        client: ControlClient,
        sources: Arc<Sources>,
        capacity: usize,
        metrics: ForwardMetrics,
        supervisor: Supervisor,
    ) -> Self {
        Self { client, sources, capacity: capacity.max(1), queues: Mutex::default(), metrics, supervisor }
    }

    fn dropped(&self, reason: &str) {
        self.metrics.dropped.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    /// Queues a segment for the control node, starting the source's supervised worker on first use.
    pub fn enqueue(self: &Arc<Self>, segment: Arc<CachedSegment>) {
        let source = segment.id.source;
        let queue = {
            let mut queues = self.queues.lock();
            queues
                .entry(source)
                .or_insert_with(|| {
                    let queue = Arc::new(Queue { segments: Mutex::default(), wake: Notify::new() });
                    let (forwarder, worker_queue) = (Arc::clone(self), Arc::clone(&queue));
                    self.supervisor.spawn(format!("forwarder:{source}"), move || {
                        Arc::clone(&forwarder).run(Arc::clone(&worker_queue))
                    });
                    queue
                })
                .clone()
        };
        {
            let mut segments = queue.segments.lock();
            segments.push_back(segment);
            while segments.len() > self.capacity {
                if let Some(stale) = segments.pop_front() {
                    tracing::warn!(segment = %stale.id, name = %stale.name, "forward queue full; dropped the oldest segment");
                    self.dropped("queue_full");
                }
            }
        }
        queue.wake.notify_one();
    }

    async fn run(self: Arc<Self>, queue: Arc<Queue>) {
        loop {
            // Registered before looking, so a segment queued in between still wakes us.
            let woken = queue.wake.notified();
            let next = queue.segments.lock().pop_front();
            match next {
                Some(segment) => self.forward(&segment).await,
                None => woken.await,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(segment = %segment.id, name = %segment.name))]
    async fn forward(&self, segment: &CachedSegment) {
        let started = tokio::time::Instant::now();
        let attempt = || async {
            if !self.sources.streaming(&segment.source_name) {
                return Err(NotSent::StreamingOff);
            }
            self.client.forward_segment(segment.id.source, segment).await.map_err(NotSent::Control)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let sent = attempt
            .retry(backoff)
            .when(|err| matches!(err, NotSent::Control(e) if retryable(e)) && started.elapsed() <= GIVE_UP_AFTER)
            .notify(|err, delay| {
                if let NotSent::Control(err) = err {
                    tracing::warn!(%err, retry_in_ms = delay.as_millis() as u64, "forwarding failed; retrying");
                }
            })
            .await;
        match sent {
            Ok(()) => {
                self.metrics.forwarded.inc();
                tracing::debug!("forwarded");
            }
            Err(NotSent::StreamingOff) => {
                tracing::debug!("streaming turned off; not forwarding");
                self.dropped("streaming_off");
            }
            Err(NotSent::Control(err)) if !retryable(&err) => {
                tracing::warn!(%err, "control node refused the segment; dropped");
                self.dropped("refused");
            }
            Err(NotSent::Control(err)) => {
                tracing::warn!(%err, "giving up forwarding a stale segment");
                self.dropped("gave_up");
            }
        }
    }
}

/// The control node says streaming is off, or the source is gone, or the segment is bad: retrying cannot help.
fn retryable(err: &ControlError) -> bool {
    // The control node says streaming is off (409), the source is gone (404) or the segment is unacceptable.
    !matches!(err.status(), Some(409 | 404 | 400 | 413))
}
