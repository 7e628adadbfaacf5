//! Messages edges publish to the control node: recorded segments. Pub/Sub keeps them while every replica is
//! down, and redelivers until one acknowledges, so handling must be idempotent.

use livemix_common::{bus::Delivery, messages::Message};
use tokio::sync::mpsc;

use crate::db::Db;

pub async fn run(db: Db, mut inbox: mpsc::Receiver<Delivery>) {
    while let Some(delivery) = inbox.recv().await {
        match &delivery.envelope.body {
            Message::NewVideoRecordingSegment { recording_ids, segment } => {
                match db.add_recorded_segment(recording_ids, segment).await {
                    Ok(linked) => {
                        if linked.len() < recording_ids.len() {
                            tracing::debug!(?recording_ids, ?linked, segment = %segment.name, "segment linked to fewer recordings than named (deleted or repeated)");
                        }
                        tracing::debug!(segment = %segment.name, ?linked, "recorded segment stored");
                        delivery.ack();
                    }
                    // A database hiccup: let the bus deliver it again.
                    Err(err) => {
                        tracing::warn!(%err, segment = %segment.name, "storing a recorded segment failed; will retry");
                        delivery.nack();
                    }
                }
            }
            other => {
                tracing::warn!(kind = other.kind(), "unexpected message on the control topic; dropped");
                delivery.ack();
            }
        }
    }
    tracing::warn!("control topic subscription closed");
}
