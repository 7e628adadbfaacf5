//! The ingest inbox: segments uploaded with `PUT /v1/ingest/{source}/{file}` waiting for the playlist that lists
//! them. ffmpeg uploads each segment just before the playlist, so a few per source at most wait here.

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

/// The inbox may hold at most this share (1/n) of the edge's byte budget; the cache gives way for the rest.
const BUDGET_SHARE: usize = 2;

/// The inbox's share of the byte budget is used up.
#[derive(Debug, thiserror::Error)]
#[error("the edge holds {held} bytes of pushed segments not yet listed in a playlist; over its budget")]
pub struct InboxFull {
    pub held: usize,
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

pub struct Inbox {
    waiting: Mutex<HashMap<String, VecDeque<Upload>>>,
    arrived: Notify,
    /// Shared with the cache: the bytes held here count against the edge's one budget.
    budget: Arc<ByteBudget>,
}

impl Inbox {
    pub fn new(budget: Arc<ByteBudget>) -> Self {
        Self { waiting: Mutex::default(), arrived: Notify::new(), budget }
    }

    /// Keeps an uploaded segment until a playlist lists it; a second upload under one name replaces the first.
    /// Refused when the inbox holds its share of the byte budget already.
    pub fn put(&self, source: &str, name: &str, data: Bytes) -> Result<(), InboxFull> {
        let mut waiting = self.waiting.lock();
        self.drop_unlisted(&mut waiting);
        if let Some(queue) = waiting.get_mut(source) {
            self.remove_where(queue, |u| u.name == name);
        }
        let held = self.budget.pushed();
        if held + data.len() > self.budget.max() / BUDGET_SHARE {
            return Err(InboxFull { held });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> Inbox {
        Inbox::new(Arc::new(ByteBudget::new(1 << 20)))
    }

    #[tokio::test]
    async fn the_newest_segment_may_arrive_just_after_its_playlist() {
        let inbox = inbox();
        let late = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            inbox.put("cam", "seg-1.ts", Bytes::from_static(b"ts")).unwrap();
        };
        let wait = async {
            assert_eq!(inbox.take_within("cam", "seg-0.ts", Duration::ZERO).await, None, "older: no wait");
            inbox.take_within("cam", "seg-1.ts", PUSH_GRACE).await
        };
        let ((), data) = tokio::join!(late, wait);
        assert_eq!(data, Some(Bytes::from_static(b"ts")));
        assert_eq!(inbox.take_within("cam", "seg-1.ts", Duration::ZERO).await, None, "taken once");
    }

    #[tokio::test]
    async fn only_the_newest_uploads_wait() {
        let inbox = inbox();
        for i in 0..PER_SOURCE + 2 {
            inbox.put("cam", &format!("seg-{i}.ts"), Bytes::from_static(b"ts")).unwrap();
        }
        assert_eq!(inbox.budget.pushed(), PER_SOURCE * 2, "dropped uploads give their bytes back");
        assert_eq!(inbox.take_within("cam", "seg-0.ts", Duration::ZERO).await, None);
        assert!(inbox.take_within("cam", &format!("seg-{}.ts", PER_SOURCE + 1), Duration::ZERO).await.is_some());
    }

    #[test]
    fn pushed_bytes_count_against_the_budget() {
        let budget = Arc::new(ByteBudget::new(100));
        let inbox = Inbox::new(Arc::clone(&budget));
        inbox.put("a", "1.ts", Bytes::from(vec![0; 30])).unwrap();
        inbox.put("b", "1.ts", Bytes::from(vec![0; 20])).unwrap();
        assert!(inbox.put("c", "1.ts", Bytes::from(vec![0; 1])).is_err(), "half the budget is the inbox's");
        inbox.put("a", "1.ts", Bytes::from(vec![0; 10])).unwrap();
        assert_eq!(budget.pushed(), 30, "a replaced upload gives its bytes back");
        assert!(inbox.take("a", "1.ts").is_some());
        assert_eq!(budget.pushed(), 20);
    }
}
