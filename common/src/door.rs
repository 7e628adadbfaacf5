//! Checks made on a request's head before anything reads its body.
//!
//! A handler's body extractor buffers up to its route's limit; a check made after it lets an unauthenticated
//! client make the server hold that much per connection (200 trickling 8 MB bodies hold 1.6 GB). The [`Door`]
//! runs as middleware after routing and before the handler: it refuses on the head alone (loopback-only host
//! names, cross-site writes, the service's own [`Gate`] for credentials), then reserves the body's bytes in a
//! process-wide [`BodyBudget`], so what request bodies hold in memory is bounded whatever clients send.
//!
//! Mount it with `router.route_layer(axum::middleware::from_fn_with_state(door, door::guard))`: `route_layer`
//! puts it inside the API conventions (request ids) and after routing ([`axum::extract::MatchedPath`] and path
//! parameters are known), and leaves 404 and 405 replies alone.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::HttpBody,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    ApiError,
    credentials::{is_loopback, is_loopback_host},
};

/// `error.reason` of a request refused because the body budget is spent (503, with `Retry-After`).
pub const BUSY: &str = "busy";

/// A service's own checks of a request's head.
pub trait Gate: Send + Sync + 'static {
    /// Checks credentials and whatever else the head decides (names in the path or headers), and says how many
    /// body bytes the handler reads at most: `None` when it reads no body (nothing is reserved then).
    /// May await extractors (path parameters), never the body.
    fn admit(&self, parts: &mut Parts) -> impl Future<Output = Result<Option<u64>, ApiError>> + Send;
}

/// The pre-body checks of one API: its [`Gate`], whether it answers loopback host names only, and the body
/// budget it draws on.
pub struct Door<G> {
    gate: Arc<G>,
    loopback_only: bool,
    budget: BodyBudget,
}

impl<G> Clone for Door<G> {
    fn clone(&self) -> Self {
        Self { gate: Arc::clone(&self.gate), loopback_only: self.loopback_only, budget: self.budget.clone() }
    }
}

impl<G: Gate> Door<G> {
    pub fn new(gate: G, budget: BodyBudget) -> Self {
        Self { gate: Arc::new(gate), loopback_only: false, budget }
    }

    /// Answer only requests from loopback peers addressed to a loopback host name: what an API without
    /// credentials must do, so a web page cannot reach it through a DNS name pointed at 127.0.0.1 (DNS
    /// rebinding).
    pub fn loopback_only(mut self, yes: bool) -> Self {
        self.loopback_only = yes;
        self
    }

    /// Every check, in order; a refusal leaves the body unread. On success, the body's share of the budget
    /// (`None` when there is no body to read).
    pub fn admit<'a>(
        &'a self,
        parts: &'a mut Parts,
        body: &axum::body::Body,
    ) -> impl Future<Output = Result<Option<BodyPermit>, ApiError>> + Send + 'a {
        // Read before awaiting: a body is not `Sync`, so the future cannot hold a reference to it.
        let (empty, exact) = (body.is_end_stream(), body.size_hint().exact());
        self.admit_sized(parts, empty, exact)
    }

    async fn admit_sized(
        &self,
        parts: &mut Parts,
        empty: bool,
        exact: Option<u64>,
    ) -> Result<Option<BodyPermit>, ApiError> {
        if self.loopback_only {
            check_loopback(parts)?;
        }
        check_not_cross_site(&parts.method, &parts.headers, &parts.uri)?;
        let Some(limit) = self.gate.admit(parts).await? else { return Ok(None) };
        if empty {
            return Ok(None);
        }
        // Hyper knows the exact size from Content-Length (HTTP/1) or content-length (HTTP/2); a chunked body
        // reserves the route's whole limit, which its extractor enforces.
        let need = match exact {
            Some(announced) if announced > limit => {
                return Err(ApiError::payload_too_large(format!("the body may have at most {limit} bytes")));
            }
            Some(announced) => announced,
            None => limit,
        };
        if need == 0 {
            return Ok(None);
        }
        self.budget.reserve(need).await.map(Some)
    }
}

/// The door as axum middleware: refuses on the head, or runs the handler holding the body's budget share until
/// the reply is ready (the buffered body is gone by then).
pub async fn guard<G: Gate>(State(door): State<Door<G>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match door.admit(&mut parts, &body).await {
        Ok(permit) => {
            let response = next.run(Request::from_parts(parts, body)).await;
            drop(permit);
            response
        }
        Err(err) => {
            let busy = err.reason == BUSY;
            let mut response = err.into_response();
            if busy {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// Bytes of request bodies the process may hold at once, shared by every API that draws on it (clones share).
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: u32,
    /// How long a request waits for room before it is refused: long enough to ride out a burst of uploads.
    wait: Duration,
}

/// A request body's share of the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct BodyPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl BodyBudget {
    /// A budget of `total` bytes (at most 4 GiB), waiting up to `wait` for room.
    pub fn new(total: u64, wait: Duration) -> Self {
        let total = u32::try_from(total).unwrap_or(u32::MAX).max(1);
        Self { bytes: Arc::new(Semaphore::new(total as usize)), total, wait }
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reserves `bytes`: at once, or within the budget's wait, or 503 (`busy`); a body larger than the whole
    /// budget could never fit (413).
    pub async fn reserve(&self, bytes: u64) -> Result<BodyPermit, ApiError> {
        let n = u32::try_from(bytes)
            .ok()
            .filter(|n| *n <= self.total)
            .ok_or_else(|| ApiError::payload_too_large(format!("a body may have at most {} bytes here", self.total)))?;
        if let Ok(permit) = Arc::clone(&self.bytes).try_acquire_many_owned(n) {
            return Ok(BodyPermit(permit));
        }
        match tokio::time::timeout(self.wait, Arc::clone(&self.bytes).acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(BodyPermit(permit)),
            _ => {
                tracing::warn!(bytes, budget = self.total, "request body budget spent; refusing a body");
                Err(ApiError::unavailable("too many request bodies are being received at once; retry shortly")
                    .with_reason(BUSY))
            }
        }
    }
}

/// Refuses a request unless it comes from a loopback peer (when the server recorded it) and every host name it
/// is addressed to is a loopback one: the `Host` header and the request target's authority (HTTP/2's
/// `:authority`, or an HTTP/1 absolute-form target). A request naming no host at all (HTTP/1.0) passes.
pub fn check_loopback(parts: &Parts) -> Result<(), ApiError> {
    let refused = || {
        ApiError::forbidden("this server has no credentials set, so it answers only requests to localhost or 127.0.0.1")
    };
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && !is_loopback(peer)
    {
        return Err(refused());
    }
    for host in hosts(&parts.headers, &parts.uri) {
        if !host.is_some_and(is_loopback_host) {
            return Err(refused());
        }
    }
    Ok(())
}

/// Every host name a request is addressed to; `None` for a `Host` header that is not text.
fn hosts<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> impl Iterator<Item = Option<&'a str>> {
    let header = headers.get_all(header::HOST).into_iter().map(|h| h.to_str().ok());
    header.chain(uri.authority().map(|a| Some(a.as_str())))
}

/// The host a request is addressed to: its target's authority (HTTP/2), else its `Host` header.
fn effective_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

/// Refuses what a web page can send without a CORS preflight: a state-changing request from another origin
/// (403), or a `text/plain` / `multipart/form-data` body (415). Clients that are not browsers send no `Origin`.
pub fn check_not_cross_site(method: &Method, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = effective_host(headers, uri).unwrap_or("");
        let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
        if origin_host.is_none_or(|o| !o.eq_ignore_ascii_case(host)) {
            return Err(ApiError::forbidden("requests from web pages of another origin are refused"));
        }
    }
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "text/plain" || essence == "multipart/form-data" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{essence} bodies are refused (what a web form sends); send no content type"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
