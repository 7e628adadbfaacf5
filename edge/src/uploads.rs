//! Pushed uploads: segments uploaded with `PUT /v1/ingest/{source}/{file}` waiting for the playlist that lists
//! them. ffmpeg uploads each segment just before the playlist, so a few per source at most wait here.
//!
//! The uploads' share of the byte budget is shared fairly between the sources holding uploads: when it is full,
//! an upload is refused only if its own source holds at least its fair share already (the share divided by the
//! sources holding uploads, itself counted); otherwise the source holding the most gives up its oldest uploads.
//! So one camera (or one leaked per-source token) pushing segments it never lists cannot starve the others.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cache::ByteBudget;

/// Uploads kept per source; older ones were never listed and are dropped.
const PER_SOURCE: usize = 16;

/// Uploads no playlist listed within this time are dropped (ffmpeg lists each one a moment after uploading it).
const UNLISTED_FOR: Duration = Duration::from_secs(60);

/// Uploads may hold at most this share (1/n) of the edge's byte budget; the cache gives way for the rest.
const BUDGET_SHARE: usize = 2;

/// Why an upload found no room.
#[derive(Debug, thiserror::Error)]
pub enum UploadsFull {
    /// The uploading source holds its fair share of the upload room already (its uploads not yet listed).
    #[error(
        "source {name:?} holds {held} bytes of pushed segments no playlist has listed yet, at least its share of \
         the edge's upload room ({fair} bytes: {share} bytes shared by the {sources} sources uploading); push the \
         playlist that lists them (segments never listed are dropped after {unlisted_secs} s)"
    )]
    OverShare { name: String, held: usize, fair: usize, share: usize, sources: usize, unlisted_secs: u64 },
    /// One segment larger than the whole share (a budget too small for the segment size).
    #[error("a {size}-byte segment is larger than the edge's whole upload room ({share} bytes, half of --cache-bytes)")]
    TooLarge { size: usize, share: usize },
}
/// One upload waiting for its playlist.
struct Upload {
    name: String,
    data: Bytes,
    at: Instant,
}

/// How long a playlist waits for its newest segment. ffmpeg sends each segment just before the playlist but
/// never waits for the reply, so the two requests race on the edge; without this wait a third of the segments
/// would only be picked up with the next playlist, a segment late.
pub const PUSH_GRACE: Duration = Duration::from_secs(2);

pub struct Uploads {
    waiting: Mutex<HashMap<String, VecDeque<Upload>>>,
    arrived: Notify,
    /// Shared with the cache: the bytes held here count against the edge's one budget.
    budget: Arc<ByteBudget>,
}

impl Uploads {
    pub fn new(budget: Arc<ByteBudget>) -> Self {
        Self { waiting: Mutex::default(), arrived: Notify::new(), budget }
    }

    /// Keeps an uploaded segment until a playlist lists it; a second upload under one name replaces the first.
    /// When the uploads' share of the byte budget has no room, the upload is refused if `source` holds at least its
    /// fair share already; otherwise room is made by dropping the oldest uploads of whichever source holds most.
    pub fn put(&self, source: &str, name: &str, data: Bytes) -> Result<(), UploadsFull> {
        let mut waiting = self.waiting.lock();
        self.drop_unlisted(&mut waiting);
        if let Some(queue) = waiting.get_mut(source) {
            self.remove_where(queue, |u| u.name == name);
        }
        let share = self.budget.max() / BUDGET_SHARE;
        if data.len() > share {
            return Err(UploadsFull::TooLarge { size: data.len(), share });
        }
        if self.budget.pushed() + data.len() > share {
            let held = waiting.get(source).map_or(0, bytes_of);
            let sources = waiting.keys().filter(|s| s.as_str() != source).count() + 1;
            let fair = share / sources;
            if held >= fair {
                let unlisted_secs = UNLISTED_FOR.as_secs();
                let name = source.to_owned();
                return Err(UploadsFull::OverShare { name, held, fair, share, sources, unlisted_secs });
            }
            self.make_room(&mut waiting, share - data.len(), source);
        }
        self.budget.add_pushed(data.len());
        let queue = waiting.entry(source.to_owned()).or_default();
        queue.push_back(Upload { name: name.to_owned(), data, at: Instant::now() });
        while queue.len() > PER_SOURCE {
            if let Some(dropped) = queue.pop_front() {
                self.budget.sub_pushed(dropped.data.len());
                tracing::warn!(source, segment = %dropped.name, "uploaded segment never listed in a playlist; dropped");
            }
        }
        drop(waiting);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Drops the oldest uploads of the source holding the most bytes, one at a time, until at most `target`
    /// bytes are held (there is always enough: `target` is at least zero).
    fn make_room(&self, waiting: &mut HashMap<String, VecDeque<Upload>>, target: usize, uploader: &str) {
        while self.budget.pushed() > target {
            let Some((greediest, queue)) = waiting.iter_mut().max_by_key(|(_, queue)| bytes_of(queue)) else { break };
            let Some(dropped) = queue.pop_front() else { break };
            self.budget.sub_pushed(dropped.data.len());
            tracing::warn!(
                source = %greediest,
                segment = %dropped.name,
                bytes = dropped.data.len(),
                for_source = uploader,
                "the edge's upload room is full: dropped the oldest unlisted upload of the source holding the most"
            );
        }
        waiting.retain(|_, queue| !queue.is_empty());
    }

    fn remove_where(&self, queue: &mut VecDeque<Upload>, drop: impl Fn(&Upload) -> bool) {
        queue.retain(|u| {
            let keep = !drop(u);
            if !keep {
                self.budget.sub_pushed(u.data.len());
            }
            keep
        });
    }

    fn drop_unlisted(&self, waiting: &mut HashMap<String, VecDeque<Upload>>) {
        for queue in waiting.values_mut() {
            self.remove_where(queue, |u| u.at.elapsed() > UNLISTED_FOR);
        }
        waiting.retain(|_, queue| !queue.is_empty());
    }

    /// Takes an uploaded segment, waiting up to `grace` for it to arrive.
    pub async fn take_within(&self, source: &str, name: &str, grace: Duration) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Registered before looking, so an upload landing in between still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(data) = self.take(source, name) {
                return Some(data);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    fn take(&self, source: &str, name: &str) -> Option<Bytes> {
        let mut waiting = self.waiting.lock();
        let queue = waiting.get_mut(source)?;
        let index = queue.iter().position(|u| u.name == name)?;
        let upload = queue.remove(index)?;
        self.budget.sub_pushed(upload.data.len());
        if queue.is_empty() {
            waiting.remove(source);
        }
        Some(upload.data)
    }
}

/// Bytes a source's waiting uploads hold.
fn bytes_of(queue: &VecDeque<Upload>) -> usize {
    queue.iter().map(|u| u.data.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads() -> Uploads {
        Uploads::new(Arc::new(ByteBudget::new(1 << 20)))
    }

    #[tokio::test]
    async fn the_newest_segment_may_arrive_just_after_its_playlist() {
        let uploads = uploads();
        let late = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            uploads.put("cam", "seg-1.ts", Bytes::from_static(b"ts")).unwrap();
        };
        let wait = async {
            assert_eq!(uploads.take_within("cam", "seg-0.ts", Duration::ZERO).await, None, "older: no wait");
            uploads.take_within("cam", "seg-1.ts", PUSH_GRACE).await
        };
        let ((), data) = tokio::join!(late, wait);
        assert_eq!(data, Some(Bytes::from_static(b"ts")));
        assert_eq!(uploads.take_within("cam", "seg-1.ts", Duration::ZERO).await, None, "taken once");
    }

    #[tokio::test]
    async fn only_the_newest_uploads_wait() {
        let uploads = uploads();
        for i in 0..PER_SOURCE + 2 {
            uploads.put("cam", &format!("seg-{i}.ts"), Bytes::from_static(b"ts")).unwrap();
        }
        assert_eq!(uploads.budget.pushed(), PER_SOURCE * 2, "dropped uploads give their bytes back");
        assert_eq!(uploads.take_within("cam", "seg-0.ts", Duration::ZERO).await, None);
        assert!(uploads.take_within("cam", &format!("seg-{}.ts", PER_SOURCE + 1), Duration::ZERO).await.is_some());
    }

    #[test]
    fn pushed_bytes_count_against_the_budget() {
        let budget = Arc::new(ByteBudget::new(100));
        let uploads = Uploads::new(Arc::clone(&budget));
        uploads.put("a", "1.ts", Bytes::from(vec![0; 30])).unwrap();
        uploads.put("b", "1.ts", Bytes::from(vec![0; 20])).unwrap();
        assert_eq!(budget.pushed(), 50, "half the budget is the uploads', and it is full");
        uploads.put("a", "1.ts", Bytes::from(vec![0; 10])).unwrap();
        assert_eq!(budget.pushed(), 30, "a replaced upload gives its bytes back");
        assert!(uploads.take("a", "1.ts").is_some());
        assert_eq!(budget.pushed(), 20);
        assert!(matches!(uploads.put("a", "big.ts", Bytes::from(vec![0; 51])), Err(UploadsFull::TooLarge { .. })));
    }

    fn held(uploads: &Uploads, source: &str) -> usize {
        uploads.waiting.lock().get(source).map_or(0, bytes_of)
    }

    /// A source pushing segments it never lists fills the upload room and is refused; the next camera's uploads still
    /// go in, at the greedy source's expense, and it keeps being refused.
    #[test]
    fn a_greedy_source_cannot_make_another_sources_upload_fail() {
        let budget = Arc::new(ByteBudget::new(200));
        let uploads = Uploads::new(Arc::clone(&budget));
        let seg = |n| Bytes::from(vec![0x47; n]);
        for i in 0..4 {
            uploads.put("greedy", &format!("{i}.ts"), seg(25)).unwrap();
        }
        assert_eq!(budget.pushed(), 100, "the uploads' share is full");
        let refused = uploads.put("greedy", "4.ts", seg(25)).unwrap_err();
        assert!(matches!(refused, UploadsFull::OverShare { held: 100, fair: 100, sources: 1, .. }), "{refused:?}");
        assert!(refused.to_string().contains("\"greedy\"") && refused.to_string().contains("share"), "{refused}");

        // Another camera is under its fair share (0 of 50): the greedy one's oldest uploads make way.
        uploads.put("cam", "0.ts", seg(30)).unwrap();
        assert_eq!((held(&uploads, "greedy"), held(&uploads, "cam")), (50, 30));
        assert!(uploads.waiting.lock()["greedy"].front().is_some_and(|u| u.name == "2.ts"), "oldest dropped first");
        uploads.put("cam", "1.ts", seg(15)).unwrap();
        assert_eq!((held(&uploads, "greedy"), held(&uploads, "cam")), (50, 45), "room was still left");
        uploads.put("cam", "2.ts", seg(10)).unwrap();
        assert_eq!((held(&uploads, "greedy"), held(&uploads, "cam")), (25, 55), "greedy held the most: it gave way");
        let refused = uploads.put("cam", "3.ts", seg(30)).unwrap_err();
        assert!(matches!(refused, UploadsFull::OverShare { fair: 50, sources: 2, .. }), "{refused:?}");
        assert!(uploads.put("greedy", "5.ts", seg(30)).is_ok(), "now under its share, greedy may push again");
        assert_eq!(budget.pushed(), held(&uploads, "greedy") + held(&uploads, "cam"), "the budget counts what is held");
        assert!(budget.pushed() <= 100);

        // A third camera arriving while both hold their shares gets in too.
        uploads.put("cam-3", "0.ts", seg(20)).unwrap();
        assert_eq!(held(&uploads, "cam-3"), 20);
        assert!(budget.pushed() <= 100);
        assert!(uploads.take("cam-3", "0.ts").is_some(), "and its playlist finds it");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever the others push, a source holding less than its fair share is never refused, and the
            /// upload room never holds more than its share.
            #[test]
            fn a_source_under_its_fair_share_always_gets_in(
                pushes in proptest::collection::vec((0..4usize, 1..40usize), 1..80),
            ) {
                let budget = Arc::new(ByteBudget::new(200));
                let uploads = Uploads::new(Arc::clone(&budget));
                for (n, (source, size)) in pushes.into_iter().enumerate() {
                    let source = format!("cam-{source}");
                    let before = held(&uploads, &source);
                    let holders = {
                        let waiting = uploads.waiting.lock();
                        waiting.keys().filter(|s| **s != source).count() + 1
                    };
                    let result = uploads.put(&source, &format!("{n}.ts"), Bytes::from(vec![0; size]));
                    if before < 100 / holders {
                        prop_assert!(result.is_ok(), "{source} held {before} of {holders} sources: {result:?}");
                    }
                    prop_assert!(budget.pushed() <= 100);
                    let total: usize = uploads.waiting.lock().values().map(bytes_of).sum();
                    prop_assert_eq!(total, budget.pushed());
                }
            }
        }
    }
}
