//! Google Cloud Pub/Sub bus, built on the official `google-cloud-pubsub` crate.
//!
//! Topic and subscription names handed to [`MessageBus`] are short ids; they live in the configured project.
//! The crate does not read `PUBSUB_EMULATOR_HOST` itself, so [`PubSubConfig::emulator_host`] switches every
//! client to `http://{host}` with anonymous credentials.

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use google_cloud_gax::{error::rpc::Code, retry_policy::RetryPolicyExt};
use google_cloud_pubsub::{
    client::{BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin},
    model::{ExpirationPolicy, Message as PubsubMessage},
    retry_policy::RetryableErrors,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{BoxError, BusError, Delivery, MessageBus, resubscribe_delays};
use crate::messages::Envelope;

/// How long a publish may keep retrying transient failures before the caller sees an error. Requests on the bus
/// have their own reply timeouts, so a publish must not hang for the crate's default of 10 minutes.
const PUBLISH_TIME_LIMIT: Duration = Duration::from_secs(30);
/// Upper bound for one topic/subscription admin call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Ack deadline of subscriptions we create: long enough for a handler that uploads a segment, short enough that
/// a crashed consumer's messages come back soon. The subscriber extends leases while a message is held anyway.
const ACK_DEADLINE_SECONDS: i32 = 30;
/// Subscriptions one process owns (a control replica's replies, an edge's commands) expire after this long
/// without a reader, so one left behind by a killed process does not collect messages forever. One day is
/// Pub/Sub's minimum; the emulator ignores it.
const OWNED_TTL_SECONDS: i64 = 24 * 60 * 60;
/// How far the subscriber extends the lease of a held message each time (the crate's minimum). This is also how
/// soon messages held by a vanished consumer come back: crashes here, and on the emulator every closed stream
/// (it fails to clean them up and keeps handing them messages).
const MAX_LEASE_EXTENSION: Duration = Duration::from_secs(10);
/// Messages one stream holds unanswered before the server stops sending more: enough to keep the consumer busy,
/// few enough not to hoard messages other replicas could handle.
const MAX_OUTSTANDING_MESSAGES: i64 = 256;
/// Deliveries buffered between the stream and the consumer; the stream waits when the consumer lags.
const DELIVERY_BUFFER: usize = 64;

#[derive(Debug, Clone)]
pub struct PubSubConfig {
    pub project: String,
    /// `host:port` of a Pub/Sub emulator: plain HTTP, no credentials.
    pub emulator_host: Option<String>,
    /// API endpoint when no emulator is used (default: Google's).
    pub endpoint: Option<String>,
}

/// Where the clients connect and with which credentials.
#[derive(Clone)]
struct Connection {
    endpoint: Option<String>,
    /// `None`: Application Default Credentials.
    credentials: Option<google_cloud_auth::credentials::Credentials>,
}

impl Connection {
    fn from_config(config: &PubSubConfig) -> Self {
        match &config.emulator_host {
            Some(host) => {
                let endpoint = if host.contains("://") { host.clone() } else { format!("http://{host}") };
                Self {
                    endpoint: Some(endpoint),
                    credentials: Some(google_cloud_auth::credentials::anonymous::Builder::new().build()),
                }
            }
            None => Self { endpoint: config.endpoint.clone(), credentials: None },
        }
    }
}

/// Applies a [`Connection`] to the crate's client builders, which share no common trait.
macro_rules! configure {
    ($builder:expr, $conn:expr) => {{
        let mut builder = $builder;
        if let Some(endpoint) = &$conn.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(credentials) = &$conn.credentials {
            builder = builder.with_credentials(credentials.clone());
        }
        builder
    }};
}

/// The [`MessageBus`] on Google Cloud Pub/Sub (or its emulator).
pub struct PubSubBus {
    project: String,
    /// Shared connection of all publishers.
    base_publisher: BasePublisher,
    /// One publisher per topic: each batches in a background task, so they are created once and reused.
    publishers: Mutex<HashMap<String, Publisher>>,
    subscriber: Subscriber,
    topic_admin: TopicAdmin,
    subscription_admin: SubscriptionAdmin,
}

impl std::fmt::Debug for PubSubBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBus").field("project", &self.project).finish_non_exhaustive()
    }
}

impl PubSubBus {
    /// Builds the clients. Connections are opened lazily, so this succeeds without a reachable server; use
    /// [`MessageBus::ping`] to check it.
    pub async fn connect(config: PubSubConfig) -> Result<Self, BusError> {
        let conn = Connection::from_config(&config);
        let unreachable = |what: &str, e: google_cloud_gax::client_builder::Error| {
            BusError::Unreachable(format!("{what}: {e}").into())
        };
        let base_publisher = configure!(BasePublisher::builder(), conn)
            .with_retry_policy(RetryableErrors.with_time_limit(PUBLISH_TIME_LIMIT))
            .build()
            .await
            .map_err(|e| unreachable("creating the Pub/Sub publisher client", e))?;
        let subscriber = configure!(Subscriber::builder(), conn)
            .build()
            .await
            .map_err(|e| unreachable("creating the Pub/Sub subscriber client", e))?;
        let topic_admin = configure!(TopicAdmin::builder(), conn)
            .with_attempt_timeout(ADMIN_TIMEOUT)
            .build()
            .await
            .map_err(|e| unreachable("creating the Pub/Sub topic admin client", e))?;
        let subscription_admin = configure!(SubscriptionAdmin::builder(), conn)
            .with_attempt_timeout(ADMIN_TIMEOUT)
            .build()
            .await
            .map_err(|e| unreachable("creating the Pub/Sub subscription admin client", e))?;
        info!(project = %config.project, endpoint = ?conn.endpoint, emulator = config.emulator_host.is_some(),
            "Pub/Sub bus configured");
        Ok(Self {
            project: config.project,
            base_publisher,
            publishers: Mutex::default(),
            subscriber,
            topic_admin,
            subscription_admin,
        })
    }

    fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    fn publisher(&self, topic: &str) -> Publisher {
        let mut publishers = self.publishers.lock();
        publishers
            .entry(topic.to_owned())
            .or_insert_with(|| self.base_publisher.publisher(self.topic_path(topic)).build())
            .clone()
    }

    /// Creates the subscription unless it exists; `expiration` makes it expire after a while unread.
    async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        expiration: Option<ExpirationPolicy>,
    ) -> Result<(), BusError> {
        let admin_error =
            |source: BoxError| BusError::Admin { what: "subscription", name: subscription.to_owned(), source };
        let path = self.subscription_path(subscription);
        let topic_path = self.topic_path(topic);
        let create = self
            .subscription_admin
            .create_subscription()
            .set_name(&path)
            .set_topic(&topic_path)
            .set_ack_deadline_seconds(ACK_DEADLINE_SECONDS)
            .set_or_clear_expiration_policy(expiration)
            .send();
        match bounded(ADMIN_TIMEOUT, create).await.map_err(admin_error)? {
            Ok(_) => info!(subscription, topic, "created subscription"),
            Err(e) if code(&e) == Some(Code::AlreadyExists) => {
                // An existing subscription on another topic (or on a deleted one) would never see our messages:
                // better to fail loudly than to wait forever.
                let existing =
                    bounded(ADMIN_TIMEOUT, self.subscription_admin.get_subscription().set_subscription(&path).send())
                        .await
                        .map_err(admin_error)?
                        .map_err(|e| admin_error(e.into()))?;
                if existing.topic != topic_path {
                    return Err(admin_error(
                        format!("it exists but is attached to {}, not {topic_path}", existing.topic).into(),
                    ));
                }
                debug!(subscription, topic, "subscription exists");
            }
            Err(e) => return Err(admin_error(e.into())),
        }
        Ok(())
    }
}

fn code(e: &google_cloud_pubsub::Error) -> Option<Code> {
    e.status().map(|status| status.code)
}

/// Runs an admin call with a time limit, so a hung connection cannot hang start-up or a probe.
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = google_cloud_pubsub::Result<T>>,
) -> Result<google_cloud_pubsub::Result<T>, BoxError> {
    tokio::time::timeout(limit, call).await.map_err(|_| format!("no answer within {limit:?}").into())
}

#[async_trait]
impl MessageBus for PubSubBus {
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), BusError> {
        let message = PubsubMessage::new().set_data(envelope.to_json()).set_attributes([("type", envelope.kind())]);
        // Waiting for the server's message id is what makes a failed publish (missing topic, server down) an error
        // here instead of a silently lost message.
        let message_id = self.publisher(topic).publish(message).await.map_err(|e| BusError::Publish {
            topic: topic.to_owned(),
            kind: envelope.kind(),
            source: e.into(),
        })?;
        debug!(topic, kind = envelope.kind(), id = %envelope.id, message_id, "published");
        Ok(())
    }

    async fn subscribe(&self, subscription: &str) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let path = self.subscription_path(subscription);
        let subscribe_error = |source: BoxError| BusError::Subscribe { subscription: subscription.to_owned(), source };
        // A missing subscription is a configuration error the caller should see now; the stream itself would only
        // retry it in the background. Other failures (e.g. no permission to read the subscription's metadata, a
        // brief outage) are left to the stream's retries.
        match bounded(ADMIN_TIMEOUT, self.subscription_admin.get_subscription().set_subscription(&path).send()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if code(&e) == Some(Code::NotFound) => {
                return Err(subscribe_error(e.into()));
            }
            Ok(Err(e)) => {
                warn!(subscription, error = %e, "cannot check the subscription; subscribing anyway")
            }
            Err(e) => {
                warn!(subscription, error = %e, "cannot check the subscription; subscribing anyway")
            }
        }
        let (tx, rx) = mpsc::channel(DELIVERY_BUFFER);
        tokio::spawn(pump(self.subscriber.clone(), subscription.to_owned(), path, tx));
        Ok(rx)
    }

    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        let admin_error = |source: BoxError| BusError::Admin { what: "topic", name: topic.to_owned(), source };
        match bounded(ADMIN_TIMEOUT, self.topic_admin.create_topic().set_name(self.topic_path(topic)).send())
            .await
            .map_err(admin_error)?
        {
            Ok(_) => info!(topic, "created topic"),
            Err(e) if code(&e) == Some(Code::AlreadyExists) => debug!(topic, "topic exists"),
            Err(e) => return Err(admin_error(e.into())),
        }
        Ok(())
    }

    async fn ensure_subscription(&self, subscription: &str, topic: &str) -> Result<(), BusError> {
        self.create_subscription(subscription, topic, None).await
    }

    async fn renew_owned_subscription(&self, subscription: &str, topic: &str) -> Result<(), BusError> {
        self.delete_subscription(subscription).await?;
        let ttl = google_cloud_wkt::Duration::clamp(OWNED_TTL_SECONDS, 0);
        self.create_subscription(subscription, topic, Some(ExpirationPolicy::new().set_ttl(ttl))).await
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), BusError> {
        let delete_error = |source: BoxError| BusError::Delete { subscription: subscription.to_owned(), source };
        let delete =
            self.subscription_admin.delete_subscription().set_subscription(self.subscription_path(subscription)).send();
        match bounded(ADMIN_TIMEOUT, delete).await.map_err(delete_error)? {
            Ok(()) => info!(subscription, "deleted subscription"),
            Err(e) if code(&e) == Some(Code::NotFound) => debug!(subscription, "subscription already gone"),
            Err(e) => return Err(delete_error(e.into())),
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        let list = self.topic_admin.list_topics().set_project(format!("projects/{}", self.project)).set_page_size(1);
        bounded(PING_TIMEOUT, list.send())
            .await
            .map_err(BusError::Unreachable)?
            .map_err(|e| BusError::Unreachable(format!("listing topics of project {}: {e}", self.project).into()))?;
        Ok(())
    }
}

/// Streams `path` into `tx` until the receiver is dropped, opening a new stream (with backoff) whenever one ends
/// or fails: a consumer of the bus should never have to re-subscribe itself.
async fn pump(subscriber: Subscriber, subscription: String, path: String, tx: mpsc::Sender<Delivery>) {
    let mut attempt: u32 = 0;
    let mut delays = resubscribe_delays();
    loop {
        let mut stream = subscriber
            .subscribe(path.as_str())
            .set_max_lease_extension(MAX_LEASE_EXTENSION)
            .set_max_outstanding_messages(MAX_OUTSTANDING_MESSAGES)
            .build();
        debug!(subscription, attempt, "opened subscription stream");
        let failure = loop {
            let next = tokio::select! {
                _ = tx.closed() => {
                    debug!(subscription, "receiver dropped; closing subscription stream");
                    return;
                }
                next = stream.next() => next,
            };
            let (message, handler) = match next {
                Some(Ok(item)) => item,
                Some(Err(e)) => break e.to_string(),
                None => break "the stream ended".to_owned(),
            };
            if attempt > 0 {
                attempt = 0;
                delays = resubscribe_delays();
            }
            let envelope = match Envelope::from_json(&message.data) {
                Ok(envelope) => envelope,
                Err(e) => {
                    warn!(subscription, message_id = message.message_id, error = %e, bytes = message.data.len(),
                        "dropping a message that is not a JSON envelope");
                    handler.ack();
                    continue;
                }
            };
            debug!(subscription, kind = envelope.kind(), id = %envelope.id, message_id = message.message_id,
                attempt = ?handler.delivery_attempt(), "received");
            // A nack asks for redelivery right away; a Delivery dropped unanswered nacks too (the handler's Drop).
            let delivery = Delivery::new(envelope, move |acked| if acked { handler.ack() } else { handler.nack() });
            if tx.send(delivery).await.is_err() {
                debug!(subscription, "receiver dropped; closing subscription stream");
                return;
            }
        };
        drop(stream);
        let delay = delays.next().unwrap_or(std::time::Duration::from_secs(10));
        warn!(subscription, error = %failure, retry_in = ?delay, "subscription stream stopped; re-subscribing");
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
