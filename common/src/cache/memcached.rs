//! memcached cache, through the `memcache` crate.
//!
//! That client is blocking, so every call runs on tokio's blocking pool; its r2d2 pool gives each concurrent call
//! its own connection. Segments are large (several MB), so the server must run with a raised item size limit
//! (`memcached -I 8m`); values above [`DEFAULT_ITEM_LIMIT`] are refused before they are sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use memcache::{CommandError, MemcacheError, ServerError};
use tracing::{debug, info};

use super::{CacheError, SegmentCache, memcached_key};

/// Largest value we store: the `-I 8m` the servers run with. memcached counts a few dozen bytes of item header
/// and the key against its limit too, so a value this close to it can still be refused by the server; that
/// answer is reported as [`CacheError::TooLarge`] as well.
pub const DEFAULT_ITEM_LIMIT: usize = 8 * 1024 * 1024;
/// Connections per server: one per concurrent call; more callers wait for a free one.
const MAX_CONNECTIONS: u32 = 16;
/// Connections opened at start-up (and kept idle).
const MIN_IDLE_CONNECTIONS: u32 = 2;
/// How long a call waits for a pooled connection (including connecting) before failing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Socket read/write timeout: an 8 MB value on a LAN takes well under this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// memcached reads expirations above 30 days as absolute Unix times.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 60 * 60;

/// A [`SegmentCache`] on one memcached server (or several, keys hashed over them).
#[derive(Clone)]
pub struct MemcachedCache {
    client: memcache::Client,
    item_limit: usize,
}

impl std::fmt::Debug for MemcachedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedCache").field("item_limit", &self.item_limit).finish_non_exhaustive()
    }
}

impl MemcachedCache {
    /// Connects to `url` (`memcache://host:port`, query options as the `memcache` crate reads them). Opens the
    /// first connections right away, so an unreachable server is an error here (after [`CONNECTION_TIMEOUT`]).
    /// Blocks the calling thread meanwhile: meant for start-up.
    pub fn connect(url: &str) -> Result<Self, CacheError> {
        let connect_error = |source: MemcacheError| CacheError::Connect { url: url.to_owned(), source: source.into() };
        let client = memcache::Client::builder()
            .add_server(with_io_timeout(url).map_err(connect_error)?)
            .map_err(connect_error)?
            .with_max_pool_size(MAX_CONNECTIONS)
            .with_min_idle_conns(MIN_IDLE_CONNECTIONS)
            .with_connection_timeout(CONNECTION_TIMEOUT)
            .build()
            .map_err(connect_error)?;
        info!(url, "connected to memcached");
        Ok(Self { client, item_limit: DEFAULT_ITEM_LIMIT })
    }

    /// Overrides the largest value stored (match the server's `-I`).
    pub fn with_item_limit(mut self, limit: usize) -> Self {
        self.item_limit = limit;
        self
    }

    /// Runs a blocking client call off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        call: impl FnOnce(&memcache::Client) -> Result<T, MemcacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || call(&client))
            .await
            .map_err(|e| CacheError::Worker(format!("cache {op} of {key}: {e}")))?
            .map_err(|source| CacheError::Op { op, key: key.to_owned(), source: source.into() })
    }
}

/// The `memcache` crate applies the builder's read/write timeouts to only one pooled connection; a `timeout`
/// URL parameter applies to every connection it opens. Adds ours unless the URL sets one.
fn with_io_timeout(url: &str) -> Result<String, MemcacheError> {
    let mut parsed = url::Url::parse(url).map_err(|e| MemcacheError::BadURL(format!("{url}: {e}")))?;
    if !parsed.query_pairs().any(|(k, _)| k == "timeout") {
        parsed.query_pairs_mut().append_pair("timeout", &IO_TIMEOUT.as_secs_f64().to_string());
    }
    Ok(parsed.into())
}

/// memcached's expiration for `ttl`: whole seconds rounded up (0 would mean "never"), absolute beyond 30 days.
fn expiration(ttl: Duration) -> u32 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = secs.max(1);
    if secs <= MAX_RELATIVE_TTL {
        return secs as u32;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    u32::try_from(now.saturating_add(secs)).unwrap_or(u32::MAX)
}

/// The server refused a value over its item size limit (binary protocol status, or the ASCII protocol's
/// `SERVER_ERROR object too large for cache`).
fn is_too_large(e: &MemcacheError) -> bool {
    match e {
        MemcacheError::CommandError(CommandError::ValueTooLarge) => true,
        MemcacheError::ServerError(ServerError::Error(message)) => message.contains("too large"),
        _ => false,
    }
}

#[async_trait]
impl SegmentCache for MemcachedCache {
    async fn put(&self, key: &str, data: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let (size, limit) = (data.len(), self.item_limit);
        let too_large = || CacheError::TooLarge { op: "put", key: key.to_owned(), size, limit };
        if size > limit {
            return Err(too_large());
        }
        let exp = expiration(ttl);
        let owned_key = memcached_key(key).into_owned();
        match self.run("put", key, move |c| c.set(&owned_key, data.as_ref(), exp)).await {
            Err(CacheError::Op { source, .. }) if source.downcast_ref().is_some_and(is_too_large) => Err(too_large()),
            Err(e) => Err(e),
            Ok(()) => {
                debug!(key, size, ttl_secs = exp, "cached");
                Ok(())
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let owned_key = memcached_key(key).into_owned();
        let value = self.run("get", key, move |c| c.get::<Vec<u8>>(&owned_key)).await?;
        Ok(value.map(Bytes::from))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let owned_key = memcached_key(key).into_owned();
        // `false` means the key was not there: deleted either way.
        self.run("delete", key, move |c| c.delete(&owned_key)).await?;
        Ok(())
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let owned_key = memcached_key(key).into_owned();
        self.run("touch", key, move |c| c.touch(&owned_key, expiration(ttl))).await
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.run("version", "-", |c| c.version()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_round_up_and_never_mean_forever() {
        assert_eq!(expiration(Duration::ZERO), 1);
        assert_eq!(expiration(Duration::from_millis(300)), 1);
        assert_eq!(expiration(Duration::from_millis(1500)), 2);
        assert_eq!(expiration(Duration::from_secs(60)), 60);
        let far = expiration(Duration::from_secs(MAX_RELATIVE_TTL + 10));
        assert!(u64::from(far) > MAX_RELATIVE_TTL * 10, "absolute time expected, got {far}");
    }

    #[test]
    fn io_timeout_is_added_to_urls_without_one() {
        assert_eq!(with_io_timeout("memcache://127.0.0.1:11211").unwrap(), "memcache://127.0.0.1:11211?timeout=5");
        assert_eq!(
            with_io_timeout("memcache://127.0.0.1:11211?timeout=1.5").unwrap(),
            "memcache://127.0.0.1:11211?timeout=1.5"
        );
        assert!(with_io_timeout("not a url").is_err());
    }
}
