//! Segment bytes for players: live ones straight from the cache, recorded ones from the cache with the object
//! store behind it.
//!
//! Recorded segments are read through [`SegmentLoader`]: concurrent misses for one object share a single
//! object-store read, and serving a segment prefetches the next few so a player rarely waits on the store.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use livemix_common::{
    cache::SharedCache,
    store::{SharedStore, StoreError},
};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use uuid::Uuid;

/// Cache key of a live segment.
pub fn live_key(source: Uuid, name: &str) -> String {
    format!("live:{source}:{name}")
}

/// Cache key of a recorded object.
pub fn object_key(uri: &str) -> String {
    format!("obj:{uri}")
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("recorded segment {0} is missing from the object store")]
    Missing(String),
    #[error("{0}")]
    Store(Arc<StoreError>),
}

type Load = Shared<BoxFuture<'static, Result<Bytes, LoadError>>>;

pub struct SegmentLoader {
    cache: SharedCache,
    store: SharedStore,
    ttl: Duration,
    inflight: Mutex<HashMap<String, Load>>,
    store_reads: Counter,
}

impl SegmentLoader {
    pub fn new(cache: SharedCache, store: SharedStore, ttl: Duration, store_reads: Counter) -> Self {
        Self { cache, store, ttl, inflight: Mutex::default(), store_reads }
    }

    /// The bytes of a recorded object, from the cache or else (once, however many ask at the same time) from the
    /// object store.
    pub async fn get(self: &Arc<Self>, uri: &str) -> Result<Bytes, LoadError> {
        if let Some(data) = self.cached(uri).await {
            return Ok(data);
        }
        let load = {
            let mut inflight = self.inflight.lock();
            inflight
                .entry(uri.to_owned())
                .or_insert_with(|| {
                    let this = Arc::clone(self);
                    let uri = uri.to_owned();
                    async move {
                        let result = this.load(&uri).await;
                        this.inflight.lock().remove(&uri);
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        load.await
    }

    /// Loads into the cache the objects not yet there, in the background. Presence is checked with `touch`, so
    /// cached segments are not downloaded from the cache just to find out they are there.
    pub fn prime(self: &Arc<Self>, uris: Vec<String>) {
        for uri in uris {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                if this.cache.touch(&object_key(&uri), this.ttl).await.unwrap_or(false) {
                    return;
                }
                if let Err(err) = this.get(&uri).await {
                    tracing::warn!(%uri, %err, "prefetching a recorded segment failed");
                }
            });
        }
    }

    async fn cached(&self, uri: &str) -> Option<Bytes> {
        match self.cache.get(&object_key(uri)).await {
            Ok(hit) => hit,
            Err(err) => {
                tracing::warn!(%uri, %err, "cache read failed; reading the object store");
                None
            }
        }
    }

    async fn load(&self, uri: &str) -> Result<Bytes, LoadError> {
        // Re-check: a load that just finished may have filled the cache between our miss and this call.
        if let Some(data) = self.cached(uri).await {
            return Ok(data);
        }
        self.store_reads.inc();
        let data = self.store.get(uri).await.map_err(|err| match err {
            StoreError::NotFound { key } => LoadError::Missing(key),
            other => LoadError::Store(Arc::new(other)),
        })?;
        if let Err(err) = self.cache.put(&object_key(uri), data.clone(), self.ttl).await {
            tracing::warn!(%uri, %err, "caching a recorded segment failed");
        }
        Ok(data)
    }
}
