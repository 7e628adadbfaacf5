//! The control node's operations, below the HTTP APIs: each module owns what its operations touch (the
//! database, the caches, commands to edges, system events) and undoes its own half-done work. Handlers in
//! `crate::api` parse a request, call one operation and reply; the inbox and the workers call the same
//! operations, so a rule lives in one place whoever triggers it.
//!
//! - [`sources`]: registering, naming, binding to an edge, streaming on and off, deleting, retention.
//! - [`recordings`]: starting and stopping (with the edge's confirmation), holds, deletes, playlists and segments.
//! - [`live`]: segments edges forward, the live index and what players may fetch of it.
//! - [`ranges`]: any time range of a source: its playlist, coverage and segments.
//! - [`evidence`]: recordings' manifests and verification.

mod error;
pub mod evidence;
pub mod live;
pub mod ranges;
pub mod recordings;
pub mod sources;

use livemix_common::{
    bus::SharedBus,
    messages::{Envelope, Message},
};

pub use error::{Error, Result};

/// Longest free text (descriptions, owners) accepted.
pub const MAX_TEXT_LEN: usize = 4096;

/// Refuses text longer than [`MAX_TEXT_LEN`] characters, naming the field. Characters, not bytes: the documents
/// declare it as JSON Schema's `maxLength`, which counts characters.
pub fn check_text(field: &str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(Error::Invalid(format!("{field} is longer than {MAX_TEXT_LEN} characters")));
    }
    Ok(())
}

/// System events (recordings started and stopped, status reports) on the broadcast topic, for whoever listens.
/// Published in the background: no operation waits or fails for them.
#[derive(Clone)]
pub struct Events {
    bus: SharedBus,
    /// Empty: events are off.
    topic: String,
}

impl Events {
    pub fn new(bus: SharedBus, topic: String) -> Self {
        Self { bus, topic }
    }

    pub fn publish(&self, body: Message) {
        if self.topic.is_empty() {
            return;
        }
        let (bus, topic) = (self.bus.clone(), self.topic.clone());
        tokio::spawn(async move {
            if let Err(err) = bus.publish(&topic, &Envelope::new(body)).await {
                tracing::warn!(%err, "broadcast failed");
            }
        });
    }
}
