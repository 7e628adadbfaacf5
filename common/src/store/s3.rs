//! S3 object store, on `aws-sdk-s3`; also S3-compatible servers (MinIO, moto) through [`S3Config::endpoint`].

use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_sdk_s3::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier},
};
use bytes::Bytes;
use tracing::{debug, info};

use super::{MAX_DELETE_BATCH, ObjectInfo, ObjectStore, StoreError};
use crate::bus::BoxError;

/// Fail fast when the endpoint does not answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound for one request attempt, including a segment upload of several MB.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for a readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Endpoint of an S3-compatible server; AWS's own when `None`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Create the bucket if it is missing (dev setups).
    pub create_bucket: bool,
}

/// An [`ObjectStore`] on one S3 bucket. Credentials come from the SDK's default chain (`AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY`, profile, web identity, instance metadata...).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

/// S3 error codes that no retry of the same request can fix: a missing or misnamed bucket, missing permissions
/// or credentials, a key or body S3 will never take.
const PERMANENT_CODES: &[&str] = &[
    "AccessDenied",
    "AccountProblem",
    "AllAccessDisabled",
    "EntityTooLarge",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidObjectState",
    "KeyTooLongError",
    "MethodNotAllowed",
    "NoSuchBucket",
];

/// The SDK's own `Display` of an error is just "service error"; this keeps the code and message.
fn describe<E: std::error::Error>(e: &E) -> BoxError {
    DisplayErrorContext(e).to_string().into()
}

/// Whether S3 (or the SDK, before sending) refused the request for good.
fn is_permanent<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        // The SDK could not even build the request (e.g. an invalid key): it never will.
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(_) => e.code().is_some_and(|code| PERMANENT_CODES.contains(&code)),
        _ => false,
    }
}

/// A failed operation as a [`StoreError`], [`StoreError::Rejected`] when retrying cannot help.
fn op_error<E, R>(op: &'static str, key: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (key, source) = (key.to_owned(), describe(&e));
    if is_permanent(&e) { StoreError::Rejected { op, key, source } } else { StoreError::Op { op, key, source } }
}

impl S3Store {
    /// Builds the client; with `create_bucket`, also creates the bucket when it is missing (so then the server
    /// must answer). Otherwise nothing is sent until the first call.
    pub async fn connect(config: S3Config) -> Result<Self, StoreError> {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &config.endpoint {
            // S3-compatible servers rarely resolve `{bucket}.{host}` names.
            s3 = s3.endpoint_url(endpoint).force_path_style(true);
        }
        let store = Self { client: Client::from_conf(s3.build()), bucket: config.bucket };
        info!(bucket = %store.bucket, endpoint = ?config.endpoint, region = %config.region, "S3 store configured");
        if config.create_bucket {
            store.create_bucket(&config.region).await?;
        }
        Ok(store)
    }

    /// Creates the bucket unless it exists (and is ours).
    async fn create_bucket(&self, region: &str) -> Result<(), StoreError> {
        let error = |source: BoxError| StoreError::Op { op: "create bucket", key: self.bucket.clone(), source };
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => {
                debug!(bucket = %self.bucket, "bucket exists");
                return Ok(());
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {}
            Err(e) => return Err(error(describe(&e))),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the default location and must not be named.
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => info!(bucket = %self.bucket, "created bucket"),
            // Lost a race with another process creating it.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(error(describe(&e))),
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let size = data.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| op_error("put", key, e))?;
        debug!(bucket = %self.bucket, key, size, "stored object");
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(StoreError::NotFound { key: key.to_owned() });
            }
            Err(e) => return Err(op_error("get", key, e)),
        };
        let data = object
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Op { op: "get", key: key.to_owned(), source: describe(&e) })?
            .into_bytes();
        Ok(data)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers a delete of a missing key with success too.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| op_error("delete", key, e))?;
        Ok(())
    }

    /// One `DeleteObjects` request for the whole batch (S3 takes up to 1,000 keys); per-key errors come back in
    /// its answer.
    async fn delete_many(&self, keys: &[String]) -> Vec<Result<(), StoreError>> {
        if keys.is_empty() {
            return Vec::new();
        }
        if keys.len() > MAX_DELETE_BATCH {
            let error = || StoreError::Rejected {
                op: "delete",
                key: format!("{} keys", keys.len()),
                source: format!("at most {MAX_DELETE_BATCH} keys per batch").into(),
            };
            return keys.iter().map(|_| Err(error())).collect();
        }
        let objects: Result<Vec<_>, _> = keys.iter().map(|key| ObjectIdentifier::builder().key(key).build()).collect();
        let delete = objects.and_then(|objects| Delete::builder().set_objects(Some(objects)).quiet(true).build());
        let sent = match delete {
            Ok(delete) => self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await,
            Err(e) => {
                let source = describe(&e);
                return keys
                    .iter()
                    .map(|key| {
                        Err(StoreError::Rejected { op: "delete", key: key.clone(), source: source.to_string().into() })
                    })
                    .collect();
            }
        };
        match sent {
            Ok(answer) => {
                let failed: std::collections::HashMap<&str, String> = answer
                    .errors()
                    .iter()
                    .filter_map(|e| {
                        let why = format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or(""));
                        e.key().map(|key| (key, why))
                    })
                    .collect();
                keys.iter()
                    .map(|key| match failed.get(key.as_str()) {
                        Some(why) => Err(StoreError::Op { op: "delete", key: key.clone(), source: why.clone().into() }),
                        None => Ok(()),
                    })
                    .collect()
            }
            Err(e) => {
                let permanent = is_permanent(&e);
                let source = describe(&e).to_string();
                keys.iter()
                    .map(|key| {
                        let (key, source) = (key.clone(), source.clone().into());
                        Err(if permanent {
                            StoreError::Rejected { op: "delete", key, source }
                        } else {
                            StoreError::Op { op: "delete", key, source }
                        })
                    })
                    .collect()
            }
        }
    }

    async fn list(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let max = i32::try_from(max.clamp(1, 1000)).unwrap_or(1000);
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after.map(str::to_owned))
            .max_keys(max)
            .send()
            .await
            .map_err(|e| op_error("list", prefix, e))?;
        Ok(listed
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ObjectInfo {
                    key: object.key()?.to_owned(),
                    size: object.size().and_then(|size| u64::try_from(size).ok()).unwrap_or(0),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let head = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(PING_TIMEOUT, head).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let why = match &e {
                    SdkError::ServiceError(s) if s.err().is_not_found() => "does not exist".to_owned(),
                    _ => DisplayErrorContext(&e).to_string(),
                };
                Err(StoreError::Unreachable(format!("bucket {}: {why}", self.bucket).into()))
            }
            Err(_) => Err(StoreError::Unreachable(
                format!("bucket {}: no answer within {PING_TIMEOUT:?}", self.bucket).into(),
            )),
        }
    }
}
