//! The ingest inbox: segments uploaded with `PUT /v1/ingest/{source}/{file}` waiting for the playlist that lists
//! them. ffmpeg uploads each segment just before the playlist, so a few per source at most wait here.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Uploads kept per source; older ones were never listed and are dropped.
const PER_SOURCE: usize = 16;

/// How long a playlist waits for its newest segment. ffmpeg sends each segment just before the playlist but
/// never waits for the reply, so the two requests race on the edge; without this wait a third of the segments
/// would only be picked up with the next playlist, a segment late.
pub const PUSH_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Inbox {
    waiting: Mutex<HashMap<String, VecDeque<(String, Bytes)>>>,
    arrived: Notify,
}

impl Inbox {
    /// Keeps an uploaded segment until a playlist lists it; a second upload under one name replaces the first.
    pub fn put(&self, source: &str, name: &str, data: Bytes) {
        let mut waiting = self.waiting.lock();
        let queue = waiting.entry(source.to_owned()).or_default();
        queue.retain(|(n, _)| n != name);
        queue.push_back((name.to_owned(), data));
        while queue.len() > PER_SOURCE {
            if let Some((dropped, _)) = queue.pop_front() {
                tracing::warn!(source, segment = %dropped, "uploaded segment never listed in a playlist; dropped");
            }
        }
        drop(waiting);
        self.arrived.notify_waiters();
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
        let index = queue.iter().position(|(n, _)| n == name)?;
        let data = queue.remove(index).map(|(_, data)| data);
        if queue.is_empty() {
            waiting.remove(source);
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_newest_segment_may_arrive_just_after_its_playlist() {
        let inbox = Inbox::default();
        let late = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            inbox.put("cam", "seg-1.ts", Bytes::from_static(b"ts"));
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
        let inbox = Inbox::default();
        for i in 0..PER_SOURCE + 2 {
            inbox.put("cam", &format!("seg-{i}.ts"), Bytes::from_static(b"ts"));
        }
        assert_eq!(inbox.take_within("cam", "seg-0.ts", Duration::ZERO).await, None);
        assert!(inbox.take_within("cam", &format!("seg-{}.ts", PER_SOURCE + 1), Duration::ZERO).await.is_some());
    }
}
