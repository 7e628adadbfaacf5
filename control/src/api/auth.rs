//! The doors of the management and edge-facing APIs.
//!
//! Management: a bearer token when one is configured (without one the API listens on loopback only, see
//! [`crate::auth::check_exposure`]), then request-shape checks against browsers being used as a proxy: a
//! state-changing request must carry a JSON-compatible body type and, when it comes from a browser, the origin it
//! was sent to; without a token, the `Host` must be a loopback name (DNS rebinding).
//!
//! Edge-facing: the token says which edge calls ([`EdgeCaller`]); handlers then ask [`EdgeCaller::authorize`]
//! whether that edge owns the source it names.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderMap, Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use livemix_common::{
    ApiError, ApiResult,
    api::check_json_content_type,
    credentials::{Presented, bearer_token, is_loopback_host},
};
use uuid::Uuid;

use crate::{
    auth::{EdgeTokens, TokenDigest},
    config::Settings,
    db::Db,
};

/// The digest of the request's bearer token; 401 when there is none.
fn presented(headers: &HeaderMap) -> ApiResult<Presented> {
    bearer_token(headers)
        .map(Presented::new)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("invalid bearer token")
}

/// What the management API checks on every request but the probes.
#[derive(Debug, Clone)]
pub struct ManagementGuard {
    token: Option<TokenDigest>,
    /// No token and not `--insecure-no-auth`: only loopback host names are answered.
    loopback_hosts_only: bool,
}

impl ManagementGuard {
    pub fn new(settings: &Settings) -> Self {
        let token = settings.management_token.as_ref().map(TokenDigest::of);
        Self { loopback_hosts_only: token.is_none() && !settings.insecure_no_auth, token }
    }

    fn check(&self, req: &Request) -> ApiResult<()> {
        if let Some(token) = &self.token
            && !token.matches(&presented(req.headers())?)
        {
            return Err(invalid_token());
        }
        let host = host_of(req);
        if self.loopback_hosts_only && host.is_some_and(|h| !is_loopback_host(h)) {
            return Err(ApiError::forbidden(
                "this management API has no token, so it answers only requests addressed to localhost; \
                 set LIVEMIX_MANAGEMENT_TOKEN to reach it by another name",
            ));
        }
        if changes_state(req.method()) {
            check_json_content_type(req.headers())?;
            check_origin(req.headers(), host)?;
        }
        Ok(())
    }
}

/// Middleware of the management API's routes.
pub async fn management(guard: Arc<ManagementGuard>, req: Request, next: Next) -> Response {
    match guard.check(&req) {
        Ok(()) => next.run(req).await,
        Err(err) => err.into_response(),
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host (with port) the request was addressed to: `Host`, or the URI's authority (HTTP/2).
fn host_of(req: &Request) -> Option<&str> {
    req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// A browser names the page that sent a request in `Origin`; a state-changing request from a page of another
/// origin (a form on a hostile site) is refused. Clients that are not browsers send no `Origin`.
fn check_origin(headers: &HeaderMap, host: Option<&str>) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::forbidden("cross-origin requests to the management API are refused")),
    }
}

/// Who is calling the edge-facing API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeIdentity {
    /// An edge with its own credentials: it may act only for the sources bound to it.
    Edge(String),
    /// The deprecated shared token, or an API without credentials (loopback or `--insecure-no-auth`): any source.
    AnyEdge,
}

/// How long a replica trusts what it read about a source's owner (a release takes this long to reach it).
const OWNER_TTL: Duration = Duration::from_secs(10);

/// The edge-facing API's credentials and the owners of sources as recently read.
pub struct EdgeGate {
    tokens: EdgeTokens,
    shared: Option<TokenDigest>,
    /// No credentials are configured: every caller is [`EdgeIdentity::AnyEdge`].
    open: bool,
    owners: moka::future::Cache<Uuid, String>,
}

impl EdgeGate {
    pub fn new(settings: &Settings) -> Self {
        let tokens = settings.edge_credentials().unwrap_or_else(|err| {
            // `crate::serve` refuses to start on this; a gate built anyway admits no per-edge token.
            tracing::error!(%err, "edge credentials are invalid; per-edge tokens are refused");
            EdgeTokens::default()
        });
        let shared = settings.edge_token.as_ref().map(TokenDigest::of);
        Self {
            open: !settings.has_edge_credentials(),
            tokens,
            shared,
            owners: moka::future::Cache::builder().max_capacity(100_000).time_to_live(OWNER_TTL).build(),
        }
    }

    fn identify(&self, headers: &HeaderMap) -> ApiResult<EdgeIdentity> {
        if self.open {
            return Ok(EdgeIdentity::AnyEdge);
        }
        let presented = presented(headers)?;
        // Both are always compared, so timing does not tell a shared token from a per-edge one.
        let edge = self.tokens.identify(&presented);
        let shared = self.shared.as_ref().is_some_and(|t| t.matches(&presented));
        match edge {
            Some(id) => Ok(EdgeIdentity::Edge(id.to_owned())),
            None if shared => Ok(EdgeIdentity::AnyEdge),
            None => Err(invalid_token()),
        }
    }
}

/// Middleware of the edge-facing API's routes: identifies the caller for the handlers.
pub async fn edge(gate: Arc<EdgeGate>, mut req: Request, next: Next) -> Response {
    match gate.identify(req.headers()) {
        Ok(identity) => {
            req.extensions_mut().insert(EdgeCaller { identity, gate });
            next.run(req).await
        }
        Err(err) => err.into_response(),
    }
}

/// The authenticated caller of an edge-facing route (extracted from what [`edge`] found).
#[derive(Clone)]
pub struct EdgeCaller {
    pub identity: EdgeIdentity,
    gate: Arc<EdgeGate>,
}

impl std::fmt::Debug for EdgeCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}

impl EdgeCaller {
    /// Whether the caller may act for `source`. An edge with its own credentials claims a source nobody owns
    /// yet and is refused (403) one bound to another edge. A source that does not exist passes: the handler
    /// answers 404 as for anybody.
    pub async fn authorize(&self, db: &Db, source: Uuid) -> ApiResult<()> {
        let EdgeIdentity::Edge(edge) = &self.identity else { return Ok(()) };
        let owner = match self.gate.owners.get(&source).await {
            Some(owner) => Some(owner),
            None => {
                let owner = db.claim_source(source, edge).await?;
                if let Some(owner) = &owner {
                    self.gate.owners.insert(source, owner.clone()).await;
                }
                owner
            }
        };
        match owner {
            Some(owner) if owner != *edge => {
                tracing::warn!(edge, %source, "an edge acted for a source bound to another edge");
                Err(ApiError::forbidden(format!(
                    "source {source} is served by another edge; if it moved to this one, release it on the \
                     management API (DELETE /v1/source/{source}/edge)"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for EdgeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::internal("edge route served without the edge gate"))
    }
}
