//! A byte-bounded in-process cache with per-entry expiry.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{CacheError, SegmentCache};

pub struct MemoryCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (Bytes, Instant)>,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some((data, _)) = self.entries.remove(key) {
            self.bytes -= data.len();
        }
    }

    /// Drops expired entries, then the soonest-expiring ones until `incoming` more bytes fit.
    fn make_room(&mut self, incoming: usize, max_bytes: usize) {
        let now = Instant::now();
        let expired: Vec<String> =
            self.entries.iter().filter(|(_, (_, exp))| *exp <= now).map(|(k, _)| k.clone()).collect();
        for key in expired {
            self.remove(&key);
        }
        while self.bytes + incoming > max_bytes {
            let Some(key) = self.entries.iter().min_by_key(|(_, (_, exp))| *exp).map(|(k, _)| k.clone()) else {
                break;
            };
            self.remove(&key);
        }
    }
}

impl MemoryCache {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, inner: Mutex::default() }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

#[async_trait]
impl SegmentCache for MemoryCache {
    async fn put(&self, key: &str, data: Bytes, ttl: Duration) -> Result<(), CacheError> {
        if data.len() > self.max_bytes {
            return Err(CacheError::TooLarge { op: "put", key: key.into(), size: data.len(), limit: self.max_bytes });
        }
        let mut inner = self.lock();
        inner.remove(key);
        inner.make_room(data.len(), self.max_bytes);
        inner.bytes += data.len();
        inner.entries.insert(key.into(), (data, Instant::now() + ttl));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some((data, expires)) if *expires > Instant::now() => Ok(Some(data.clone())),
            Some(_) => {
                inner.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        match inner.entries.get_mut(key) {
            Some((_, expires)) if *expires > Instant::now() => {
                *expires = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_and_the_byte_budget_holds() {
        let cache = MemoryCache::new(10);
        cache.put("a", Bytes::from_static(b"12345"), Duration::from_millis(50)).await.unwrap();
        cache.put("b", Bytes::from_static(b"12345"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"12345"[..]));
        // A third entry evicts the soonest-expiring one.
        cache.put("c", Bytes::from_static(b"123"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(cache.get("a").await.unwrap(), None);
        assert!(cache.get("b").await.unwrap().is_some());
        assert!(cache.touch("b", Duration::from_secs(60)).await.unwrap());
        assert!(!cache.touch("a", Duration::from_secs(60)).await.unwrap(), "evicted");
        assert!(cache.lock().bytes <= 10);
        cache.put("d", Bytes::from_static(b"x"), Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(cache.get("d").await.unwrap(), None);
        assert!(cache.put("big", Bytes::from(vec![0; 11]), Duration::from_secs(1)).await.is_err());
    }
}
