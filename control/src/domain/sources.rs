//! Sources: registering, naming, binding to the edge that serves them, streaming on and off, deleting (with a
//! policy for their recordings), retention, and the status reports of their edges.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use livemix_common::{
    api::reason,
    management_api::{Deletion, NewSource, RecordingsPolicy, Usage},
    messages::Message,
    model::{Recording, RecordingMode, Retention, Source, validate_edge_id, validate_source_name},
};
use uuid::Uuid;

use super::{Error, Events, Result, check_text};
use crate::{
    db::{Db, lifecycle::source_delete_refusal},
    edge_link::EdgeLink,
    lifecycle::Lifecycle,
};

/// How long a replica trusts what it read about a source's binding; a change made on another replica takes this
/// long to reach it (the replica that made it forgets at once).
const BINDING_TTL: Duration = Duration::from_secs(10);

/// Who acts for a source on the edge-facing API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeIdentity {
    /// An edge with its own credentials: only the sources bound to it.
    Edge(String),
    /// The deprecated shared token: only sources bound to no edge.
    Shared,
    /// An API without credentials (loopback, or `--insecure-no-auth`): any source.
    Open,
}

#[derive(Clone)]
pub struct Sources {
    db: Db,
    edges: EdgeLink,
    lifecycle: Lifecycle,
    events: Events,
    /// Which edge each source is bound to, as recently read.
    bindings: moka::future::Cache<Uuid, Option<Arc<str>>>,
    /// The edge a source registered without one is bound to.
    default_edge: Option<String>,
}

impl Sources {
    pub fn new(db: Db, edges: EdgeLink, lifecycle: Lifecycle, events: Events, default_edge: Option<String>) -> Self {
        let bindings = moka::future::Cache::builder().max_capacity(100_000).time_to_live(BINDING_TTL).build();
        Self { db, edges, lifecycle, events, bindings, default_edge }
    }

    /// Registers a source, bound to `new.edge` (or the default edge).
    #[tracing::instrument(skip_all, fields(name = %new.name))]
    pub async fn create(&self, mut new: NewSource) -> Result<Source> {
        validate_source_name(&new.name).map_err(Error::Invalid)?;
        if !(1..=3600).contains(&new.segment_len) {
            return Err(Error::Invalid("segment_len must be between 1 and 3600 seconds".into()));
        }
        check_text("description", new.description.as_deref().unwrap_or_default())?;
        if let Some(owner) = &new.owner {
            check_text("owner", owner)?;
        }
        if let Some(retention) = &new.retention {
            retention.validate().map_err(Error::Invalid)?;
        }
        if let Some(edge) = &new.edge {
            validate_edge_id(edge).map_err(Error::Invalid)?;
        }
        new.edge = new.edge.or_else(|| self.default_edge.clone());
        let source = self.db.create_source(&new).await?;
        tracing::info!(id = %source.id, edge = source.edge.as_deref(), "source created");
        Ok(source)
    }

    pub async fn list(&self, name: Option<&str>) -> Result<Vec<Source>> {
        Ok(self.db.list_sources(name).await?)
    }

    pub async fn get(&self, id: Uuid) -> Result<Source> {
        Ok(self.db.get_source(id).await?)
    }

    pub async fn rename(&self, id: Uuid, new_name: &str) -> Result<Source> {
        validate_source_name(new_name).map_err(Error::Invalid)?;
        Ok(self.db.rename_source(id, new_name).await?)
    }

    pub async fn describe(&self, id: Uuid, description: &str) -> Result<Source> {
        check_text("description", description)?;
        Ok(self.db.set_description(id, description).await?)
    }

    /// Saves the wanted streaming state, then tells a reachable edge and waits for it to confirm. An unreachable
    /// edge gets the state with its next status report; a failed command leaves the state saved.
    #[tracing::instrument(skip(self))]
    pub async fn set_streaming(&self, id: Uuid, wanted: bool) -> Result<Source> {
        let source = self.db.set_streaming(id, wanted).await?;
        let delivery = self.edges.change_stream_state(&source).await.map_err(|source| Error::Command {
            source,
            then: "the wanted state is saved and is sent again when the edge next reports",
        })?;
        tracing::info!(source = %id, streaming = wanted, ?delivery, "streaming state changed");
        Ok(source)
    }

    /// Deletes a source. One with recordings needs a policy: `Retain` keeps them listable and playable, `Delete`
    /// deletes them and their objects (refused while any is on hold); without one the delete is refused, so no
    /// routine delete destroys evidence. Active recordings are stopped first, and the edge told.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, id: Uuid, policy: Option<RecordingsPolicy>) -> Result<Deletion> {
        let source = self.db.get_source(id).await?;
        let recordings = self.db.list_recordings(Some(id), false).await?;
        let held = recordings.iter().filter(|r| r.hold).count();
        // Refused before anything changes (the database checks again, atomically).
        if let Some(message) = source_delete_refusal(&source.name, recordings.len(), held, policy) {
            let reason = if policy.is_none() { reason::HAS_RECORDINGS } else { reason::ON_HOLD };
            return Err(Error::Conflict { reason, message });
        }
        // Tell the edge to stop uploading for the source's recordings before the source goes.
        for recording in recordings.iter().filter(|r| r.active) {
            let recording = self.db.stop_recording(&recording.id).await?;
            if let Err(err) = self.edges.stop_recording(&source, &recording).await {
                tracing::warn!(%err, recording = %recording.id, "edge did not confirm stopping a recording of a deleted source");
            }
        }
        let deleted = self.lifecycle.delete_source(id, policy).await?;
        self.bindings.invalidate(&id).await;
        tracing::info!(%id, name = %source.name, "source deleted");
        Ok(deleted)
    }

    /// Sets the source's own retention (a limit left out follows the default); a lower cap applies now.
    #[tracing::instrument(skip(self))]
    pub async fn set_retention(&self, id: Uuid, retention: Retention) -> Result<Source> {
        retention.validate().map_err(Error::Invalid)?;
        let source = self.db.set_retention(id, retention).await?;
        tracing::info!(source = %id, ?retention, "retention set");
        self.lifecycle.enforce_cap(id).await?;
        Ok(source)
    }

    /// What the source stores (also once it was deleted with its recordings retained).
    pub async fn storage(&self, id: Uuid) -> Result<Usage> {
        let storage = self.lifecycle.source_usage(id).await?;
        if storage.segments == 0 {
            // Unknown ids are a 404, not an empty source.
            self.db.get_source(id).await?;
        }
        Ok(storage)
    }

    /// The edge the source is bound to.
    pub async fn edge(&self, id: Uuid) -> Result<Option<String>> {
        self.db.get_source(id).await?;
        Ok(self.db.source_owner(id).await?)
    }

    /// Binds the source to `edge` (or moves it there): from then on only that edge's credentials act for it.
    #[tracing::instrument(skip(self))]
    pub async fn bind(&self, id: Uuid, edge: &str) -> Result<()> {
        validate_edge_id(edge).map_err(Error::Invalid)?;
        self.db.bind_source(id, edge).await?;
        self.bindings.invalidate(&id).await;
        tracing::info!(source = %id, "source bound to its edge");
        Ok(())
    }

    /// Unbinds the source: no per-edge credential acts for it until it is bound again.
    #[tracing::instrument(skip(self))]
    pub async fn release(&self, id: Uuid) -> Result<()> {
        self.db.get_source(id).await?;
        let released = self.db.release_source(id).await?;
        self.bindings.invalidate(&id).await;
        tracing::info!(source = %id, released, "source released from its edge");
        Ok(())
    }

    /// Whether `caller` may act for `source`: an edge only for the sources bound to it, the shared token only for
    /// sources bound to no edge, an API without credentials for any. A source that does not exist is bound to
    /// nobody, so it is refused to an edge exactly like an unbound one (existence is not revealed).
    pub async fn authorize(&self, caller: &EdgeIdentity, source: Uuid) -> Result<()> {
        if *caller == EdgeIdentity::Open {
            return Ok(());
        }
        let owner = self.owner(source).await?;
        match (caller, owner) {
            (EdgeIdentity::Edge(edge), Some(owner)) if *owner == **edge => Ok(()),
            (EdgeIdentity::Edge(edge), owner) => {
                tracing::warn!(edge, %source, owner = owner.as_deref(), "an edge acted for a source not bound to it");
                Err(Error::Forbidden(format!(
                    "source {source} is not bound to this edge ({edge}); bind it on the management API with \
                     PUT /v1/source/{source}/edge {{\"edge_id\": \"{edge}\"}}"
                )))
            }
            (EdgeIdentity::Shared, Some(owner)) => {
                tracing::warn!(%source, %owner, "the shared edge token was used for a source bound to an edge");
                Err(Error::Forbidden(format!(
                    "source {source} is bound to edge {owner}; only that edge's own token may act for it (the \
                     shared edge token is deprecated)"
                )))
            }
            (EdgeIdentity::Shared | EdgeIdentity::Open, _) => Ok(()),
        }
    }

    async fn owner(&self, source: Uuid) -> Result<Option<Arc<str>>> {
        if let Some(owner) = self.bindings.get(&source).await {
            return Ok(owner);
        }
        let owner: Option<Arc<str>> = self.db.source_owner(source).await?.map(Into::into);
        self.bindings.insert(source, owner.clone()).await;
        Ok(owner)
    }

    /// The source named `name` if `caller` may act for it; otherwise as if there were none, so no edge learns
    /// of another edge's sources.
    pub async fn find_for(&self, caller: &EdgeIdentity, name: &str) -> Result<Source> {
        if let Some(source) = self.db.list_sources(Some(name)).await?.pop() {
            match self.authorize(caller, source.id).await {
                Ok(()) => return Ok(source),
                Err(Error::Forbidden(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let bind = match caller {
            EdgeIdentity::Edge(edge) => format!(", \"edge\": \"{edge}\""),
            EdgeIdentity::Shared | EdgeIdentity::Open => String::new(),
        };
        Err(Error::NotFound(format!(
            "no source named {name:?} is registered for this edge; register it on the control node with \
             POST /v1/source {{\"name\": \"{name}\", \"segment_len\": <seconds>{bind}}} (or bind an existing one \
             with PUT /v1/source/{{id}}/edge)"
        )))
    }

    /// An edge says it serves `id` and takes commands on `topic`: the source becomes reachable, and the reply
    /// carries the wanted state (the source and its active recordings), so the edge heals after missed commands.
    #[tracing::instrument(skip(self, caller))]
    pub async fn report_status(
        &self,
        caller: &EdgeIdentity,
        id: Uuid,
        topic: &str,
        local_time: Option<DateTime<Utc>>,
    ) -> Result<(Source, Vec<Recording>)> {
        self.authorize(caller, id).await?;
        let source = self.db.record_status(id, topic, local_time).await?;
        let mut recordings = self.db.list_recordings(Some(id), true).await?;
        if source.recording == RecordingMode::Continuous && !recordings.iter().any(|r| r.continuous) {
            // Healed here whatever undid it (a mode switch whose recording a crash lost): the reply starts it.
            recordings.push(self.db.continuous_recording(id).await?);
        }
        tracing::debug!(source = %source.name, streaming = source.streaming, recordings = recordings.len(), "status report");
        self.events.publish(Message::ReportVideoSourceStatus { source: source.clone() });
        Ok((source, recordings))
    }
}
