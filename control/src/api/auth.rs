//! The gates of the management and edge-facing APIs, run by the shared door ([`livemix_common::door`]) on the
//! request's head, before any body byte is read.
//!
//! Management: a bearer token when one is configured (without one the API answers loopback only, see
//! [`crate::auth::check_exposure`]); a state-changing request must carry a JSON-compatible body type. The door
//! adds the cross-site and loopback-host checks.
//!
//! Edge-facing: the token says which edge calls ([`EdgeCaller`]); handlers then ask [`EdgeCaller::authorize`]
//! whether the source they name is bound to that edge.

use std::{sync::Arc, time::Duration};

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
use uuid::Uuid;

use crate::{
    auth::{EdgeTokens, TokenDigest},
    config::Settings,
    db::Db,
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

/// Who is calling the edge-facing API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeIdentity {
    /// An edge with its own credentials: it may act only for the sources bound to it.
    Edge(String),
    /// The deprecated shared token: only sources bound to no edge.
    Shared,
    /// An API without credentials (loopback, or `--insecure-no-auth`): any source.
    Open,
}

/// How long a replica trusts what it read about a source's binding; a change made on another replica takes this
/// long to reach it (the replica that made it forgets at once).
const BINDING_TTL: Duration = Duration::from_secs(10);

/// The edges each source is bound to, as recently read. Shared by the edge gate and the management API (which
/// forgets a source here when it binds or releases it).
#[derive(Clone)]
pub struct Bindings(moka::future::Cache<Uuid, Option<Arc<str>>>);

impl Default for Bindings {
    fn default() -> Self {
        Self(moka::future::Cache::builder().max_capacity(100_000).time_to_live(BINDING_TTL).build())
    }
}

impl Bindings {
    async fn owner(&self, db: &Db, source: Uuid) -> ApiResult<Option<Arc<str>>> {
        if let Some(owner) = self.0.get(&source).await {
            return Ok(owner);
        }
        let owner: Option<Arc<str>> = db.source_owner(source).await?.map(Into::into);
        self.0.insert(source, owner.clone()).await;
        Ok(owner)
    }

    pub async fn forget(&self, source: Uuid) {
        self.0.invalidate(&source).await;
    }
}

/// The edge-facing API's credentials.
pub struct EdgeGate {
    tokens: Arc<EdgeTokens>,
    shared: Option<TokenDigest>,
    /// No credentials are configured: every caller is [`EdgeIdentity::Open`].
    open: bool,
    bindings: Bindings,
    max_segment_bytes: u64,
}

impl EdgeGate {
    pub fn door(settings: &Settings, bindings: Bindings, budget: BodyBudget) -> Door<Self> {
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
            bindings,
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
        let caller = EdgeCaller { identity, bindings: self.bindings.clone(), tokens: Arc::clone(&self.tokens) };
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
    bindings: Bindings,
    tokens: Arc<EdgeTokens>,
}

impl std::fmt::Debug for EdgeCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}

impl EdgeCaller {
    /// Whether the caller may act for `source`: an edge only for the sources bound to it, the shared token only
    /// for sources bound to no edge, an API without credentials for any. A source that does not exist is bound to
    /// nobody, so it is refused to an edge exactly like an unbound one (existence is not revealed).
    pub async fn authorize(&self, db: &Db, source: Uuid) -> ApiResult<()> {
        let owner = match &self.identity {
            EdgeIdentity::Open => return Ok(()),
            EdgeIdentity::Edge(_) | EdgeIdentity::Shared => self.bindings.owner(db, source).await?,
        };
        match (&self.identity, owner) {
            (EdgeIdentity::Edge(edge), Some(owner)) if *owner == **edge => Ok(()),
            (EdgeIdentity::Edge(edge), owner) => {
                tracing::warn!(edge, %source, owner = owner.as_deref(), "an edge acted for a source not bound to it");
                Err(ApiError::forbidden(format!(
                    "source {source} is not bound to this edge ({edge}); bind it on the management API with \
                     PUT /v1/source/{source}/edge {{\"edge_id\": \"{edge}\"}}"
                )))
            }
            (EdgeIdentity::Shared, None) => Ok(()),
            (EdgeIdentity::Shared, Some(owner)) => {
                tracing::warn!(%source, %owner, "the shared edge token was used for a source bound to an edge");
                Err(ApiError::forbidden(format!(
                    "source {source} is bound to edge {owner}; only that edge's own token may act for it (the \
                     shared edge token is deprecated)"
                )))
            }
            (EdgeIdentity::Open, _) => Ok(()),
        }
    }

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
