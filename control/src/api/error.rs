//! Where failures become HTTP replies, once for the whole control node.
//!
//! Client errors say what was wrong. Server faults (5xx) say only that something failed and which request it
//! was: the detail (driver text, hosts, SQL) is logged inside the request's span, where the request id finds it,
//! and never reaches a client.

use axum::http::StatusCode;
use livemix_common::{
    ApiError,
    api::{reason, request_id},
    rpc::RpcError,
};

use crate::{db::DbError, domain, lifecycle::LifecycleError, segments::LoadError};

/// A fault of ours as a reply: `status` with a generic message naming the request id; `detail` is logged.
pub fn server_fault(status: StatusCode, what: &str, detail: &dyn std::error::Error) -> ApiError {
    tracing::error!(status = status.as_u16(), error = %detail, "{what} failed");
    let summary = if status == StatusCode::SERVICE_UNAVAILABLE { "is temporarily unavailable" } else { "failed" };
    ApiError::new(status, format!("{what} {summary}; the server log has the details under request id {}", request_id()))
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        db_error(&err)
    }
}

/// A database failure as a reply, also when several requests share it (they waited on one load).
pub fn db_error(err: &DbError) -> ApiError {
    match err {
        DbError::NotFound { .. } => ApiError::not_found(err.to_string()),
        DbError::Conflict(message) => ApiError::conflict(message.clone()),
        DbError::Unavailable(_) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the database", err),
        DbError::Rejected { .. } | DbError::Internal(_) | DbError::Migrate(_) => {
            server_fault(StatusCode::INTERNAL_SERVER_ERROR, "a database operation", err)
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

impl From<domain::Error> for ApiError {
    fn from(err: domain::Error) -> Self {
        use domain::Error as E;
        match err {
            E::Invalid(message) => ApiError::bad_request(message),
            E::Conflict { reason, message } => ApiError::conflict(message).with_reason(reason),
            E::Forbidden(message) => ApiError::forbidden(message),
            E::NotFound(message) => ApiError::not_found(message),
            E::Retry(message) => ApiError::unavailable(message),
            E::Busy { message, retry_after_secs } => {
                ApiError::unavailable(message).with_reason(reason::BUSY).with_retry_after(retry_after_secs)
            }
            E::Unavailable(message) => ApiError::unavailable(message),
            E::Db(err) => err.into(),
            E::SharedDb(err) => db_error(&err),
            E::Shared(err) => match std::sync::Arc::try_unwrap(err) {
                Ok(err) => err.into(),
                Err(shared) => shared_error(&shared),
            },
            E::Lifecycle(err) => err.into(),
            E::Load(err) => err.into(),
            E::Cache(err) => server_fault(StatusCode::SERVICE_UNAVAILABLE, "the segment cache", &*err),
            E::Command { source, then } => command_error(source, then),
        }
    }
}

/// A failed command as a reply: 504 when the edge did not answer, 502 when it refused (both say which edge and
/// why, which is the edge's business, not ours), 503 when our bus failed (detail logged only).
fn command_error(err: RpcError, what_happened: &str) -> ApiError {
    match err {
        RpcError::Timeout { .. } => ApiError::gateway_timeout(format!("{err}; {what_happened}")),
        RpcError::Refused { .. } => ApiError::new(StatusCode::BAD_GATEWAY, format!("{err}; {what_happened}")),
        RpcError::Bus(_) => {
            let mut fault = server_fault(StatusCode::SERVICE_UNAVAILABLE, "the message bus", &err);
            fault.message = format!("{}; {what_happened}", fault.message);
            fault
        }
    }
}

/// A failure several requests share, as a reply to each: the same status as the failure's own.
fn shared_error(err: &domain::Error) -> ApiError {
    use domain::Error as E;
    match err {
        E::Invalid(message) => ApiError::bad_request(message.clone()),
        E::Conflict { reason, message } => ApiError::conflict(message.clone()).with_reason(reason),
        E::Forbidden(message) => ApiError::forbidden(message.clone()),
        E::NotFound(message) => ApiError::not_found(message.clone()),
        E::Retry(message) | E::Unavailable(message) => ApiError::unavailable(message.clone()),
        E::Db(err) => db_error(err),
        E::SharedDb(err) => db_error(err),
        E::Shared(err) => shared_error(err),
        other => server_fault(StatusCode::INTERNAL_SERVER_ERROR, "an operation", other),
    }
}
