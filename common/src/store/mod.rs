//! Durable storage of recorded segments: S3 in production (`s3::S3Store`, with the `s3` feature), a local directory
//! for quick local runs ([`local::LocalStore`]).

pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: String },
    /// May succeed when tried again (network, throttling, a server error).
    #[error("object store {op} of {key}: {source}")]
    Op { op: &'static str, key: String, source: BoxError },
    /// Refused in a way that the same request can never succeed (access denied, no such bucket, a malformed
    /// key): retrying only hides the problem, so callers surface it.
    #[error("object store refused {op} of {key}: {source}")]
    Rejected { op: &'static str, key: String, source: BoxError },
    #[error("object store unreachable: {0}")]
    Unreachable(BoxError),
    /// The configuration asks for a backend this binary was built without (a cargo feature left off).
    #[error("this binary was built without {backend} support; build with --features cloud or {instead}")]
    NotBuiltIn { backend: &'static str, instead: &'static str },
}

impl StoreError {
    /// Whether trying the same request again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::NotFound { .. } | Self::NotBuiltIn { .. })
    }
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Most keys one [`ObjectStore::delete_many`] call takes (S3's `DeleteObjects` limit).
pub const MAX_DELETE_BATCH: usize = 1000;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Deletes an object; deleting a missing one succeeds (the store's state is what was asked for).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes up to [`MAX_DELETE_BATCH`] objects in as few requests as the store allows; one result per key,
    /// in order (a failure of the whole request fails every key).
    async fn delete_many(&self, keys: &[String]) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.delete(key).await);
        }
        results
    }
    /// Up to `max` objects whose keys start with `prefix` and sort after `after` (byte order, as S3 lists).
    async fn list(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Whether the store (and its bucket) answers, for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
}

pub type SharedStore = Arc<dyn ObjectStore>;

/// Where recordings are stored.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// S3 bucket for recordings; without it recordings go to --local-store-dir.
    #[arg(long, env = "LIVEMIX_BUCKET")]
    pub bucket: Option<String>,
    /// S3 endpoint URL for S3-compatible servers (MinIO, moto...); AWS's own when unset.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Create the bucket at start-up if it is missing (dev setups).
    #[arg(long, env = "LIVEMIX_CREATE_BUCKET")]
    pub create_bucket: bool,
    /// Key prefix of recorded segments: objects are `{prefix}/{source_id}/{run}/{seq:012}.ts` (recordings made
    /// before segment ids: `{prefix}/{source_id}/{segment_name}`).
    #[arg(long, env = "LIVEMIX_OBJECT_PREFIX", default_value = "recordings")]
    pub object_prefix: String,
    /// Directory for recordings when no bucket is configured.
    #[arg(long, env = "LIVEMIX_LOCAL_STORE_DIR", default_value = "./data/objects")]
    pub local_store_dir: PathBuf,
}

impl StoreArgs {
    /// S3 when a bucket is configured, else the local directory. A binary built without the `s3` feature refuses a
    /// bucket with [`StoreError::NotBuiltIn`] rather than quietly recording somewhere else.
    pub async fn connect(&self) -> Result<SharedStore, StoreError> {
        Ok(match &self.bucket {
            Some(bucket) => self.connect_s3(bucket).await?,
            None => Arc::new(local::LocalStore::new(self.local_store_dir.clone())),
        })
    }

    #[cfg(feature = "s3")]
    async fn connect_s3(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        Ok(Arc::new(
            s3::S3Store::connect(s3::S3Config {
                bucket: bucket.to_owned(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                create_bucket: self.create_bucket,
            })
            .await?,
        ))
    }

    #[cfg(not(feature = "s3"))]
    async fn connect_s3(&self, _bucket: &str) -> Result<SharedStore, StoreError> {
        Err(StoreError::NotBuiltIn {
            backend: "S3",
            instead: "unset LIVEMIX_BUCKET (--bucket) to record to --local-store-dir",
        })
    }
}

/// `{prefix}/{source_id}/{segment_name}`: the layout of recordings made before segment ids; new ones use
/// [`crate::segment_id::SegmentId::object_key`].
pub fn segment_key(prefix: &str, source_id: uuid::Uuid, segment_name: &str) -> String {
    crate::segment_id::object_key(prefix, source_id, segment_name)
}
