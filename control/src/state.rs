//! What every handler and background task of the control node shares.

use std::sync::Arc;

use axum::extract::FromRef;
use livemix_common::{bus::SharedBus, cache::SharedCache, telemetry::Metrics};

use crate::{config::Settings, db::Db, edge_link::EdgeLink, segments::SegmentLoader};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cache: SharedCache,
    pub bus: SharedBus,
    pub edges: EdgeLink,
    pub loader: Arc<SegmentLoader>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Metrics {
        state.metrics.clone()
    }
}

impl AppState {
    /// Publishes a system event on the broadcast topic without making the caller wait or fail for it.
    pub fn broadcast(&self, body: livemix_common::messages::Message) {
        if self.settings.broadcast_topic.is_empty() {
            return;
        }
        let bus = self.bus.clone();
        let topic = self.settings.broadcast_topic.clone();
        tokio::spawn(async move {
            let envelope = livemix_common::messages::Envelope::new(body);
            if let Err(err) = bus.publish(&topic, &envelope).await {
                tracing::warn!(%err, "broadcast failed");
            }
        });
    }
}
