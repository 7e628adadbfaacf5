//! The edge's pre-body checks ([`livemix_common::door`]): which route asks for which [`Access`], whether the
//! request's token grants it, and how large a body the route reads. Everything here looks at the request's head
//! only, so a refused client never gets a body byte buffered.

use axum::{
    extract::{FromRequestParts, MatchedPath, RawPathParams},
    http::{Method, request::Parts},
};
use livemix_common::{
    ApiError,
    api::required_header,
    door::{BodyBudget, Door, Gate},
    model::validate_source_name,
};

use crate::auth::{Access, EdgeAuth, Grant};

/// The header ffmpeg names the source in on `POST /v1/playlist`.
pub const SOURCE_HEADER: &str = "Video-Source-Name";

/// Body size limits of the ingest routes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_playlist_bytes: usize,
    pub max_segment_bytes: usize,
}

/// Which credential admitted the request: the preview allows any web origin when a token did, and a playlist
/// POSTed on a source's own token may name only that source's prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub grant: Grant,
}

/// The edge's [`Gate`]: its credentials and body limits.
pub struct EdgeGate {
    auth: EdgeAuth,
    limits: BodyLimits,
}

impl EdgeGate {
    /// The door of the edge API: this gate, loopback host names only when ingest has no token (whatever the
    /// preview's), and `budget` for bodies.
    pub fn door(auth: EdgeAuth, limits: BodyLimits, budget: BodyBudget) -> Door<Self> {
        let loopback_only = auth.loopback_hosts_only();
        Door::new(Self { auth, limits }, budget).loopback_only(loopback_only)
    }

    fn check(&self, parts: &mut Parts, access: Access<'_>) -> Result<(), ApiError> {
        let grant = self.auth.check(&parts.headers, access)?;
        parts.extensions.insert(Admitted { grant });
        Ok(())
    }
}

/// A path parameter of the matched route.
fn param<'a>(params: &'a RawPathParams, name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| *key == name).map(|(_, value)| value)
}

impl Gate for EdgeGate {
    async fn admit(&self, parts: &mut Parts) -> Result<Option<u64>, ApiError> {
        let Some(route) = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
            return Ok(None);
        };
        let params = RawPathParams::from_request_parts(parts, &()).await.ok();
        let source = || {
            let source = params.as_ref().and_then(|p| param(p, "source")).unwrap_or_default().to_owned();
            validate_source_name(&source).map_err(ApiError::bad_request)?;
            Ok::<_, ApiError>(source)
        };
        let (playlist, segment) = (self.limits.max_playlist_bytes as u64, self.limits.max_segment_bytes as u64);
        match route.as_str() {
            "/v1/playlist" => {
                let name = required_header(&parts.headers, SOURCE_HEADER)?.to_owned();
                validate_source_name(&name).map_err(ApiError::bad_request)?;
                self.check(parts, Access::Ingest(&name))?;
                Ok(Some(playlist))
            }
            "/v1/ingest/{source}/{file}" => {
                let source = source()?;
                self.check(parts, Access::Ingest(&source))?;
                let file = params.as_ref().and_then(|p| param(p, "file")).unwrap_or_default();
                let limit = if file.ends_with(".m3u8") { playlist } else { segment };
                Ok((parts.method != Method::DELETE).then_some(limit))
            }
            // A CORS preflight carries no credentials and grants nothing: the request it announces is checked.
            "/v1/vod/live/{source}/{file}" if parts.method == Method::OPTIONS => Ok(None),
            "/v1/vod/live/{source}/{file}" => {
                let source = source()?;
                self.check(parts, Access::Preview(&source))?;
                Ok(None)
            }
            "/v1/source" | "/debug/tasks" => {
                self.check(parts, Access::View)?;
                Ok(None)
            }
            // Probes and /metrics.
            _ => Ok(None),
        }
    }
}
