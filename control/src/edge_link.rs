//! Commands from the control node to edges over the bus.
//!
//! A command only goes out when the source's edge is reachable; otherwise the wanted state stays in the database
//! and reaches the edge in the reply to its next status report, so a missed command heals itself.

use livemix_common::{
    messages::Message,
    model::{Recording, Source},
    rpc::{Requester, RpcError},
};

/// Whether a command reached the edge now or waits for its next status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Confirmed,
    Deferred,
}

#[derive(Clone)]
pub struct EdgeLink {
    requester: Requester,
}

impl EdgeLink {
    pub fn new(requester: Requester) -> Self {
        Self { requester }
    }

    /// The requester whose reply loop must run for commands to get their answers.
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    async fn send(&self, source: &Source, body: Message) -> Result<Delivery, RpcError> {
        match (&source.rr_target, source.reachable) {
            (Some(topic), true) => self.requester.request(topic, body).await.map(|()| Delivery::Confirmed),
            _ => {
                tracing::info!(source = %source.id, kind = body.kind(), "edge not reachable; deferred to its next report");
                Ok(Delivery::Deferred)
            }
        }
    }

    pub async fn change_stream_state(&self, source: &Source) -> Result<Delivery, RpcError> {
        self.send(source, Message::ChangeStreamState { source_id: source.id, new_state: source.streaming }).await
    }

    pub async fn start_recording(&self, source: &Source, recording: &Recording) -> Result<Delivery, RpcError> {
        self.send(source, Message::StartRecording { recording: recording.clone() }).await
    }

    pub async fn stop_recording(&self, source: &Source, recording: &Recording) -> Result<Delivery, RpcError> {
        let end_ts = recording.end_ts.unwrap_or_else(chrono::Utc::now);
        self.send(source, Message::StopRecording { recording_id: recording.id.clone(), end_ts }).await
    }
}
