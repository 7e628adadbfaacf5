//! Request/response over the bus: a request names a reply topic, the receiver answers with `general_resp`
//! carrying the request's id, and the requester waits for that answer for a bounded time.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    bus::{BusError, Delivery, SharedBus},
    messages::{Envelope, Message},
};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no answer to {kind} from {topic} within {timeout:?} (is the edge running and subscribed?)")]
    Timeout { topic: String, kind: &'static str, timeout: Duration },
    #[error("{kind} refused by {topic}: {message}")]
    Refused { topic: String, kind: &'static str, message: String },
}

type Waiters = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Result<(), String>>>>>;

/// Sends requests and matches the answers that arrive on this process's reply subscription.
#[derive(Clone)]
pub struct Requester {
    bus: SharedBus,
    reply_topic: String,
    timeout: Duration,
    waiters: Waiters,
}

impl Requester {
    pub fn new(bus: SharedBus, reply_topic: impl Into<String>, timeout: Duration) -> Self {
        Self { bus, reply_topic: reply_topic.into(), timeout, waiters: Arc::default() }
    }

    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Sends `body` to `topic` and waits for its `general_resp`.
    #[tracing::instrument(skip(self, body), fields(kind = body.kind()))]
    pub async fn request(&self, topic: &str, body: Message) -> Result<(), RpcError> {
        let kind = body.kind();
        let envelope = Envelope::request(body, self.reply_topic.clone());
        let (tx, rx) = oneshot::channel();
        self.lock().insert(envelope.id, tx);
        let outcome = async {
            self.bus.publish(topic, &envelope).await?;
            match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(message))) => Err(RpcError::Refused { topic: topic.into(), kind, message }),
                Ok(Err(_)) | Err(_) => Err(RpcError::Timeout { topic: topic.into(), kind, timeout: self.timeout }),
            }
        }
        .await;
        self.lock().remove(&envelope.id);
        outcome
    }

    /// Completes the waiting request a `general_resp` answers. Returns false when nobody waits for it (an answer
    /// that came too late, or one meant for another replica).
    pub fn complete(&self, request_id: Uuid, success: bool, error: Option<String>) -> bool {
        let Some(waiter) = self.lock().remove(&request_id) else {
            return false;
        };
        let result = if success { Ok(()) } else { Err(error.unwrap_or_else(|| "no reason given".into())) };
        waiter.send(result).is_ok()
    }

    /// Routes the answers arriving on `replies` until it closes.
    pub async fn run_reply_loop(self, mut replies: tokio::sync::mpsc::Receiver<Delivery>) {
        while let Some(delivery) = replies.recv().await {
            if let Message::GeneralResp { request_id, success, ref error } = delivery.envelope.body {
                if !self.complete(request_id, success, error.clone()) {
                    tracing::debug!(%request_id, "answer for no waiting request");
                }
            } else {
                tracing::warn!(kind = delivery.envelope.kind(), "unexpected message on the reply subscription");
            }
            delivery.ack();
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Result<(), String>>>> {
        self.waiters.lock()
    }
}

/// Answers a request with `general_resp` on its `reply_to` topic (no-op for messages that want no answer).
pub async fn respond(bus: &SharedBus, request: &Envelope, result: Result<(), String>) -> Result<(), BusError> {
    let Some(reply_to) = &request.reply_to else {
        return Ok(());
    };
    let (success, error) = match result {
        Ok(()) => (true, None),
        Err(message) => (false, Some(message)),
    };
    bus.publish(reply_to, &Envelope::new(Message::GeneralResp { request_id: request.id, success, error })).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;

    async fn setup() -> (SharedBus, Requester) {
        let bus: SharedBus = Arc::new(MemoryBus::default());
        for (topic, sub) in [("edge", "edge-sub"), ("ctl", "ctl-sub")] {
            bus.ensure_topic(topic).await.unwrap();
            bus.ensure_subscription(sub, topic).await.unwrap();
        }
        let requester = Requester::new(bus.clone(), "ctl", Duration::from_millis(300));
        tokio::spawn(requester.clone().run_reply_loop(bus.subscribe("ctl-sub").await.unwrap()));
        (bus, requester)
    }

    fn request() -> Message {
        Message::ChangeStreamState { source_id: Uuid::new_v4(), new_state: true }
    }

    #[tokio::test]
    async fn answered_requests_succeed_and_refusals_carry_the_reason() {
        let (bus, requester) = setup().await;
        let mut edge = bus.subscribe("edge-sub").await.unwrap();
        let responder = bus.clone();
        tokio::spawn(async move {
            let mut answer_ok = true;
            while let Some(d) = edge.recv().await {
                let result = if answer_ok { Ok(()) } else { Err("no such source".to_string()) };
                respond(&responder, &d.envelope, result).await.unwrap();
                d.ack();
                answer_ok = false;
            }
        });
        requester.request("edge", request()).await.unwrap();
        let err = requester.request("edge", request()).await.unwrap_err();
        assert!(matches!(&err, RpcError::Refused { message, .. } if message == "no such source"), "{err}");
    }

    #[tokio::test]
    async fn unanswered_requests_time_out() {
        let (_bus, requester) = setup().await;
        let err = requester.request("edge", request()).await.unwrap_err();
        assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
        assert!(requester.lock().is_empty(), "waiter must be removed after a timeout");
    }
}
