//! The gates of the management and edge-facing APIs, run by the shared door ([`livemix_common::door`]) on the
//! request's head, before any body byte is read.
//!
//! Management: a bearer token when one is configured (without one the API answers loopback only, see
//! [`crate::auth::check_exposure`]); a state-changing request must carry a JSON-compatible body type. The door
//! adds the cross-site and loopback-host checks.
//!
//! Edge-facing: the token says which edge calls ([`EdgeCaller`]); the operations then check that the source
//! named is bound to that edge ([`crate::domain::sources::Sources::authorize`]).

use std::sync::Arc;

use crate::{
    auth::{EdgeTokens, TokenDigest},
    config::Settings,
    domain::sources::EdgeIdentity,
};
use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::{HeaderMap, Method, request::Parts},
};
use livemix_common::{
    ApiError, ApiResult,
    api::check_json_content_type,
    credentials::{Presented, bearer_token},
    door::{BodyBudget, Door, Gate},
};

/// The largest management request body: JSON documents of a few fields.
pub const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;
/// The largest status report an edge sends.
pub const STATUS_BODY_LIMIT: usize = 64 * 1024;

/// The digest of the request's bearer token; 401 when there is none.
fn presented(headers: &HeaderMap) -> ApiResult<Presented> {
    bearer_token(headers)
        .map(Presented::new)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("invalid bearer token")
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether an API without credentials must answer loopback host names only: unless the admin insisted with
/// `--insecure-no-auth`, it does (DNS rebinding).
fn loopback_only(protected: bool, settings: &Settings) -> bool {
    !protected && !settings.insecure_no_auth
}

/// What the management API checks on every request but the probes and the console's page.
#[derive(Debug, Clone)]
pub struct ManagementGate {
    token: Option<TokenDigest>,
}

impl ManagementGate {
    pub fn door(settings: &Settings, budget: BodyBudget) -> Door<Self> {
        let token = settings.management_token.as_ref().map(TokenDigest::of);
        let loopback_only = loopback_only(token.is_some(), settings);
        Door::new(Self { token }, budget).loopback_only(loopback_only)
    }
}

impl Gate for ManagementGate {
    async fn admit(&self, parts: &mut Parts) -> ApiResult<Option<u64>> {
        if let Some(token) = &self.token
            && !token.matches(&presented(&parts.headers)?)
        {
            return Err(invalid_token());
        }
        if !changes_state(&parts.method) {
            return Ok(None);
        }
        check_json_content_type(&parts.headers)?;
        Ok(Some(MANAGEMENT_BODY_LIMIT as u64))
    }
}

/// The edge-facing API's credentials.
pub struct EdgeGate {
    tokens: Arc<EdgeTokens>,
    shared: Option<TokenDigest>,
    /// No credentials are configured: every caller is [`EdgeIdentity::Open`].
    open: bool,
    max_segment_bytes: u64,
}

impl EdgeGate {
    pub fn door(settings: &Settings, budget: BodyBudget) -> Door<Self> {
        let tokens = settings.edge_credentials().unwrap_or_else(|err| {
            // `crate::serve` refuses to start on this; a gate built anyway admits no per-edge token.
            tracing::error!(%err, "edge credentials are invalid; per-edge tokens are refused");
            EdgeTokens::default()
        });
        let open = !settings.has_edge_credentials();
        let gate = Self {
            tokens: Arc::new(tokens),
            shared: settings.edge_token.as_ref().map(TokenDigest::of),
            open,
            max_segment_bytes: settings.max_segment_bytes as u64,
        };
        Door::new(gate, budget).loopback_only(loopback_only(!open, settings))
    }

    fn identify(&self, headers: &HeaderMap) -> ApiResult<EdgeIdentity> {
        if self.open {
            return Ok(EdgeIdentity::Open);
        }
        let presented = presented(headers)?;
        // Both are always compared, so timing does not tell a shared token from a per-edge one.
        let edge = self.tokens.identify(&presented);
        let shared = self.shared.as_ref().is_some_and(|t| t.matches(&presented));
        match edge {
            Some(id) => Ok(EdgeIdentity::Edge(id.to_owned())),
            None if shared => Ok(EdgeIdentity::Shared),
            None => Err(invalid_token()),
        }
    }
}

impl Gate for EdgeGate {
    async fn admit(&self, parts: &mut Parts) -> ApiResult<Option<u64>> {
        let identity = self.identify(&parts.headers)?;
        let caller = EdgeCaller { identity, tokens: Arc::clone(&self.tokens) };
        parts.extensions.insert(caller);
        match parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str) {
            // MPEG-TS bytes; the door refuses the body types a web page could send unpreflighted.
            Some("/v1/new-segment") => Ok(Some(self.max_segment_bytes)),
            Some("/v1/source/{id}/status") => {
                check_json_content_type(&parts.headers)?;
                Ok(Some(STATUS_BODY_LIMIT as u64))
            }
            Some(_) | None => Ok(None),
        }
    }
}

/// The authenticated caller of an edge-facing route (put there by the [`EdgeGate`]).
#[derive(Clone)]
pub struct EdgeCaller {
    pub identity: EdgeIdentity,
    tokens: Arc<EdgeTokens>,
}

impl std::fmt::Debug for EdgeCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}

impl EdgeCaller {
    /// The topic the control node sends this caller's commands to, from the one it reported: an edge with its
    /// own credentials takes commands on its own id and nothing else; other callers may name no topic of the
    /// control node's (`reserved`) and no edge's id, so no report redirects commands meant for someone else.
    pub fn command_topic<'a>(&self, reported: &'a str, reserved: &[&str]) -> ApiResult<&'a str> {
        match &self.identity {
            EdgeIdentity::Edge(id) if reported == id => Ok(reported),
            EdgeIdentity::Edge(id) => Err(ApiError::forbidden(format!(
                "rr_target_id must be this edge's own id {id:?}: an edge takes commands on its own topic only"
            ))),
            EdgeIdentity::Shared | EdgeIdentity::Open
                if reserved.contains(&reported) || self.tokens.contains(reported) =>
            {
                Err(ApiError::forbidden(format!(
                    "rr_target_id {reported:?} is a topic of the control node or of another edge"
                )))
            }
            EdgeIdentity::Shared | EdgeIdentity::Open => Ok(reported),
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
