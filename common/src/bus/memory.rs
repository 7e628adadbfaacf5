//! An in-process bus with Pub/Sub's semantics, for tests and single-process runs.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{BusError, Delivery, MessageBus};
use crate::messages::Envelope;

#[derive(Default, Clone)]
pub struct MemoryBus {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// topic -> its subscriptions
    topics: HashMap<String, Vec<String>>,
    /// subscription -> queue feeding its receiver
    subscriptions: HashMap<String, Queue>,
}

struct Queue {
    tx: mpsc::UnboundedSender<Envelope>,
    rx: Option<mpsc::UnboundedReceiver<Envelope>>,
}

fn missing(what: &'static str, name: &str) -> crate::bus::BoxError {
    format!("{what} {name} does not exist").into()
}

impl MemoryBus {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), BusError> {
        let inner = self.lock();
        let subscriptions = inner.topics.get(topic).ok_or_else(|| BusError::Publish {
            topic: topic.into(),
            kind: envelope.kind(),
            source: missing("topic", topic),
        })?;
        for name in subscriptions {
            if let Some(queue) = inner.subscriptions.get(name) {
                let _ = queue.tx.send(envelope.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, subscription: &str) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let (mut rx, requeue) = {
            let mut inner = self.lock();
            let queue = inner.subscriptions.get_mut(subscription).ok_or_else(|| BusError::Subscribe {
                subscription: subscription.into(),
                source: missing("subscription", subscription),
            })?;
            let rx = queue.rx.take().ok_or_else(|| BusError::Subscribe {
                subscription: subscription.into(),
                source: "already has a receiver in this process".into(),
            })?;
            (rx, queue.tx.clone())
        };
        let (out_tx, out_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(envelope) = rx.recv().await {
                let requeue = requeue.clone();
                let again = envelope.clone();
                let delivery = Delivery::new(envelope, move |acked| {
                    if !acked {
                        let _ = requeue.send(again);
                    }
                });
                if out_tx.send(delivery).await.is_err() {
                    break;
                }
            }
        });
        Ok(out_rx)
    }

    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        self.lock().topics.entry(topic.into()).or_default();
        Ok(())
    }

    async fn ensure_subscription(&self, subscription: &str, topic: &str) -> Result<(), BusError> {
        let mut inner = self.lock();
        if inner.subscriptions.contains_key(subscription) {
            return Ok(());
        }
        let subscribers = inner.topics.get_mut(topic).ok_or_else(|| BusError::Admin {
            what: "subscription",
            name: subscription.into(),
            source: missing("topic", topic),
        })?;
        subscribers.push(subscription.into());
        let (tx, rx) = mpsc::unbounded_channel();
        inner.subscriptions.insert(subscription.into(), Queue { tx, rx: Some(rx) });
        Ok(())
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), BusError> {
        let mut inner = self.lock();
        inner.subscriptions.remove(subscription);
        for subscribers in inner.topics.values_mut() {
            subscribers.retain(|name| name != subscription);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Message;
    use uuid::Uuid;

    fn msg() -> Envelope {
        Envelope::new(Message::ChangeStreamState { source_id: Uuid::new_v4(), new_state: true })
    }

    #[tokio::test]
    async fn topics_fan_out_and_nacked_messages_come_back() {
        let bus = MemoryBus::default();
        bus.ensure_topic("t1").await.unwrap();
        bus.ensure_subscription("s1", "t1").await.unwrap();
        bus.ensure_subscription("s2", "t1").await.unwrap();
        let mut s1 = bus.subscribe("s1").await.unwrap();
        let mut s2 = bus.subscribe("s2").await.unwrap();
        let sent = msg();
        bus.publish("t1", &sent).await.unwrap();
        let first = s1.recv().await.unwrap();
        assert_eq!(first.envelope, sent);
        first.nack();
        s1.recv().await.unwrap().ack();
        assert_eq!(s2.recv().await.unwrap().envelope, sent);
    }

    #[tokio::test]
    async fn unknown_topics_and_subscriptions_are_errors() {
        let bus = MemoryBus::default();
        assert!(bus.publish("nope", &msg()).await.is_err());
        assert!(bus.subscribe("nope").await.is_err());
        assert!(bus.ensure_subscription("s", "nope").await.is_err());
    }

    #[tokio::test]
    async fn renewed_subscriptions_start_empty() {
        let bus = MemoryBus::default();
        bus.ensure_topic("t1").await.unwrap();
        bus.renew_owned_subscription("owned", "t1").await.unwrap();
        bus.publish("t1", &msg()).await.unwrap();
        bus.renew_owned_subscription("owned", "t1").await.unwrap();
        let fresh = msg();
        bus.publish("t1", &fresh).await.unwrap();
        let mut owned = bus.subscribe("owned").await.unwrap();
        assert_eq!(owned.recv().await.unwrap().envelope, fresh, "what the old subscription held is gone");
    }

    #[tokio::test]
    async fn a_deleted_subscription_gets_nothing_more_and_can_be_deleted_twice() {
        let bus = MemoryBus::default();
        bus.ensure_topic("t1").await.unwrap();
        bus.renew_owned_subscription("gone", "t1").await.unwrap();
        bus.ensure_subscription("kept", "t1").await.unwrap();
        let mut kept = bus.subscribe("kept").await.unwrap();
        bus.delete_subscription("gone").await.unwrap();
        bus.delete_subscription("gone").await.unwrap();
        assert!(bus.subscribe("gone").await.is_err(), "a deleted subscription cannot be read");
        let sent = msg();
        bus.publish("t1", &sent).await.unwrap();
        assert_eq!(kept.recv().await.unwrap().envelope, sent);
        assert_eq!(bus.lock().topics["t1"], vec!["kept".to_owned()]);
    }
}
