//! Where failures become HTTP replies, once for the whole control node.
//!
//! Client errors say what was wrong. Server faults (5xx) say only that something failed and which request it
//! was: the detail (driver text, hosts, SQL) is logged inside the request's span, where the request id finds it,
//! and never reaches a client.

use axum::http::StatusCode;
use livemix_common::{ApiError, api::request_id};

use crate::{db::DbError, lifecycle::LifecycleError, segments::LoadError};

/// A fault of ours as a reply: `status` with a generic message naming the request id; `detail` is logged.
pub fn server_fault(status: StatusCode, what: &str, detail: &dyn std::error::Error) -> ApiError {
    tracing::error!(status = status.as_u16(), error = %detail, "{what} failed");
    let summary = if status == StatusCode::SERVICE_UNAVAILABLE { "is temporarily unavailable" } else { "failed" };
    ApiError::new(status, format!("{what} {summary}; the server log has the details under request id {}", request_id()))
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NotFound { .. } => ApiError::not_found(err.to_string()),
            DbError::Conflict(message) => ApiError::conflict(message),
            DbError::Unavailable(_) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the database", &err),
            DbError::Rejected { .. } | DbError::Internal(_) | DbError::Migrate(_) => {
                server_fault(StatusCode::INTERNAL_SERVER_ERROR, "a database operation", &err)
            }
        }
    }
}

/// A database failure shared by every request that waited on one load (a playlist render, a source lookup).
pub fn shared_db_error(err: std::sync::Arc<DbError>) -> ApiError {
    match &*err {
        DbError::NotFound { .. } => ApiError::not_found(err.to_string()),
        DbError::Conflict(message) => ApiError::conflict(message.clone()),
        DbError::Unavailable(_) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the database", &*err),
        DbError::Rejected { .. } | DbError::Internal(_) | DbError::Migrate(_) => {
            server_fault(StatusCode::INTERNAL_SERVER_ERROR, "a database operation", &*err)
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Missing(_) => ApiError::not_found(err.to_string()),
            LoadError::Store(_) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the object store", &err),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(err: LifecycleError) -> Self {
        match err {
            LifecycleError::Db(err) => err.into(),
            LifecycleError::Store(_) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the object store", &err),
        }
    }
}
