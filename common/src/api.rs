//! The JSON conventions every LiveMix HTTP API follows.
//!
//! Every reply is `{"success": bool, "request_id": "<uuid>", ...}`; errors add
//! `"error": {"code": <http status>, "reason": "<machine-readable>", "message": "..."}`. The request id is made by [`request_context`], returned
//! in `X-Request-ID`, attached to the request's tracing span and read back by [`Reply`] and [`ApiError`] when
//! they render, so handlers never pass it around.

use std::time::Instant;

use axum::{
    Router,
    extract::{FromRequest, FromRequestParts, Request, rejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::telemetry::HttpMetrics;

tokio::task_local! {
    static REQUEST_ID: Uuid;
}

/// The id of the request being handled (nil outside a request).
pub fn request_id() -> Uuid {
    REQUEST_ID.try_with(|id| *id).unwrap_or_else(|_| Uuid::nil())
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// A successful JSON reply: the fields of `T` next to `success` and `request_id`.
#[derive(Debug)]
pub struct Reply<T>(pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let mut body = match serde_json::to_value(&self.0) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => Map::new(),
            Ok(other) => {
                let mut map = Map::new();
                map.insert("result".into(), other);
                map
            }
            Err(err) => {
                return ApiError::internal(format!("encoding reply: {err}")).into_response();
            }
        };
        body.insert("success".into(), Value::Bool(true));
        body.insert("request_id".into(), Value::String(request_id().to_string()));
        axum::Json(Value::Object(body)).into_response()
    }
}

/// A reply with only `success` and `request_id`.
pub fn ok() -> Reply<Map<String, Value>> {
    Reply(Map::new())
}

/// Machine-readable `error.reason` values beyond the one each status has (see [`ApiError::reason`]).
pub mod reason {
    /// 404 for a path no route serves: a wrong URL, never a missing object (whose reason is `not_found`).
    pub const NO_SUCH_ROUTE: &str = "no_such_route";
    pub const NOT_FOUND: &str = "not_found";
    /// 409: the source still has recordings; say `?recordings=retain` or `?recordings=delete`.
    pub const HAS_RECORDINGS: &str = "has_recordings";
    /// 409: the recording (or one of the source's) is on hold; lift the hold first.
    pub const ON_HOLD: &str = "on_hold";
    /// 409: a source's continuous recording stops (and can then be deleted) only by switching the source to
    /// on-demand recording.
    pub const CONTINUOUS: &str = "continuous";
    /// 503: every export slot is taken; retry after the `Retry-After` seconds.
    pub const BUSY: &str = "busy";
}

/// An error reply. Client errors are logged at `warn`, server errors at `error`, both inside the request span.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// What clients branch on (`not_found`, `no_such_route`, `conflict`...), so they never parse `message`.
    pub reason: &'static str,
    pub message: String,
    /// `Retry-After` seconds, for refusals that pass with time (a 503 of a full server).
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    /// An error whose reason is the status's own (`bad_request`, `not_found`, `gateway_timeout`...).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, reason: status_reason(status), message: message.into(), retry_after_secs: None }
    }
    /// The same error, telling the client to retry after `secs`.
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
    /// The same error with a more precise machine-readable reason.
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request rejected");
        }
        let body = json!({
            "success": false,
            "request_id": request_id().to_string(),
            "error": {"code": self.status.as_u16(), "reason": self.reason, "message": self.message},
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

/// `bad_request` for 400, `not_found` for 404...: the status's canonical name in snake case.
fn status_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => reason::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        s if s.is_client_error() => "client_error",
        _ => "internal",
    }
}

/// The `error` object of an error reply, as clients read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The HTTP status.
    pub code: u16,
    /// What programs branch on: the status's name in snake case (`bad_request`, `not_found`, `conflict`...) or a
    /// more precise one (`no_such_route`, `has_recordings`, `on_hold`, `continuous`, `busy`). Absent in replies of
    /// LiveMix versions before it was added.
    #[serde(default)]
    pub reason: Option<String>,
    /// For people; may change between versions.
    pub message: String,
}

impl ErrorBody {
    /// Reads the `error` object of a reply body; a body that is not one (a proxy's HTML page, say) gives its
    /// first 300 characters as the message, with no reason.
    pub fn from_reply(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct ErrorReply {
            error: ErrorBody,
        }
        serde_json::from_slice::<ErrorReply>(body).map(|reply| reply.error).unwrap_or_else(|_| Self {
            code: status,
            reason: None,
            message: String::from_utf8_lossy(body).chars().take(300).collect(),
        })
    }
}

/// The fields every successful JSON reply has; the route's named object (`source`, `recordings`...) stands beside
/// them. Only documents the shape ([`Reply`] writes it).
#[cfg(feature = "openapi")]
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Success {
    /// Always `true`.
    #[schema(value_type = bool, example = true)]
    pub success: bool,
    /// Also in the `X-Request-ID` header and in the server's logs.
    pub request_id: Uuid,
}

/// Every error reply ([`ApiError`] writes it).
#[cfg(feature = "openapi")]
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorReply {
    /// Always `false`.
    #[schema(example = false)]
    pub success: bool,
    /// Also in the `X-Request-ID` header and in the server's logs.
    pub request_id: Uuid,
    pub error: ErrorBody,
}

macro_rules! rejection_into_api_error {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            /// Keeps 413 and 415; a body that stopped arriving is 408; any other malformed input (axum says 422
            /// for well-formed JSON of the wrong shape) is a plain 400, as the API promises.
            fn from(rejection: $rejection) -> Self {
                if body_timed_out(&rejection) {
                    return Self::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time");
                }
                let status = match rejection.status() {
                    s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
                    s if s.is_server_error() => s,
                    _ => StatusCode::BAD_REQUEST,
                };
                Self::new(status, rejection.body_text())
            }
        }
    )*};
}
rejection_into_api_error!(
    rejection::JsonRejection,
    rejection::QueryRejection,
    rejection::PathRejection,
    rejection::BytesRejection
);

/// Whether reading the body failed because the server's body timeouts ([`crate::server::Limits`]) cut it off.
fn body_timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// Refuses request bodies that are clearly not JSON (415). JSON may come declared (`application/json`,
/// `application/*+json`) or undeclared: no `Content-Type`, or `application/x-www-form-urlencoded`, which is what
/// `curl -d '{...}'` sends, so the seed's documented commands keep working. Anything else (`text/plain`,
/// `multipart/form-data`: what a hostile web page's form can send) is refused.
pub fn check_json_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || essence.strip_prefix("application/").is_some_and(|sub| sub.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be JSON: send it as application/json, not {essence:?}"),
        ))
    }
}

/// A JSON request body with JSON rejections: 400 bad JSON, 408 a stalled body, 413 too large, 415 a type that is
/// not JSON (see [`check_json_content_type`] for what is accepted).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(req.headers())?;
        let bytes = bytes::Bytes::from_request(req, state).await?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query` with JSON rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with JSON rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The value of a header the request must have, trimmed; 400 when it is missing or not visible ASCII.
pub fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("missing header {name}")))?
        .to_str()
        .map(str::trim)
        .map_err(|_| ApiError::bad_request(format!("header {name} is not visible ASCII")))
}

/// A required header parsed as `T`; 400 naming the header and `what` it should be.
pub fn parse_header<T: std::str::FromStr>(headers: &HeaderMap, name: &str, what: &str) -> ApiResult<T> {
    let raw = required_header(headers, name)?;
    raw.parse().map_err(|_| ApiError::bad_request(format!("header {name}: {raw:?} is not {what}")))
}

/// A raw request body with JSON rejections (413 past the route's body limit).
#[derive(Debug)]
pub struct Body(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(bytes::Bytes::from_request(req, state).await?))
    }
}

/// Wraps a service's router with what every LiveMix API has: request ids, a span per request, access logs,
/// request metrics and JSON replies for unknown routes and methods.
pub fn with_conventions<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    service: &'static str,
    metrics: HttpMetrics,
) -> Router<S> {
    router
        .fallback(|| async { ApiError::not_found("no such route").with_reason(reason::NO_SUCH_ROUTE) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_context(service, metrics.clone(), req, next)
        }))
}

async fn request_context(service: &'static str, metrics: HttpMetrics, req: Request, next: Next) -> Response {
    let id = Uuid::new_v4();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = info_span!("http", %service, request_id = %id, %method, %path);
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id, next.run(req)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::debug!(status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "request done")
    });
    metrics.observe(service, method.as_str(), status.as_u16(), elapsed);
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `Content-Type` of HLS playlists.
pub const M3U8_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Content-Type` of MPEG-TS segments.
pub const TS_CONTENT_TYPE: &str = "video/mp2t";

/// A playlist response that players must not cache (it changes every segment).
pub fn playlist_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, M3U8_CONTENT_TYPE), (header::CACHE_CONTROL, "no-cache")], text).into_response()
}

/// A segment response; segments never change once written, so they may be cached.
pub fn segment_response(data: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, TS_CONTENT_TYPE), (header::CACHE_CONTROL, "public, max-age=3600")], data).into_response()
}

#[cfg(test)]
mod error_body_tests {
    use super::*;

    #[tokio::test]
    async fn error_replies_carry_a_reason_clients_read_back() {
        let response = ApiError::not_found("no source 42").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let error = ErrorBody::from_reply(404, &body);
        assert_eq!(error, ErrorBody { code: 404, reason: Some("not_found".into()), message: "no source 42".into() });

        let route = ApiError::not_found("no such route").with_reason(reason::NO_SUCH_ROUTE);
        let body = axum::body::to_bytes(route.into_response().into_body(), 1 << 16).await.unwrap();
        assert_eq!(ErrorBody::from_reply(404, &body).reason.as_deref(), Some(reason::NO_SUCH_ROUTE));
    }

    #[test]
    fn bodies_that_are_not_error_replies_keep_their_start() {
        let error = ErrorBody::from_reply(502, b"<html>Bad Gateway</html>");
        assert_eq!(error, ErrorBody { code: 502, reason: None, message: "<html>Bad Gateway</html>".into() });
        let old = ErrorBody::from_reply(409, br#"{"success":false,"error":{"code":409,"message":"taken"}}"#);
        assert_eq!(old.reason, None, "replies of older versions have no reason");
        assert_eq!(old.message, "taken");
    }

    #[test]
    fn every_status_has_a_reason() {
        assert_eq!(ApiError::bad_request("x").reason, "bad_request");
        assert_eq!(ApiError::gateway_timeout("x").reason, "gateway_timeout");
        assert_eq!(ApiError::new(StatusCode::IM_A_TEAPOT, "x").reason, "client_error");
        assert_eq!(ApiError::new(StatusCode::BAD_GATEWAY, "x").reason, "internal");
    }
}
