//! The message bus between edges and control nodes.
//!
//! Production uses Google Cloud Pub/Sub (`pubsub::PubSubBus`, with the `pubsub` feature); [`memory::MemoryBus`] has
//! the same semantics (topics fan out to subscriptions, unacknowledged messages come back) inside one process, for
//! unit tests and the standalone binary.

pub mod memory;
#[cfg(feature = "pubsub")]
pub mod pubsub;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::messages::Envelope;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("publishing {kind} to topic {topic}: {source}")]
    Publish { topic: String, kind: &'static str, source: BoxError },
    #[error("subscribing to {subscription}: {source}")]
    Subscribe { subscription: String, source: BoxError },
    #[error("creating {what} {name}: {source}")]
    Admin { what: &'static str, name: String, source: BoxError },
    #[error("deleting subscription {subscription}: {source}")]
    Delete { subscription: String, source: BoxError },
    #[error("message bus unreachable: {0}")]
    Unreachable(BoxError),
    /// The configuration asks for a backend this binary was built without (a cargo feature left off).
    #[error("this binary was built without {backend} support; build with --features cloud or {instead}")]
    NotBuiltIn { backend: &'static str, instead: &'static str },
}

/// A received message; acknowledge it once handled, or it is delivered again.
pub struct Delivery {
    pub envelope: Envelope,
    acker: Box<dyn FnOnce(bool) + Send>,
}

impl Delivery {
    pub fn new(envelope: Envelope, acker: impl FnOnce(bool) + Send + 'static) -> Self {
        Self { envelope, acker: Box::new(acker) }
    }

    /// Handled: never deliver again.
    pub fn ack(self) {
        (self.acker)(true)
    }

    /// Not handled: deliver again later.
    pub fn nack(self) {
        (self.acker)(false)
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("envelope", &self.envelope).finish_non_exhaustive()
    }
}

#[async_trait]
pub trait MessageBus: Send + Sync + 'static {
    /// Publishes one message; returns once the bus has accepted it.
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), BusError>;

    /// Receives from an existing subscription until the receiver is dropped. Messages that are not JSON
    /// envelopes are logged and acknowledged (dropped), so one bad message cannot block a subscription.
    async fn subscribe(&self, subscription: &str) -> Result<mpsc::Receiver<Delivery>, BusError>;

    /// Creates the topic unless it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError>;

    /// Creates the subscription on `topic` unless it exists.
    async fn ensure_subscription(&self, subscription: &str, topic: &str) -> Result<(), BusError>;

    /// Creates, afresh, a subscription on `topic` that only this process reads and deletes when it stops (a
    /// control replica's replies, an edge's commands). One left by an earlier process of the same name is deleted
    /// first, with what it held: requests whose senders gave up long ago. Where the bus can, such a subscription
    /// also expires by itself after a while unread, so one left behind by a killed process does not stay forever.
    async fn renew_owned_subscription(&self, subscription: &str, topic: &str) -> Result<(), BusError> {
        self.delete_subscription(subscription).await?;
        self.ensure_subscription(subscription, topic).await
    }

    /// Deletes the subscription; one that does not exist counts as deleted. Its messages are gone with it.
    async fn delete_subscription(&self, subscription: &str) -> Result<(), BusError>;

    /// Whether the bus answers (for readiness probes).
    async fn ping(&self) -> Result<(), BusError>;
}

pub type SharedBus = Arc<dyn MessageBus>;

/// Which bus to use and where it is.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// Google Cloud project that holds the Pub/Sub topics.
    #[arg(long, env = "PUBSUB_PROJECT_ID", default_value = "livemix-dev")]
    pub pubsub_project: String,
    /// host:port of a Pub/Sub emulator; when set, LiveMix talks to it without credentials.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// Pub/Sub API endpoint when no emulator is used.
    #[arg(long, env = "PUBSUB_ENDPOINT")]
    pub pubsub_endpoint: Option<String>,
    /// Create the topics and subscriptions this process uses if they are missing (emulator, dev clusters).
    #[arg(long, env = "LIVEMIX_CREATE_TOPICS")]
    pub create_topics: bool,
    /// Use an in-process bus instead of Pub/Sub (tests and single-process experiments only: other processes
    /// cannot reach it).
    #[arg(long, env = "LIVEMIX_IN_PROCESS_BUS")]
    pub in_process_bus: bool,
}

impl BusArgs {
    /// The in-process bus when asked for, else Pub/Sub. A binary built without the `pubsub` feature refuses the
    /// latter with [`BusError::NotBuiltIn`].
    pub async fn connect(&self) -> Result<SharedBus, BusError> {
        if self.in_process_bus {
            return Ok(Arc::new(memory::MemoryBus::default()));
        }
        self.connect_pubsub().await
    }

    #[cfg(feature = "pubsub")]
    async fn connect_pubsub(&self) -> Result<SharedBus, BusError> {
        let bus = pubsub::PubSubBus::connect(pubsub::PubSubConfig {
            project: self.pubsub_project.clone(),
            emulator_host: self.pubsub_emulator_host.clone(),
            endpoint: self.pubsub_endpoint.clone(),
        })
        .await?;
        Ok(Arc::new(bus))
    }

    #[cfg(not(feature = "pubsub"))]
    async fn connect_pubsub(&self) -> Result<SharedBus, BusError> {
        Err(BusError::NotBuiltIn {
            backend: "Pub/Sub",
            instead: "set LIVEMIX_IN_PROCESS_BUS=true (--in-process-bus: one process only)",
        })
    }

    /// Whether this process creates (and so owns) its topics and subscriptions.
    pub fn manages_topics(&self) -> bool {
        self.create_topics || self.in_process_bus
    }

    /// Makes sure `subscription` on `topic` exists when `--create-topics` is set.
    pub async fn prepare(&self, bus: &dyn MessageBus, topic: &str, subscription: Option<&str>) -> Result<(), BusError> {
        if self.manages_topics() {
            bus.ensure_topic(topic).await?;
            if let Some(subscription) = subscription {
                bus.ensure_subscription(subscription, topic).await?;
            }
        }
        Ok(())
    }
}

/// The waits before re-subscribing after subscription streams failed in a row: 200 ms doubling to 10 s.
#[cfg(feature = "pubsub")]
pub(crate) fn resubscribe_delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(10))
        .without_max_times()
        .build()
}
