//! Short-lived storage of segment bytes: memcached in production (`memcached::MemcachedCache`, with the `memcached`
//! feature), a bounded in-process map for quick local runs ([`memory::MemoryCache`]).

#[cfg(feature = "memcached")]
pub mod memcached;
pub mod memory;

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::bus::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("connecting to memcached at {url}: {source}")]
    Connect { url: String, source: BoxError },
    #[error("cache {op} of {key}: {source}")]
    Op { op: &'static str, key: String, source: BoxError },
    #[error("cache {op} of {key}: {size} bytes exceeds the cache's item size limit of {limit} bytes")]
    TooLarge { op: &'static str, key: String, size: usize, limit: usize },
    #[error("cache worker failed: {0}")]
    Worker(String),
    /// The configuration asks for a backend this binary was built without (a cargo feature left off).
    #[error("this binary was built without {backend} support; build with --features cloud or {instead}")]
    NotBuiltIn { backend: &'static str, instead: &'static str },
}

#[async_trait]
pub trait SegmentCache: Send + Sync + 'static {
    /// Stores `data` under `key` for `ttl`.
    async fn put(&self, key: &str, data: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// The bytes under `key`, or `None` when missing or expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Extends the entry's TTL; `false` when there is none. Cheaper than `get` for "is it cached?".
    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;
    /// Whether the cache answers (for readiness probes).
    async fn ping(&self) -> Result<(), CacheError>;
}

pub type SharedCache = Arc<dyn SegmentCache>;

/// Where segments are cached.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// memcached server, e.g. `memcache://127.0.0.1:11211`; without it segments are cached in this process.
    #[arg(long, env = "MEMCACHED_URL")]
    pub memcached_url: Option<String>,
    /// Byte budget of the in-process cache (used when no memcached is configured).
    #[arg(long, env = "LIVEMIX_MEMORY_CACHE_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub memory_cache_bytes: usize,
}

impl CacheArgs {
    /// memcached when a URL is configured, else the in-process cache. A binary built without the `memcached`
    /// feature refuses a URL with [`CacheError::NotBuiltIn`].
    pub fn connect(&self) -> Result<SharedCache, CacheError> {
        Ok(match &self.memcached_url {
            Some(url) => connect_memcached(url)?,
            None => Arc::new(memory::MemoryCache::new(self.memory_cache_bytes)),
        })
    }
}

#[cfg(feature = "memcached")]
fn connect_memcached(url: &str) -> Result<SharedCache, CacheError> {
    Ok(Arc::new(memcached::MemcachedCache::connect(url)?))
}

#[cfg(not(feature = "memcached"))]
fn connect_memcached(_url: &str) -> Result<SharedCache, CacheError> {
    Err(CacheError::NotBuiltIn {
        backend: "memcached",
        instead: "unset MEMCACHED_URL (--memcached-url) to cache segments in this process",
    })
}

/// Longest key memcached accepts, in bytes.
pub const MEMCACHED_MAX_KEY: usize = 250;
/// How much of a hashed key's start is kept readable (for `memcached-tool` dumps and logs).
const READABLE_PREFIX: usize = 160;
/// Marks a hashed key; keys kept as they are never contain it, so the two kinds cannot collide.
const HASH_MARK: char = '~';

/// The key memcached stores `key` under. Short keys of visible ASCII stay as they are; anything longer than
/// memcached's 250-byte limit, or with bytes its text protocol cannot carry (spaces, control characters,
/// non-ASCII), or with the hash mark becomes its readable start plus `~` and the SHA-256 of the whole key: a segment
/// name near 255 bytes must not make a source's live segments uncacheable.
pub fn memcached_key(key: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && b != HASH_MARK as u8;
    if key.len() <= MEMCACHED_MAX_KEY && key.bytes().all(plain) {
        return Cow::Borrowed(key);
    }
    let readable = key.bytes().take(READABLE_PREFIX).take_while(|b| plain(*b)).count();
    let digest = Sha256::digest(key.as_bytes());
    let mut hashed = String::with_capacity(readable + 1 + 64);
    // The prefix is ASCII, so slicing at a byte count is slicing at a character boundary.
    hashed.push_str(&key[..readable]);
    hashed.push(HASH_MARK);
    for byte in digest {
        hashed.push_str(&format!("{byte:02x}"));
    }
    Cow::Owned(hashed)
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn short_keys_stay_readable_and_long_ones_fit() {
        assert_eq!(memcached_key("live/3f/seg-1.ts"), "live/3f/seg-1.ts");
        let long = format!("live/{}/{}.ts", uuid::Uuid::nil(), "n".repeat(252));
        let hashed = memcached_key(&long);
        assert!(hashed.len() <= MEMCACHED_MAX_KEY, "{} bytes", hashed.len());
        assert!(hashed.starts_with("live/00000000-"), "{hashed}");
        let other = format!("live/{}/{}.ts", uuid::Uuid::nil(), "n".repeat(251) + "m");
        assert_ne!(memcached_key(&other), hashed, "keys differing only past the readable start stay apart");
        for awkward in ["a b", "caf\u{e9}", "tab\tkey", "x~y", "\u{1F600}"] {
            let key = memcached_key(awkward);
            assert!(key.len() <= MEMCACHED_MAX_KEY && key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
            assert!(key.contains(HASH_MARK), "{key:?}");
        }
    }
}
