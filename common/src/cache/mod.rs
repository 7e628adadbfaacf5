//! Short-lived storage of segment bytes: memcached in production ([`memcached::MemcachedCache`]), a bounded
//! in-process map for quick local runs ([`memory::MemoryCache`]).

pub mod memcached;
pub mod memory;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("connecting to memcached at {url}: {source}")]
    Connect { url: String, source: memcache::MemcacheError },
    #[error("cache {op} of {key}: {source}")]
    Op { op: &'static str, key: String, source: memcache::MemcacheError },
    #[error("cache {op} of {key}: {size} bytes exceeds the cache's item size limit of {limit} bytes")]
    TooLarge { op: &'static str, key: String, size: usize, limit: usize },
    #[error("cache worker failed: {0}")]
    Worker(String),
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
    pub fn connect(&self) -> Result<SharedCache, CacheError> {
        Ok(match &self.memcached_url {
            Some(url) => Arc::new(memcached::MemcachedCache::connect(url)?),
            None => Arc::new(memory::MemoryCache::new(self.memory_cache_bytes)),
        })
    }
}
