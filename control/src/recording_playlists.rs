//! Recording playlists rendered once and served from memory for a moment.
//!
//! A recording's playlist lists every one of its segments; rendering it reads all their rows. Players of one
//! recording ask for it together (and a public URL may be asked for by anyone, as often as they like), so each
//! replica keeps the rendered text briefly: one second while the recording grows (its `Cache-Control` says as
//! much), a little longer once it has ended. Concurrent requests for one recording make one rendering.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use moka::{Expiry, future::Cache};

use crate::segments::etag_of;

/// How long an active recording's playlist is served without reading the database again.
const ACTIVE_FRESH: Duration = Duration::from_secs(1);
/// The same for an ended recording: it changes only when retention or a user deletes segments.
const ENDED_FRESH: Duration = Duration::from_secs(10);

/// A recording's playlist as players get it.
#[derive(Debug)]
pub struct RenderedRecording {
    pub text: Bytes,
    pub etag: String,
    /// The first segments' object keys, loaded ahead of the player.
    pub first_uris: Vec<String>,
    pub active: bool,
}

impl RenderedRecording {
    pub fn new(text: String, first_uris: Vec<String>, active: bool) -> Self {
        let etag = etag_of(text.as_bytes());
        Self { text: Bytes::from(text), etag, first_uris, active }
    }

    fn fresh_for(&self) -> Duration {
        if self.active { ACTIVE_FRESH } else { ENDED_FRESH }
    }
}

struct Freshness;

impl Expiry<String, Arc<RenderedRecording>> for Freshness {
    fn expire_after_create(&self, _id: &String, playlist: &Arc<RenderedRecording>, _at: Instant) -> Option<Duration> {
        Some(playlist.fresh_for())
    }
}

/// This replica's recording playlists, bounded by their bytes.
#[derive(Clone)]
pub struct RecordingPlaylists {
    cache: Cache<String, Arc<RenderedRecording>>,
}

impl RecordingPlaylists {
    /// Room for `max_bytes` of playlist text.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|id: &String, playlist: &Arc<RenderedRecording>| {
                u32::try_from(id.len() + playlist.text.len()).unwrap_or(u32::MAX)
            })
            .expire_after(Freshness)
            .build();
        Self { cache }
    }

    /// The playlist of recording `id`: the copy in memory while it is fresh, else what `render` makes (once,
    /// however many ask at the same time). Errors are not kept.
    pub async fn get<E, F>(&self, id: &str, render: F) -> Result<Arc<RenderedRecording>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Arc<RenderedRecording>, E>>,
    {
        if let Some(playlist) = self.cache.get(id).await {
            return Ok(playlist);
        }
        self.cache.try_get_with(id.to_owned(), render).await
    }

    /// Forgets recording `id` (deleted on this replica).
    pub async fn invalidate(&self, id: &str) {
        self.cache.invalidate(id).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn one_rendering_serves_many_requests_until_it_is_stale() {
        let playlists = RecordingPlaylists::new(1 << 20);
        let renders = AtomicUsize::new(0);
        let render = || async {
            renders.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Arc::new(RenderedRecording::new("#EXTM3U\n".into(), vec![], true)))
        };
        let (a, b) = tokio::join!(playlists.get("r", render()), playlists.get("r", render()));
        assert_eq!(a.unwrap().etag, b.unwrap().etag);
        playlists.get("r", render()).await.unwrap();
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        playlists.invalidate("r").await;
        playlists.get("r", render()).await.unwrap();
        assert_eq!(renders.load(Ordering::SeqCst), 2);
        assert!(playlists.get("e", async { Err::<Arc<RenderedRecording>, _>(()) }).await.is_err());
    }
}
