//! What the control node's operations fail with, in the terms of the operation; `crate::api::error` turns each
//! into a reply once.

use std::sync::Arc;

use livemix_common::{cache::CacheError, rpc::RpcError};

use crate::{db::DbError, lifecycle::LifecycleError, segments::LoadError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request breaks a rule (a name, a range, a length); the message says which, for the client.
    #[error("{0}")]
    Invalid(String),
    /// The request contradicts what is stored; `reason` is what clients branch on.
    #[error("{message}")]
    Conflict { reason: &'static str, message: String },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of that name or id (the message says what and how to make one).
    #[error("{0}")]
    NotFound(String),
    /// A concurrent request got there first; the same request may succeed at once.
    #[error("{0}")]
    Retry(String),
    /// Every slot of a bounded kind of work is taken; retry after `retry_after_secs`.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u32 },
    /// Something this operation needs is missing from this deployment (the message says what).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A database failure several waiting requests share (one source lookup).
    #[error(transparent)]
    SharedDb(Arc<DbError>),
    /// A failure several waiting requests share (one playlist rendering).
    #[error(transparent)]
    Shared(Arc<Error>),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The shared segment cache failed.
    #[error("the segment cache: {0}")]
    Cache(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// An edge did not confirm a command; `then` says what became of the request.
    #[error("{source}; {then}")]
    Command { source: RpcError, then: &'static str },
}

impl From<CacheError> for Error {
    fn from(err: CacheError) -> Self {
        Self::Cache(Arc::new(err))
    }
}

impl From<Arc<DbError>> for Error {
    fn from(err: Arc<DbError>) -> Self {
        Self::SharedDb(err)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
