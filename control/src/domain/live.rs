//! Live streams: the segments edges forward, the live index that numbers them, and what players may fetch. A
//! segment becomes public in three steps, in this order: its source is found streaming, its bytes reach the
//! shared cache, the index lists it. Players get only listed segments.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use livemix_common::segment::NewSegment;
use moka::future::Cache;
use uuid::Uuid;

use super::{
    Error, Result,
    sources::{EdgeIdentity, Sources},
};
use crate::{
    config::Settings,
    db::{Db, DbError, LiveSummary},
    live_playlists::{LivePlaylist, LivePlaylists, Rendered},
    playlist,
    segments::{HotSegments, SegmentBytes, live_cache_key},
};
use livemix_common::cache::SharedCache;

/// Sources whose registered segment length a replica keeps in memory.
const MAX_LIVE_SOURCES: u64 = 100_000;

#[derive(Clone)]
pub struct Live {
    db: Db,
    cache: SharedCache,
    hot: HotSegments,
    playlists: LivePlaylists,
    sources: Sources,
    /// Registered segment lengths (seconds), which never change: a new segment's cache TTL is known before the
    /// statement that indexes it.
    segment_lengths: Cache<Uuid, i32>,
    settings: Arc<Settings>,
}

impl Live {
    pub fn new(db: Db, cache: SharedCache, hot: HotSegments, sources: Sources, settings: Arc<Settings>) -> Self {
        Self {
            db,
            cache,
            hot,
            playlists: LivePlaylists::new(MAX_LIVE_SOURCES),
            sources,
            segment_lengths: Cache::new(MAX_LIVE_SOURCES),
            settings,
        }
    }

    /// Takes a forwarded segment (its record decoded and checked by the caller: a safe name, sane times): cached
    /// with a TTL, then listed as the edge decided it; returns its media sequence number.
    ///
    /// Nothing reaches the shared cache before the source is found streaming: a refused segment is never stored,
    /// and an edge's retry of a listed segment leaves the listed bytes alone. The bytes reach the shared cache
    /// before the index lists them, so no replica lists a segment it cannot serve.
    #[tracing::instrument(skip_all, fields(source = %segment.source(), segment = %segment.name()))]
    pub async fn accept(&self, caller: &EdgeIdentity, segment: NewSegment, data: Bytes) -> Result<i64> {
        let (source, length_ms) = (segment.source(), segment.length_ms());
        self.sources.authorize(caller, source).await?;
        let gate = self.db.live_gate(&segment).await?;
        if !gate.streaming {
            return Err(not_streaming(&gate.source_name, source));
        }
        let segment_length =
            self.segment_lengths.try_get_with(source, self.db.segment_length(source)).await.map_err(Error::SharedDb)?;
        let segment_secs = (length_ms as f64 / 1000.0).max(f64::from(segment_length));
        let ttl = self.settings.live_ttl(segment_secs);
        let size = data.len();
        let key = live_cache_key(source, segment.name());
        if !gate.retried {
            self.cache.put(&key, data.clone(), ttl).await?;
        }
        // LEGACY (forwards without a run, from edges that predate it): the index judges their time gaps itself.
        let gap = Duration::try_from_secs_f64((segment_secs * 1.5).max(2.0)).unwrap_or(Duration::MAX);
        let admission = self.db.add_live_segment(&segment, gap).await?;
        if !admission.streaming {
            // Turned off between the two reads: the bytes stay unlisted, so no player gets them.
            return Err(not_streaming(&admission.source_name, source));
        }
        let Some(live) = admission.segment else {
            return Err(Error::Retry(format!(
                "segment {key} was being indexed by another request at the same moment; retry it"
            )));
        };
        if !gate.retried {
            // Served from this replica's memory from now on, and listed at once by its playlist.
            self.hot.insert(key, data, ttl).await;
            self.playlists.invalidate(source).await;
        }
        tracing::debug!(media_seq = live.media_seq, size, retried = gate.retried, "live segment stored");
        Ok(live.media_seq)
    }

    /// The live playlist of a source, from this replica's memory while fresh.
    pub async fn playlist(&self, source: Uuid) -> Result<LivePlaylist> {
        Ok(self.playlists.get(source, self.render(source)).await?)
    }

    async fn render(&self, source: Uuid) -> std::result::Result<LivePlaylist, DbError> {
        let found = self.db.get_source(source).await?;
        let window = self.settings.live_window(f64::from(found.segment_length));
        let segments = self.db.newest_live_segments(source, i64::from(self.settings.live_segments), window).await?;
        Ok(match playlist::live(&segments) {
            Some(text) => {
                let names = segments.iter().map(|s| s.name.as_str().into());
                LivePlaylist::Ready(Arc::new(Rendered::new(text, playlist::live_target_duration(&segments), names)))
            }
            None => LivePlaylist::Empty {
                name: found.name.into(),
                segment_secs: u32::try_from(found.segment_length).unwrap_or(1),
            },
        })
    }

    /// A live segment for a player: only a listed one (this replica's playlist lists it, or, when the playlist
    /// here lags the database or the player is a little behind, the live index does), from memory or the shared
    /// cache. Bytes an edge sent for a segment that was refused are never listed, so never served.
    pub async fn segment(&self, source: Uuid, name: &str) -> Result<SegmentBytes> {
        let listed_here = matches!(
            self.playlist(source).await,
            Ok(LivePlaylist::Ready(rendered)) if rendered.lists(name)
        );
        if !listed_here && !self.db.is_live_listed(source, name).await? {
            return Err(Error::NotFound(format!("source {source} lists no live segment {name}")));
        }
        match self.hot.live(&self.cache, source, name).await {
            Ok(Some(body)) => Ok(body),
            Ok(None) => {
                Err(Error::NotFound(format!("live segment {name} of source {source} is not (or no longer) cached")))
            }
            Err(err) => Err(Error::Cache(err)),
        }
    }

    /// How many segments the source's live playlist lists now and when the newest arrived.
    pub async fn summary(&self, source: Uuid) -> Result<LiveSummary> {
        let found = self.db.get_source(source).await?;
        let window = self.settings.live_window(f64::from(found.segment_length));
        Ok(self.db.live_summary(found.id, i64::from(self.settings.live_segments), window).await?)
    }

    /// Drops live-index rows whose segments have long left the cache, every minute. Safe on every replica.
    pub async fn run_pruning(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            // Generous: an hour, or far more than any playlist window.
            let settings = &self.settings;
            let max_age =
                settings.live_ttl(3600.0 / f64::from(settings.live_segments + 2)).max(Duration::from_secs(3600));
            match self.db.prune_live_segments(max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned the live segment index"),
                Err(err) => tracing::warn!(%err, "pruning the live segment index failed"),
            }
        }
    }
}

fn not_streaming(name: &str, id: Uuid) -> Error {
    Error::Conflict {
        reason: "conflict",
        message: format!(
            "streaming is off for source {name}; turn it on with PUT /v1/source/{id}/streaming?new_state=true"
        ),
    }
}
