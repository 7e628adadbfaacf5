//! Forwarding live segments to the control node while streaming is on: in order per source, a bounded queue
//! per source (live video goes stale, so the oldest waiting segment is dropped when it is full), retries with
//! backoff.
//!
//! The control node lists what it is sent and renders the discontinuities it is told of. Each segment's record
//! says whether it continues the source's previous segment; what the control node got may skip some (streaming
//! was off, a segment was dropped here), so a segment is also sent as following a discontinuity when it starts a
//! time gap ([`is_gap`]) away from the last one this edge forwarded for its source.

use std::{collections::HashMap, collections::VecDeque, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use livemix_common::{segment::SegmentRecord, supervise::Supervisor};
use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    cache::CachedSegment,
    control_client::{ControlClient, ControlError},
    identity::{Span, is_gap},
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
    /// Where the last segment this process forwarded for the source ends.
    last_sent_end: Mutex<Option<DateTime<Utc>>>,
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
        let source = segment.record.id.source;
        let queue = {
            let mut queues = self.queues.lock();
            queues
                .entry(source)
                .or_insert_with(|| {
                    let queue = Arc::new(Queue {
                        segments: Mutex::default(),
                        wake: Notify::new(),
                        last_sent_end: Mutex::default(),
                    });
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
                    tracing::warn!(segment = %stale.record.id, name = %stale.record.name, "forward queue full; dropped the oldest segment");
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
                Some(segment) => self.forward(&queue, &segment).await,
                None => woken.await,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(segment = %segment.record.id, name = %segment.record.name))]
    async fn forward(&self, queue: &Queue, segment: &CachedSegment) {
        let started = tokio::time::Instant::now();
        let record = as_forwarded(&segment.record, *queue.last_sent_end.lock());
        let attempt = || async {
            if !self.sources.streaming(&segment.source_name) {
                return Err(NotSent::StreamingOff);
            }
            self.client.forward_segment(&record, segment.data.clone()).await.map_err(NotSent::Control)
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
                *queue.last_sent_end.lock() = Some(record.end_ts());
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

/// The record sent for a segment: its own, following a discontinuity also when it starts a time gap away from
/// the end of the last segment sent for its source (`last_sent_end`; none yet in this process: its own flag).
fn as_forwarded(record: &SegmentRecord, last_sent_end: Option<DateTime<Utc>>) -> SegmentRecord {
    let span = Span { start_ts: record.start_ts, length_ms: record.length_ms };
    let skipped = last_sent_end.is_some_and(|end| is_gap(end, &span));
    SegmentRecord { discontinuity: record.discontinuity || skipped, ..record.clone() }
}

/// The control node says streaming is off, or the source is gone, or the segment is bad: retrying cannot help.
fn retryable(err: &ControlError) -> bool {
    // The control node says streaming is off (409), the source is gone (404) or the segment is unacceptable.
    !matches!(err.status(), Some(409 | 404 | 400 | 413))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use livemix_common::segment_id::SegmentId;

    use super::*;

    #[test]
    fn a_segment_sent_after_a_pause_follows_a_discontinuity() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = SegmentId { source: Uuid::nil(), run: ulid::Ulid::nil(), seq: 30 };
        let record =
            SegmentRecord { id, name: "s30.ts".into(), start_ts: start, length_ms: 2000, discontinuity: false };
        assert_eq!(as_forwarded(&record, None), record, "the first of this process: as recorded");
        assert!(!as_forwarded(&record, Some(start)).discontinuity, "continues the last one sent");
        assert!(as_forwarded(&record, Some(start - TimeDelta::seconds(20))).discontinuity, "streaming was off a while");
        let flagged = SegmentRecord { discontinuity: true, ..record };
        assert!(as_forwarded(&flagged, Some(start)).discontinuity, "the edge's own flag stays");
    }
}
