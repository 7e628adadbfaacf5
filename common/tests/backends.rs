//! The production backends against real services: the Pub/Sub emulator, memcached and an S3 server (moto).
//!
//! Start them and export their addresses first:
//!
//! ```sh
//! scripts/services.sh up && eval "$(scripts/services.sh env)"
//! cargo test -p livemix-common --test backends
//! ```
//!
//! A missing variable fails the test instead of skipping it, so a green run always means the backends were
//! exercised. Every test uses fresh topic, subscription and key names, so tests run in parallel and re-run.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use livemix_common::{
    bus::{
        Delivery, MessageBus,
        pubsub::{PubSubBus, PubSubConfig},
    },
    cache::{CacheError, SegmentCache, memcached::MemcachedCache},
    messages::{Envelope, Message},
    rpc::{Requester, respond},
    store::{
        ObjectStore, StoreError,
        s3::{S3Config, S3Store},
    },
};
use tokio::{sync::mpsc, time::timeout};
use uuid::Uuid;

/// How long a test waits for a message that should arrive.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for a message when the subscription had a stream closed. The emulator shipped here
/// (0.8.20) fails on every cancelled StreamingPull (`NoSuchMethodError` in grpc-java's `closedInternal`, see its
/// log) and keeps handing a share of the messages to the dead stream; they come back each time the bus's 10 s
/// lease runs out. Real Pub/Sub does not do that. An emulator that has run for hours (many topics, dead streams,
/// a freeze) hands them back more slowly still: 90 s was seen to fall short there, so the wait is generous; a
/// healthy emulator answers within seconds, so only a broken one pays it.
const EMULATOR_DEAD_STREAM_WAIT: Duration = Duration::from_secs(240);
/// How long a test watches for a message that should not arrive.
const QUIET_PERIOD: Duration = Duration::from_secs(2);

/// Logs of the code under test, shown for failing tests; filter with `RUST_LOG`.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

fn env(name: &str) -> String {
    init_logs();
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: these tests need the real backing services; run \
             `scripts/services.sh up && eval \"$(scripts/services.sh env)\"` first"
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn message() -> Envelope {
    Envelope::new(Message::ChangeStreamState { source_id: Uuid::new_v4(), new_state: true })
}

// ---------------------------------------------------------------------------------------------------------------
// Pub/Sub

fn pubsub_config() -> PubSubConfig {
    PubSubConfig { project: env("PUBSUB_PROJECT_ID"), emulator_host: Some(env("PUBSUB_EMULATOR_HOST")), endpoint: None }
}

async fn bus() -> PubSubBus {
    PubSubBus::connect(pubsub_config()).await.expect("Pub/Sub clients")
}

/// A bus with a fresh topic and one subscription on it.
async fn bus_with_subscription() -> (PubSubBus, String, String) {
    let bus = bus().await;
    let (topic, subscription) = (unique("topic"), unique("sub"));
    bus.ensure_topic(&topic).await.expect("create topic");
    bus.ensure_subscription(&subscription, &topic).await.expect("create subscription");
    (bus, topic, subscription)
}

async fn receive(rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    timeout(RECEIVE_TIMEOUT, rx.recv())
        .await
        .expect("no message within the timeout")
        .expect("subscription channel closed")
}

async fn assert_quiet(rx: &mut mpsc::Receiver<Delivery>) {
    if let Ok(delivery) = timeout(QUIET_PERIOD, rx.recv()).await {
        panic!("unexpected delivery: {delivery:?}");
    }
}

#[tokio::test]
async fn pubsub_round_trip_with_ack() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    bus.ping().await.expect("ping");
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe");
    let sent = [message(), Envelope::request(message().body, "replies")];
    for envelope in &sent {
        bus.publish(&topic, envelope).await.expect("publish");
    }
    let mut received = Vec::new();
    for _ in 0..sent.len() {
        let delivery = receive(&mut rx).await;
        received.push(delivery.envelope.clone());
        delivery.ack();
    }
    received.sort_by_key(|e| sent.iter().position(|s| s.id == e.id));
    assert_eq!(received, sent);
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn pubsub_nack_and_unanswered_deliveries_come_back() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe");
    let sent = message();
    bus.publish(&topic, &sent).await.expect("publish");

    let first = receive(&mut rx).await;
    assert_eq!(first.envelope, sent);
    first.nack();
    let second = receive(&mut rx).await;
    assert_eq!(second.envelope, sent, "a nacked message is delivered again");
    drop(second);
    let third = receive(&mut rx).await;
    assert_eq!(third.envelope, sent, "a delivery dropped without an answer is delivered again");
    third.ack();
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn pubsub_undecodable_messages_are_acked_and_skipped() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe");

    // Publish garbage with the crate directly: the bus only publishes envelopes.
    let publisher = google_cloud_pubsub::client::Publisher::builder(format!(
        "projects/{}/topics/{topic}",
        env("PUBSUB_PROJECT_ID")
    ))
    .with_endpoint(format!("http://{}", env("PUBSUB_EMULATOR_HOST")))
    .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
    .build()
    .await
    .expect("raw publisher");
    for garbage in [&b"not json"[..], br#"{"type":"no_such_type","id":"x"}"#] {
        publisher
            .publish(google_cloud_pubsub::model::Message::new().set_data(Bytes::from_static(garbage)))
            .await
            .expect("publish garbage");
    }
    let sent = message();
    bus.publish(&topic, &sent).await.expect("publish");

    let delivery = receive(&mut rx).await;
    assert_eq!(delivery.envelope, sent, "only the envelope reaches the consumer");
    delivery.ack();
    assert_quiet(&mut rx).await;

    // Acknowledged, not just hidden: a fresh subscriber on the same subscription gets nothing either.
    drop(rx);
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe again");
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn pubsub_deliveries_outlive_their_receiver() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe");
    let (acked, nacked) = (message(), message());
    for envelope in [&acked, &nacked] {
        bus.publish(&topic, envelope).await.expect("publish");
    }
    let mut held = vec![receive(&mut rx).await, receive(&mut rx).await];
    held.sort_by_key(|d| d.envelope.id != acked.id);
    // The consumer stops listening while still handling two messages, a new consumer starts, and then the old
    // one answers.
    drop(rx);
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe again");
    let [first, second]: [Delivery; 2] = held.try_into().expect("two deliveries");
    assert_eq!(first.envelope, acked);
    first.ack();
    second.nack();

    // The emulator never cleans up a closed stream (see `EMULATOR_DEAD_STREAM_WAIT`), so the nacked message may
    // first go to the old stream and only come back once its lease runs out, maybe more than once.
    let again = timeout(EMULATOR_DEAD_STREAM_WAIT, rx.recv()).await.expect("nacked message back").expect("open");
    assert_eq!(again.envelope, nacked, "only the nacked message comes back");
    again.ack();
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn pubsub_subscriptions_recover_after_the_stream_fails() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    let mut rx = bus.subscribe(&subscription).await.expect("subscribe");
    // Break the stream from the server side: the subscription disappears, then comes back.
    let admin = google_cloud_pubsub::client::SubscriptionAdmin::builder()
        .with_endpoint(format!("http://{}", env("PUBSUB_EMULATOR_HOST")))
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .expect("admin client");
    admin
        .delete_subscription()
        .set_subscription(format!("projects/{}/subscriptions/{subscription}", env("PUBSUB_PROJECT_ID")))
        .send()
        .await
        .expect("delete subscription");
    tokio::time::sleep(Duration::from_secs(1)).await;
    bus.ensure_subscription(&subscription, &topic).await.expect("re-create subscription");

    let sent = message();
    bus.publish(&topic, &sent).await.expect("publish");
    let delivery = receive(&mut rx).await;
    assert_eq!(delivery.envelope, sent, "the same receiver keeps working");
    delivery.ack();
}

#[tokio::test]
async fn pubsub_topics_fan_out_to_every_subscription() {
    let (bus, topic, first) = bus_with_subscription().await;
    let second = unique("sub");
    bus.ensure_subscription(&second, &topic).await.expect("second subscription");
    let mut rx1 = bus.subscribe(&first).await.expect("subscribe");
    let mut rx2 = bus.subscribe(&second).await.expect("subscribe");
    let sent = message();
    bus.publish(&topic, &sent).await.expect("publish");
    for rx in [&mut rx1, &mut rx2] {
        let delivery = receive(rx).await;
        assert_eq!(delivery.envelope, sent);
        delivery.ack();
    }
}

#[tokio::test]
async fn pubsub_ensure_is_idempotent_and_checks_the_topic() {
    let (bus, topic, subscription) = bus_with_subscription().await;
    bus.ensure_topic(&topic).await.expect("topic again");
    bus.ensure_subscription(&subscription, &topic).await.expect("subscription again");

    let other_topic = unique("topic");
    bus.ensure_topic(&other_topic).await.expect("other topic");
    let err = bus.ensure_subscription(&subscription, &other_topic).await.expect_err("subscription on another topic");
    assert!(err.to_string().contains(&other_topic), "{err}");

    let err = bus.ensure_subscription(&unique("sub"), &unique("missing")).await.expect_err("missing topic");
    assert!(err.to_string().contains("subscription"), "{err}");
}

#[tokio::test]
async fn pubsub_missing_topics_and_subscriptions_are_errors() {
    let bus = bus().await;
    let topic = unique("missing");
    let err = bus.publish(&topic, &message()).await.expect_err("publish to a missing topic");
    assert!(err.to_string().contains(&topic), "{err}");
    let subscription = unique("missing");
    let err = bus.subscribe(&subscription).await.expect_err("subscribe to a missing subscription");
    assert!(err.to_string().contains(&subscription), "{err}");
}

/// A subscription one process owns is renewed when the process starts: what the last owner left is gone, and the
/// new owner gets every new message. Deleting it is final.
#[tokio::test]
async fn pubsub_renewed_subscriptions_start_empty_and_serve_a_restarted_owner() {
    let bus = bus().await;
    let (topic, owned) = (unique("topic"), unique("owned"));
    bus.ensure_topic(&topic).await.expect("create topic");
    bus.renew_owned_subscription(&owned, &topic).await.expect("owned subscription");
    // The last owner read a message, left with its stream open, and one more message came for nobody.
    let mut last_owner = bus.subscribe(&owned).await.expect("subscribe");
    bus.publish(&topic, &message()).await.expect("publish");
    receive(&mut last_owner).await.ack();
    drop(last_owner);
    let stale = message();
    bus.publish(&topic, &stale).await.expect("publish");

    bus.renew_owned_subscription(&owned, &topic).await.expect("renew");
    let mut owner = bus.subscribe(&owned).await.expect("subscribe again");
    let mut fresh = Vec::new();
    for _ in 0..5 {
        let sent = message();
        bus.publish(&topic, &sent).await.expect("publish");
        fresh.push(sent);
    }
    for _ in 0..fresh.len() {
        // The emulator may still hand some to the last owner's closed stream (see `EMULATOR_DEAD_STREAM_WAIT`).
        let delivery = timeout(EMULATOR_DEAD_STREAM_WAIT, owner.recv()).await.expect("fresh message").expect("open");
        assert_ne!(delivery.envelope, stale, "the renewed subscription kept what the last owner left");
        assert!(fresh.contains(&delivery.envelope), "unexpected delivery: {delivery:?}");
        delivery.ack();
    }
    drop(owner);

    bus.delete_subscription(&owned).await.expect("delete");
    bus.delete_subscription(&owned).await.expect("deleting a deleted subscription is no error");
    let err = bus.subscribe(&owned).await.expect_err("a deleted subscription cannot be read");
    assert!(err.to_string().contains(&owned), "{err}");
    bus.publish(&topic, &message()).await.expect("the topic outlives its subscriptions");
}

/// Two control replicas share one reply topic, each reading it through a subscription of its own: every request
/// gets its own answer, whichever replica sent it, and the answers meant for the other replica are skipped.
#[tokio::test]
async fn pubsub_replicas_share_a_reply_topic() {
    let bus: Arc<dyn MessageBus> = Arc::new(bus().await);
    let (requests, request_sub, replies) = (unique("requests"), unique("requests"), unique("reply"));
    bus.ensure_topic(&requests).await.expect("request topic");
    bus.ensure_subscription(&request_sub, &requests).await.expect("request subscription");
    bus.ensure_topic(&replies).await.expect("reply topic");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let subscription = unique("reply");
        bus.renew_owned_subscription(&subscription, &replies).await.expect("reply subscription");
        let requester = Requester::new(bus.clone(), replies.clone(), RECEIVE_TIMEOUT);
        tokio::spawn(requester.clone().run_reply_loop(bus.subscribe(&subscription).await.expect("subscribe")));
        replicas.push((requester, subscription));
    }
    // The edge's side: refuses the requests for a source id of all zeros, accepts the others.
    let mut incoming = bus.subscribe(&request_sub).await.expect("subscribe to requests");
    let responder_bus = bus.clone();
    tokio::spawn(async move {
        while let Some(delivery) = incoming.recv().await {
            let refuse =
                matches!(delivery.envelope.body, Message::ChangeStreamState { source_id, .. } if source_id.is_nil());
            let result = if refuse { Err("refused on purpose".to_owned()) } else { Ok(()) };
            respond(&responder_bus, &delivery.envelope, result).await.expect("answer");
            delivery.ack();
        }
    });
    let ask = |requester: &Requester, source_id: Uuid| {
        let requester = requester.clone();
        let requests = requests.clone();
        async move { requester.request(&requests, Message::ChangeStreamState { source_id, new_state: true }).await }
    };
    let (first, second) = (&replicas[0].0, &replicas[1].0);
    let (a, b, refused) =
        tokio::join!(ask(first, Uuid::new_v4()), ask(second, Uuid::new_v4()), ask(second, Uuid::nil()));
    a.expect("the first replica's request is answered");
    b.expect("the second replica's request is answered");
    let err = refused.expect_err("the refusal reaches the replica that asked");
    assert!(err.to_string().contains("refused on purpose"), "{err}");
    for (_, subscription) in &replicas {
        bus.delete_subscription(subscription).await.expect("delete the reply subscription");
    }
}

#[tokio::test]
async fn pubsub_ping_fails_without_a_server() {
    // Nothing listens on port 9 (discard) on the test machines.
    let config = PubSubConfig { emulator_host: Some("127.0.0.1:9".into()), ..pubsub_config() };
    let bus = PubSubBus::connect(config).await.expect("clients connect lazily");
    assert!(bus.ping().await.is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// memcached

fn cache() -> MemcachedCache {
    MemcachedCache::connect(&env("MEMCACHED_URL")).expect("connect to memcached")
}

fn payload(size: usize) -> Bytes {
    (0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

#[tokio::test]
async fn memcached_put_get_delete() {
    let cache = cache();
    cache.ping().await.expect("ping");
    let key = unique("seg");
    assert_eq!(cache.get(&key).await.expect("get missing"), None);
    let data = Bytes::from_static(b"\x00\x01segment bytes\xff");
    cache.put(&key, data.clone(), Duration::from_secs(60)).await.expect("put");
    assert_eq!(cache.get(&key).await.expect("get"), Some(data));
    cache.put(&key, Bytes::from_static(b"replaced"), Duration::from_secs(60)).await.expect("overwrite");
    assert_eq!(cache.get(&key).await.expect("get"), Some(Bytes::from_static(b"replaced")));
    cache.delete(&key).await.expect("delete");
    assert_eq!(cache.get(&key).await.expect("get deleted"), None);
    cache.delete(&key).await.expect("deleting a missing key is fine");
}

#[tokio::test]
async fn memcached_entries_expire() {
    let cache = cache();
    let key = unique("seg");
    // Below a second: rounded up to one, not turned into "never" (0).
    cache.put(&key, Bytes::from_static(b"short-lived"), Duration::from_millis(300)).await.expect("put");
    assert!(cache.get(&key).await.expect("get").is_some(), "stored right away");
    // memcached's clock ticks once a second, so a one-second entry lives up to two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(cache.get(&key).await.expect("get expired"), None);
}

#[tokio::test]
async fn memcached_large_values() {
    let cache = cache();
    let key = unique("seg");
    let data = payload(5 * 1024 * 1024);
    cache.put(&key, data.clone(), Duration::from_secs(60)).await.expect("put 5 MB");
    let got = cache.get(&key).await.expect("get").expect("present");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "5 MB value came back different");
    cache.delete(&key).await.expect("delete");
}

#[tokio::test]
async fn memcached_too_large_values_are_refused_clearly() {
    let cache = cache();
    let key = unique("seg");
    // Over our limit: refused before sending.
    match cache.put(&key, payload(9 * 1024 * 1024), Duration::from_secs(60)).await {
        Err(CacheError::TooLarge { size, limit, .. }) => assert!(size > limit),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Exactly the server's -I 8m: memcached counts its item header too and refuses it; same error.
    match cache.put(&key, payload(8 * 1024 * 1024), Duration::from_secs(60)).await {
        Err(CacheError::TooLarge { .. }) => {}
        other => panic!("expected TooLarge from the server, got {other:?}"),
    }
    // The connection is still usable afterwards.
    cache.put(&key, Bytes::from_static(b"small"), Duration::from_secs(60)).await.expect("put after refusal");
    assert_eq!(cache.get(&key).await.expect("get"), Some(Bytes::from_static(b"small")));
}

#[tokio::test]
async fn memcached_parallel_calls_share_the_pool() {
    let cache = std::sync::Arc::new(cache());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let key = unique("seg");
                let data = payload(64 * 1024 + i);
                cache.put(&key, data.clone(), Duration::from_secs(60)).await.expect("put");
                assert_eq!(cache.get(&key).await.expect("get"), Some(data));
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

#[test]
fn memcached_connect_fails_without_a_server() {
    assert!(matches!(MemcachedCache::connect("memcache://127.0.0.1:9"), Err(CacheError::Connect { .. })));
    assert!(matches!(MemcachedCache::connect("http://127.0.0.1:11211"), Err(CacheError::Connect { .. })));
}

// ---------------------------------------------------------------------------------------------------------------
// S3

fn s3_config(bucket: String) -> S3Config {
    // The credentials come from the SDK's default chain: make sure they are in the environment.
    env("AWS_ACCESS_KEY_ID");
    env("AWS_SECRET_ACCESS_KEY");
    S3Config {
        bucket,
        endpoint: Some(env("S3_ENDPOINT")),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        create_bucket: true,
    }
}

async fn store() -> S3Store {
    S3Store::connect(s3_config(env("LIVEMIX_BUCKET"))).await.expect("connect to S3")
}

#[tokio::test]
async fn s3_put_get_delete() {
    let store = store().await;
    store.ping().await.expect("ping");
    let key = format!("tests/{}/segment_00001.ts", Uuid::new_v4());
    let data = payload(3 * 1024 * 1024 + 17);
    store.put(&key, data.clone()).await.expect("put");
    assert!(store.get(&key).await.expect("get") == data, "object came back different");
    store.put(&key, Bytes::from_static(b"replaced")).await.expect("overwrite");
    assert_eq!(store.get(&key).await.expect("get"), Bytes::from_static(b"replaced"));
    store.delete(&key).await.expect("delete");
    match store.get(&key).await {
        Err(StoreError::NotFound { key: missing }) => assert_eq!(missing, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    store.delete(&key).await.expect("deleting a missing key is fine");
}

#[tokio::test]
async fn s3_missing_keys_are_not_found() {
    let store = store().await;
    let key = format!("tests/{}/nothing.ts", Uuid::new_v4());
    assert!(matches!(store.get(&key).await, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn s3_bucket_creation_is_idempotent_and_ping_checks_the_bucket() {
    let bucket = unique("livemix-test");
    let store = S3Store::connect(s3_config(bucket.clone())).await.expect("create bucket");
    store.ping().await.expect("ping");
    S3Store::connect(s3_config(bucket.clone())).await.expect("bucket exists already");

    let missing = S3Store::connect(S3Config { create_bucket: false, ..s3_config(unique("livemix-missing")) })
        .await
        .expect("connecting does not need the bucket");
    let err = missing.ping().await.expect_err("ping a missing bucket");
    assert!(err.to_string().contains("livemix-missing"), "{err}");
}

#[tokio::test]
async fn memcached_touch_says_whether_a_key_is_cached() {
    let cache = cache();
    let key = unique("seg");
    assert!(!cache.touch(&key, Duration::from_secs(60)).await.expect("touch missing"));
    cache.put(&key, Bytes::from_static(b"ts"), Duration::from_secs(60)).await.expect("put");
    assert!(cache.touch(&key, Duration::from_secs(60)).await.expect("touch present"));
    cache.delete(&key).await.expect("delete");
    assert!(!cache.touch(&key, Duration::from_secs(60)).await.expect("touch deleted"));
}

// ---------------------------------------------------------------------------------------------------------------
// Both implementations of each trait: the in-process ones (the standalone `livemix` binary runs on them) must
// answer the contract as the production ones do.

/// Runs `check` on the production backend and on the in-process one, as two tests.
macro_rules! on_both {
    ($check:ident, real: $real:expr, memory: $memory:expr) => {
        mod $check {
            use super::*;
            #[tokio::test]
            async fn real() {
                $check($real).await;
            }
            #[tokio::test]
            async fn memory() {
                $check($memory).await;
            }
        }
    };
}

on_both!(bus_delivers_fans_out_and_redelivers_nacks,
    real: Arc::new(bus().await), memory: Arc::new(livemix_common::bus::memory::MemoryBus::default()));
on_both!(bus_missing_topics_and_subscriptions_are_errors,
    real: Arc::new(bus().await), memory: Arc::new(livemix_common::bus::memory::MemoryBus::default()));
on_both!(cache_puts_gets_touches_and_deletes,
    real: Arc::new(cache()), memory: Arc::new(livemix_common::cache::memory::MemoryCache::new(1 << 24)));
on_both!(cache_entries_expire,
    real: Arc::new(cache()), memory: Arc::new(livemix_common::cache::memory::MemoryCache::new(1 << 24)));
on_both!(store_puts_gets_and_deletes,
    real: Arc::new(store().await),
    memory: Arc::new(livemix_common::store::local::LocalStore::new(std::env::temp_dir().join(unique("livemix-store")))));

async fn bus_delivers_fans_out_and_redelivers_nacks(bus: Arc<dyn MessageBus>) {
    let (topic, first, second) = (unique("topic"), unique("sub"), unique("sub"));
    bus.ensure_topic(&topic).await.expect("topic");
    bus.ensure_topic(&topic).await.expect("topic again");
    bus.ensure_subscription(&first, &topic).await.expect("subscription");
    bus.ensure_subscription(&first, &topic).await.expect("subscription again");
    bus.ensure_subscription(&second, &topic).await.expect("second subscription");
    bus.ping().await.expect("ping");
    let (mut rx1, mut rx2) = (bus.subscribe(&first).await.expect("subscribe"), bus.subscribe(&second).await.unwrap());
    let sent = message();
    bus.publish(&topic, &sent).await.expect("publish");
    let delivery = receive(&mut rx2).await;
    assert_eq!(delivery.envelope, sent, "every subscription gets the message");
    delivery.ack();
    let delivery = receive(&mut rx1).await;
    assert_eq!(delivery.envelope, sent);
    delivery.nack();
    let again = receive(&mut rx1).await;
    assert_eq!(again.envelope, sent, "a nacked message is delivered again");
    again.ack();
    assert_quiet(&mut rx1).await;
    assert_quiet(&mut rx2).await;
    bus.delete_subscription(&second).await.expect("delete");
    bus.delete_subscription(&second).await.expect("deleting a missing subscription is fine");
}

async fn bus_missing_topics_and_subscriptions_are_errors(bus: Arc<dyn MessageBus>) {
    let topic = unique("missing");
    let err = bus.publish(&topic, &message()).await.expect_err("publish to a missing topic");
    assert!(err.to_string().contains(&topic), "{err}");
    let subscription = unique("missing");
    let err = bus.subscribe(&subscription).await.expect_err("subscribe to a missing subscription");
    assert!(err.to_string().contains(&subscription), "{err}");
    let err = bus.ensure_subscription(&unique("sub"), &unique("missing")).await.expect_err("missing topic");
    assert!(err.to_string().contains("subscription"), "{err}");
}

async fn cache_puts_gets_touches_and_deletes(cache: Arc<dyn SegmentCache>) {
    cache.ping().await.expect("ping");
    let key = unique("seg");
    assert_eq!(cache.get(&key).await.expect("get missing"), None);
    assert!(!cache.touch(&key, Duration::from_secs(60)).await.expect("touch missing"));
    let data = payload(1024 * 1024 + 3);
    cache.put(&key, data.clone(), Duration::from_secs(60)).await.expect("put");
    assert!(cache.get(&key).await.expect("get") == Some(data), "the bytes come back as they were");
    assert!(cache.touch(&key, Duration::from_secs(60)).await.expect("touch present"));
    cache.put(&key, Bytes::from_static(b"replaced"), Duration::from_secs(60)).await.expect("overwrite");
    assert_eq!(cache.get(&key).await.expect("get"), Some(Bytes::from_static(b"replaced")));
    cache.delete(&key).await.expect("delete");
    assert_eq!(cache.get(&key).await.expect("get deleted"), None);
    cache.delete(&key).await.expect("deleting a missing key is fine");
}

async fn cache_entries_expire(cache: Arc<dyn SegmentCache>) {
    let key = unique("seg");
    cache.put(&key, Bytes::from_static(b"short-lived"), Duration::from_millis(300)).await.expect("put");
    assert!(cache.get(&key).await.expect("get").is_some(), "stored right away");
    // memcached's clock ticks once a second, so a one-second entry lives up to two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(cache.get(&key).await.expect("get expired"), None);
}

async fn store_puts_gets_and_deletes(store: Arc<dyn ObjectStore>) {
    store.ping().await.expect("ping");
    let key = format!("tests/{}/{}/000000000001.ts", Uuid::new_v4(), ulid_like());
    let data = payload(3 * 1024 * 1024 + 17);
    store.put(&key, data.clone()).await.expect("put");
    assert!(store.get(&key).await.expect("get") == data, "object came back different");
    store.put(&key, Bytes::from_static(b"replaced")).await.expect("overwrite");
    assert_eq!(store.get(&key).await.expect("get"), Bytes::from_static(b"replaced"));
    store.delete(&key).await.expect("delete");
    match store.get(&key).await {
        Err(StoreError::NotFound { key: missing }) => assert_eq!(missing, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    store.delete(&key).await.expect("deleting a missing key is fine");
}

/// A run-like path component (the layout of recorded segments' keys).
fn ulid_like() -> String {
    Uuid::new_v4().simple().to_string().to_uppercase()[..26].to_owned()
}
