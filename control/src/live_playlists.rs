//! Live playlists rendered once per new segment and served from memory.
//!
//! A live playlist changes only when its source gets a segment, yet every player polls it every target duration.
//! Each replica keeps the rendered text per source and reads the database again only when the entry goes stale:
//! at once on the replica that took a new segment (it invalidates), after a fraction of the target duration on
//! the others (which learn of segments only through the database). A listed segment is always servable: its
//! bytes reach the shared cache before its row reaches the database; and only listed segments are served.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use moka::{Expiry, future::Cache};
use uuid::Uuid;

use crate::segments::etag_of;

/// How much of a target duration a replica's copy may lag behind the database.
const STALENESS_FRACTION: u32 = 4;
/// Bounds of that lag, whatever the segments' length.
const MIN_FRESH: Duration = Duration::from_millis(50);
const MAX_FRESH: Duration = Duration::from_secs(2);

/// A source's live playlist as players get it.
#[derive(Debug, Clone)]
pub enum LivePlaylist {
    Ready(Arc<Rendered>),
    /// The source exists but has no live segments (yet, or any more); `name` is for the 404 message.
    Empty {
        name: Arc<str>,
        segment_secs: u32,
    },
}

#[derive(Debug)]
pub struct Rendered {
    pub text: Bytes,
    pub etag: String,
    /// `#EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u64,
    /// The segment names it lists: what players may fetch without asking the database.
    names: Vec<Box<str>>,
}

impl Rendered {
    pub fn new(text: String, target_duration: u64, names: impl IntoIterator<Item = Box<str>>) -> Self {
        let etag = etag_of(text.as_bytes());
        Self { text: Bytes::from(text), etag, target_duration, names: names.into_iter().collect() }
    }

    pub fn lists(&self, name: &str) -> bool {
        self.names.iter().any(|listed| **listed == *name)
    }

    /// `max-age` of the HTTP reply: half a target duration, as Apple's HLS guidelines ask of caches in front of
    /// a live playlist (0 for one-second segments: caches revalidate, and get a 304 while nothing changed).
    pub fn max_age_secs(&self) -> u64 {
        self.target_duration / 2
    }
}

impl LivePlaylist {
    /// How long a replica may serve this without asking the database again.
    fn fresh_for(&self) -> Duration {
        let target_secs = match self {
            Self::Ready(rendered) => rendered.target_duration,
            Self::Empty { segment_secs, .. } => u64::from(*segment_secs),
        };
        let target = Duration::from_secs(target_secs.clamp(1, 3600));
        (target / STALENESS_FRACTION).clamp(MIN_FRESH, MAX_FRESH)
    }
}

struct Staleness;

impl Expiry<Uuid, LivePlaylist> for Staleness {
    fn expire_after_create(&self, _source: &Uuid, playlist: &LivePlaylist, _at: Instant) -> Option<Duration> {
        Some(playlist.fresh_for())
    }

    fn expire_after_update(
        &self,
        _source: &Uuid,
        playlist: &LivePlaylist,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(playlist.fresh_for())
    }
}

/// The live playlists of this replica, one entry per source.
#[derive(Clone)]
pub struct LivePlaylists {
    cache: Cache<Uuid, LivePlaylist>,
}

impl LivePlaylists {
    /// Room for `sources` playlists (a few hundred bytes each).
    pub fn new(sources: u64) -> Self {
        Self { cache: Cache::builder().max_capacity(sources).expire_after(Staleness).build() }
    }

    /// The playlist of `source`: the copy in memory while it is fresh, else what `render` makes (once, however
    /// many players ask at the same time). Errors (an unknown source, a database fault) are not kept.
    pub async fn get<E, F>(&self, source: Uuid, render: F) -> Result<LivePlaylist, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<LivePlaylist, E>>,
    {
        if let Some(playlist) = self.cache.get(&source).await {
            return Ok(playlist);
        }
        self.cache.try_get_with(source, render).await
    }

    /// Forgets the copy of `source`, so the next request renders the playlist again: this replica took a segment.
    pub async fn invalidate(&self, source: Uuid) {
        self.cache.invalidate(&source).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn ready(text: &str, target_duration: u64) -> LivePlaylist {
        LivePlaylist::Ready(Arc::new(Rendered::new(text.to_owned(), target_duration, [])))
    }

    fn text(playlist: &LivePlaylist) -> &[u8] {
        match playlist {
            LivePlaylist::Ready(rendered) => &rendered.text,
            LivePlaylist::Empty { .. } => b"",
        }
    }

    #[tokio::test]
    async fn renders_once_while_fresh_and_again_after_invalidation() {
        let playlists = LivePlaylists::new(100);
        let renders = AtomicUsize::new(0);
        let render = |body: &'static str| {
            let renders = &renders;
            async move {
                renders.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, std::io::Error>(ready(body, 10))
            }
        };
        let source = Uuid::new_v4();
        // Many players at once: one render.
        let all = futures::future::join_all((0..50).map(|_| playlists.get(source, render("v1")))).await;
        assert!(all.iter().all(|p| text(p.as_ref().unwrap()) == b"v1"));
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        let again = playlists.get(source, render("v2")).await.unwrap();
        assert_eq!(text(&again), b"v1", "fresh: served from memory");
        playlists.invalidate(source).await;
        let after = playlists.get(source, render("v2")).await.unwrap();
        assert_eq!(text(&after), b"v2", "a new segment here: rendered again");
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn copies_go_stale_after_a_fraction_of_the_target_duration() {
        let playlists = LivePlaylists::new(100);
        let source = Uuid::new_v4();
        // A one-second target: fresh for a quarter of a second.
        playlists.get(source, async { Ok::<_, ()>(ready("old", 1)) }).await.unwrap();
        assert_eq!(text(&playlists.get(source, async { Ok::<_, ()>(ready("new", 1)) }).await.unwrap()), b"old");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = playlists.get(source, async { Ok::<_, ()>(ready("new", 1)) }).await.unwrap();
        assert_eq!(text(&later), b"new", "another replica's segment shows within a fraction of a target duration");
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let playlists = LivePlaylists::new(100);
        let source = Uuid::new_v4();
        assert!(playlists.get(source, async { Err::<LivePlaylist, _>("database down") }).await.is_err());
        let back = playlists.get(source, async { Ok::<_, &str>(ready("ok", 2)) }).await.unwrap();
        assert_eq!(text(&back), b"ok");
    }

    #[test]
    fn freshness_is_a_fraction_of_the_target_within_bounds() {
        assert_eq!(ready("", 1).fresh_for(), Duration::from_millis(250));
        assert_eq!(ready("", 4).fresh_for(), Duration::from_secs(1));
        assert_eq!(ready("", 0).fresh_for(), Duration::from_millis(250));
        assert_eq!(ready("", u64::MAX).fresh_for(), MAX_FRESH);
        let empty = LivePlaylist::Empty { name: "cam".into(), segment_secs: 2 };
        assert_eq!(empty.fresh_for(), Duration::from_millis(500));
        let Some(rendered) = (match ready("", 6) {
            LivePlaylist::Ready(r) => Some(r),
            LivePlaylist::Empty { .. } => None,
        }) else {
            unreachable!()
        };
        assert_eq!(rendered.max_age_secs(), 3);
    }
}
