//! Messages edges publish to the control node: recorded segments. Pub/Sub keeps them while every replica is
//! down and redelivers until one acknowledges, so handling is idempotent (the object key identifies a segment).
//!
//! Each failure is sorted once. A permanent one (the source or recording was deleted, the data breaks a rule)
//! would fail the same way on every redelivery: the message is acknowledged, logged with its id and counted
//! in `inbox_dropped_total{reason}`. A transient one (PostgreSQL down or overloaded) is retried: the inbox waits
//! an exponentially growing delay, capped, before handing the message back, so an outage never makes it spin.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use livemix_common::{
    bus::Delivery,
    digest::is_sha256_hex,
    messages::{Envelope, Message},
    model::{SegmentInfo, validate_segment_name},
    segment_id::{SegmentId, object_key},
    telemetry::Metrics,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tokio::sync::mpsc;

use crate::{
    db::{Db, DbError},
    lifecycle::Lifecycle,
};

/// First wait after a transient failure; it doubles with each one in a row.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// The longest wait between retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    /// Never going to succeed: acknowledge it and count why.
    Dropped(&'static str),
    /// May succeed later: hand it back after a delay.
    Retry,
}

/// The consumer of the control topic's shared subscription.
pub struct Inbox {
    db: Db,
    lifecycle: Lifecycle,
    dropped: Family<DropLabels, Counter>,
    retries: Counter,
    delay: RetryDelay,
}

impl Inbox {
    pub fn new(db: Db, lifecycle: Lifecycle, metrics: &Metrics) -> Self {
        Self {
            db,
            lifecycle,
            dropped: metrics.register(
                "inbox_dropped",
                "Messages on the control topic acknowledged without effect, by reason",
                Family::default(),
            ),
            retries: metrics.register(
                "inbox_retries",
                "Messages on the control topic handed back after a transient failure",
                Counter::default(),
            ),
            delay: RetryDelay::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY),
        }
    }

    /// Other delays between retries (tests).
    pub fn with_retry_delays(mut self, first: Duration, max: Duration) -> Self {
        self.delay = RetryDelay::new(first, max);
        self
    }

    /// Handles deliveries one at a time until the subscription closes.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Delivery>) {
        while let Some(delivery) = inbox.recv().await {
            let id = delivery.envelope.id;
            match self.handle(&delivery.envelope).await {
                Outcome::Stored => {
                    self.delay.reset();
                    delivery.ack();
                }
                Outcome::Dropped(reason) => {
                    self.dropped.get_or_create(&DropLabels { reason }).inc();
                    delivery.ack();
                }
                Outcome::Retry => {
                    self.retries.inc();
                    let wait = self.delay.next();
                    tracing::debug!(message_id = %id, ?wait, "handing the message back after a pause");
                    // Waiting here, not only before redelivery, is what keeps an outage from spinning: the next
                    // message would fail the same way.
                    tokio::time::sleep(wait).await;
                    delivery.nack();
                }
            }
        }
        tracing::warn!("control topic subscription closed");
    }

    #[tracing::instrument(skip_all, fields(message_id = %envelope.id, kind = envelope.body.kind()))]
    async fn handle(&self, envelope: &Envelope) -> Outcome {
        let Message::NewVideoRecordingSegment { recording_ids, segment } = &envelope.body else {
            tracing::warn!("unexpected message on the control topic; dropped");
            return Outcome::Dropped("unexpected_message");
        };
        if let Err(problem) = check_segment(segment, &self.lifecycle.settings().object_prefix) {
            tracing::warn!(segment = %segment.name, %problem, "invalid recorded segment; dropped");
            return Outcome::Dropped("invalid_segment");
        }
        match self.db.add_recorded_segment(recording_ids, segment).await {
            Ok(linked) => {
                if linked.len() < recording_ids.len() {
                    tracing::debug!(?recording_ids, ?linked, segment = %segment.name, "segment linked to fewer recordings than named (deleted, or of another source)");
                }
                tracing::debug!(segment = %segment.name, uri = %segment.uri, ?linked, "recorded segment stored");
                // The segment is stored either way; a cap not enforced now is at the next segment or pass.
                if let Err(err) = self.lifecycle.enforce_cap(segment.source).await {
                    tracing::warn!(%err, source = %segment.source, "could not enforce the storage cap");
                }
                Outcome::Stored
            }
            Err(err) => classify(&err, segment),
        }
    }
}

/// Whether to drop or retry a message whose segment the database did not take.
fn classify(err: &DbError, segment: &SegmentInfo) -> Outcome {
    let reason = match err {
        DbError::NotFound { .. } => "unknown_recording",
        DbError::Rejected { reason: "foreign_key", .. } => "source_deleted",
        DbError::Rejected { reason, .. } => reason,
        DbError::Conflict(_) => "conflict",
        DbError::Unavailable(_) | DbError::Internal(_) | DbError::Migrate(_) => {
            tracing::warn!(%err, segment = %segment.name, "storing a recorded segment failed; will retry");
            return Outcome::Retry;
        }
    };
    tracing::warn!(%err, segment = %segment.name, source = %segment.source, reason, "recorded segment dropped");
    Outcome::Dropped(reason)
}

/// What the database cannot check: a name that is one safe path component, no negative sizes, and the object
/// key the edge derives from the segment's identity. A report naming any other key (another source's object, say)
/// would let deleting this recording delete that object.
fn check_segment(segment: &SegmentInfo, prefix: &str) -> Result<(), String> {
    validate_segment_name(&segment.name)?;
    let expected = match segment.run {
        Some(run) => {
            let seq = u64::try_from(segment.seq).map_err(|_| format!("negative sequence number {}", segment.seq))?;
            SegmentId { source: segment.source, run, seq }.object_key(prefix)
        }
        None => object_key(prefix, segment.source, &segment.name),
    };
    if segment.uri != expected {
        return Err(format!("object key {:?} is not this segment's ({expected:?})", segment.uri));
    }
    if let Some(hash) = &segment.sha256
        && !is_sha256_hex(hash)
    {
        return Err(format!("sha256 {:?} is not 64 lowercase hex digits", hash.chars().take(80).collect::<String>()));
    }
    if segment.length_ms < 0 || segment.size < 0 || segment.seq < 0 {
        return Err(format!(
            "negative length ({}), size ({}) or sequence number ({})",
            segment.length_ms, segment.size, segment.seq
        ));
    }
    Ok(())
}

/// The pause before handing back a message after a transient failure: doubling from `first` up to `max`, back
/// to `first` after a success.
struct RetryDelay {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    max: Duration,
}

impl RetryDelay {
    fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new().with_min_delay(first).with_max_delay(max).without_max_times();
        Self { current: builder.build(), builder, max }
    }

    fn next(&mut self) -> Duration {
        self.current.next().unwrap_or(self.max)
    }

    fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use parking_lot::Mutex;
    use sqlx::postgres::PgPoolOptions;
    use tokio::time::Instant;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_and_reset() {
        let mut delay = RetryDelay::new(Duration::from_millis(200), Duration::from_secs(30));
        let millis: Vec<u128> = (0..10).map(|_| delay.next().as_millis()).collect();
        assert_eq!(millis[..4], [200, 400, 800, 1600]);
        assert_eq!(millis[9], 30_000);
        assert!(millis.windows(2).all(|w| w[0] <= w[1]));
        delay.reset();
        assert_eq!(delay.next().as_millis(), 200);
    }

    fn segment() -> SegmentInfo {
        let now = Utc::now();
        let (source, run) = (Uuid::new_v4(), ulid::Ulid::new());
        SegmentInfo {
            name: "index0.ts".into(),
            source,
            run: Some(run),
            seq: 0,
            discontinuity: false,
            start_ts: now,
            end_ts: now,
            length_ms: 1000,
            size: 10,
            uri: SegmentId { source, run, seq: 0 }.object_key("recordings"),
            sha256: None,
        }
    }

    #[test]
    fn permanent_failures_are_dropped_and_outages_retried() {
        let s = segment();
        let missing = DbError::NotFound { what: "recording", id: "x".into() };
        assert_eq!(classify(&missing, &s), Outcome::Dropped("unknown_recording"));
        let fk = DbError::Rejected { reason: "foreign_key", source: sqlx::Error::RowNotFound };
        assert_eq!(classify(&fk, &s), Outcome::Dropped("source_deleted"));
        let check = DbError::Rejected { reason: "check", source: sqlx::Error::RowNotFound };
        assert_eq!(classify(&check, &s), Outcome::Dropped("check"));
        assert_eq!(classify(&DbError::Unavailable(sqlx::Error::PoolTimedOut), &s), Outcome::Retry);
        assert_eq!(classify(&DbError::from(sqlx::Error::PoolTimedOut), &s), Outcome::Retry);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&DbError::from(sqlx::Error::Io(refused)), &s), Outcome::Retry);

        assert!(check_segment(&s, "recordings").is_ok());
        assert!(check_segment(&s, "other").is_err(), "another prefix");
        assert!(check_segment(&SegmentInfo { name: "../x.ts".into(), ..segment() }, "recordings").is_err());
        assert!(check_segment(&SegmentInfo { length_ms: -1, ..segment() }, "recordings").is_err());
        assert!(check_segment(&SegmentInfo { uri: String::new(), ..segment() }, "recordings").is_err());
        let elsewhere = segment();
        assert!(
            check_segment(&SegmentInfo { uri: elsewhere.uri, ..segment() }, "recordings").is_err(),
            "another's object"
        );
        let legacy = SegmentInfo { run: None, uri: object_key("recordings", s.source, "index0.ts"), ..s.clone() };
        assert!(check_segment(&legacy, "recordings").is_ok(), "keys of edges before segment ids");
    }

    /// A delivery that records whether (and when) it was acknowledged.
    fn delivery(body: Message, log: &Arc<Mutex<Vec<(bool, Instant)>>>) -> Delivery {
        let log = log.clone();
        Delivery::new(Envelope::new(body), move |acked| log.lock().push((acked, Instant::now())))
    }

    #[tokio::test]
    async fn with_the_database_down_messages_come_back_after_growing_pauses() {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(50))
            .connect_lazy("postgres://livemix@127.0.0.1:1/livemix")
            .unwrap();
        let metrics = Metrics::new("test");
        let db = Db::from_pool(pool, Duration::from_secs(30));
        let store = Arc::new(livemix_common::store::local::LocalStore::new(std::env::temp_dir().join("livemix-none")));
        let lifecycle = Lifecycle::new(db.clone(), store, crate::config::LifecycleSettings::default(), &metrics);
        let inbox = Inbox::new(db, lifecycle, &metrics)
            .with_retry_delays(Duration::from_millis(100), Duration::from_millis(400));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(inbox.run(rx));
        let log = Arc::new(Mutex::new(Vec::new()));
        let body = Message::NewVideoRecordingSegment { recording_ids: vec!["r".into()], segment: segment() };
        let started = Instant::now();
        for _ in 0..4 {
            tx.send(delivery(body.clone(), &log)).await.unwrap();
        }
        // A message the database never sees is dropped at once, however the database is.
        tx.send(delivery(Message::ChangeStreamState { source_id: Uuid::nil(), new_state: true }, &log)).await.unwrap();
        drop(tx);
        task.await.unwrap();

        let log = log.lock().clone();
        let acks: Vec<bool> = log.iter().map(|(acked, _)| *acked).collect();
        assert_eq!(acks, [false, false, false, false, true], "outage: handed back; unexpected kind: dropped");
        // 100 + 200 + 400 + 400 ms of pauses (plus four failed connects), never a spin.
        let elapsed = log[3].1 - started;
        assert!(elapsed >= Duration::from_millis(1100), "paused {elapsed:?}");
        let text = metrics.encode();
        assert!(text.contains("test_inbox_retries_total 4"), "{text}");
        assert!(text.contains("test_inbox_dropped_total{reason=\"unexpected_message\"} 1"), "{text}");
    }
}
