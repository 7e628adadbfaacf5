//! Who may push video into this edge and watch its preview.
//!
//! Ingest (`/v1/playlist`, `/v1/ingest/...`) takes the edge's ingest token (any source) or a source's own token
//! (that source only); the preview (`/v1/vod/live/...`, `/v1/source`, `/debug/tasks`) takes the preview token,
//! or the ingest token when no preview token is set. A token comes as `Authorization: Bearer <token>` (ffmpeg:
//! `-headers 'Authorization: Bearer <token>'`) or as a path segment (`/v1/ingest/{source}/{token}/index.m3u8`),
//! which [`lift_path_token`] moves into the header before routing, so it never reaches the access log.
//!
//! A source's own token (`--ingest-tokens cam-a:tok`) is confined to that source's segments, wherever they are
//! read from: [`EdgeAuth::check`] says which credential granted a request ([`Grant`]), and a playlist POSTed on
//! a source's own token may name only a `file://` prefix under `{--file-root}/{source}/` (a real directory, not
//! a link) and only an `http(s)://` host that both `--fetch-allow` and that source's own entries of
//! `--source-fetch-allow` (`LIVEMIX_SOURCE_FETCH_ALLOW`, `source=host-or-cidr` comma-separated, e.g.
//! `cam-a=10.0.0.5,cam-a=cam-a.lan,cam-b=10.0.0.6/32`) allow; a source with no entry there may not use http
//! prefixes at all. So camera A's token cannot make the edge read camera B's directory or camera B's host. The
//! edge's own ingest token keeps the edge-wide rules (anything under the file root, any `--fetch-allow` host).
//! Segments pushed with `PUT /v1/ingest/{source}/{file}` are the source's by their path, which the token must
//! match. A host *name* on a source's list is trusted to resolve to that source's camera (the connection is
//! checked against `--fetch-allow` only); list addresses or CIDRs to bind a source to its camera strictly.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time. Without an ingest token the edge keeps the
//! old open form, but then listens on loopback only and answers only loopback peers addressing a loopback host
//! name (DNS rebinding), unless `--insecure-no-auth`. These checks run before any body byte is read
//! ([`crate::gate`]).

use std::{fmt, net::SocketAddr};

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderValue, Uri, header},
};
use livemix_common::{
    ApiError,
    credentials::{
        NamedTokens, Presented, Secret, TokenDigest, TokenListFormat, bearer_token, is_loopback, parse_path_token,
    },
};

/// Per-source ingest tokens: `source:token` entries separated by commas or new lines.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceTokens(NamedTokens);

impl fmt::Debug for SourceTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

const SOURCE_TOKENS: TokenListFormat = TokenListFormat {
    name: "source",
    valid_name: livemix_common::model::validate_source_name,
    token: parse_path_token,
};

impl SourceTokens {
    pub fn parse(text: &str) -> Result<Self, String> {
        NamedTokens::parse(text, &SOURCE_TOKENS).map(Self).map_err(|err| format!("source tokens: {err}"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a request asks to do, for [`EdgeAuth::check`].
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Push a playlist or segment of this source.
    Ingest(&'a str),
    /// Watch this source's preview.
    Preview(&'a str),
    /// Read what the edge serves (`/v1/source`, `/debug/tasks`).
    View,
}

/// Which credential granted a request, so a handler can confine what a source's own token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The route needs no token on this edge (no ingest token configured, or a preview without one).
    Open,
    /// The edge's own ingest token: every source, the edge-wide prefix rules.
    Edge,
    /// The preview token (preview, `/v1/source`, `/debug/tasks` only).
    Preview,
    /// The source's own token from `--ingest-tokens`: that source only, its own prefixes only.
    Source,
}

impl Grant {
    /// Whether a token granted the request (the preview then allows any web origin to read it).
    pub fn by_token(self) -> bool {
        self != Grant::Open
    }
}

/// The edge's credentials.
#[derive(Debug, Clone, Default)]
pub struct EdgeAuth {
    ingest: Option<TokenDigest>,
    per_source: SourceTokens,
    preview: Option<TokenDigest>,
    insecure_no_auth: bool,
}

impl EdgeAuth {
    pub fn new(
        ingest: Option<&Secret>,
        per_source: SourceTokens,
        preview: Option<&Secret>,
        insecure_no_auth: bool,
    ) -> Self {
        let ingest = ingest.map(TokenDigest::of);
        let preview = preview.map(TokenDigest::of);
        Self { ingest, per_source, preview, insecure_no_auth }
    }

    /// Whether ingest needs a token.
    pub fn protects_ingest(&self) -> bool {
        self.ingest.is_some() || !self.per_source.is_empty()
    }

    /// Whether requests must come from loopback and be addressed to a loopback host name: when ingest needs no
    /// token (a preview token alone does not protect ingest) and `--insecure-no-auth` is not set.
    pub fn loopback_hosts_only(&self) -> bool {
        !self.protects_ingest() && !self.insecure_no_auth
    }

    /// Whether the preview needs a token.
    pub fn protects_preview(&self) -> bool {
        self.protects_ingest() || self.preview.is_some()
    }

    /// Checks a request's credentials for `access`: 401 without a usable token, 403 with a wrong one; otherwise
    /// which credential granted it ([`Grant::Open`] when the route needs none). The loopback-only host check is
    /// the door's ([`crate::gate`]), made before this.
    pub fn check(&self, headers: &HeaderMap, access: Access<'_>) -> Result<Grant, ApiError> {
        let protected = match access {
            Access::Ingest(_) => self.protects_ingest(),
            Access::Preview(_) | Access::View => self.protects_preview(),
        };
        if !protected {
            return Ok(Grant::Open);
        }
        let presented = bearer_token(headers).map(Presented::new).ok_or_else(|| {
            ApiError::unauthorized(
                "send the edge's token as `Authorization: Bearer <token>` (ffmpeg: -headers) or in the URL \
                 (/v1/ingest/{source}/{token}/{file})",
            )
        })?;
        self.grant(access, &presented)
            .ok_or_else(|| ApiError::forbidden("this token does not grant access to this route"))
    }
}

impl EdgeAuth {
    /// Which credential, if any, grants `access` to a presented token (its digest). Every candidate is compared
    /// (`|`-style, no early return), so the time taken does not say which one matched. The edge's token wins over
    /// a source's when an operator gave both the same value: it grants more, and whoever holds it has that much.
    fn grant(&self, access: Access<'_>, presented: &Presented) -> Option<Grant> {
        let edge = self.ingest.as_ref().is_some_and(|t| t.matches(presented));
        let preview = self.preview.as_ref().is_some_and(|t| t.matches(presented));
        let own = match access {
            Access::Ingest(source) | Access::Preview(source) => self.per_source.0.admits(source, presented),
            Access::View => false,
        };
        let preview = preview && !matches!(access, Access::Ingest(_));
        if edge {
            Some(Grant::Edge)
        } else if preview {
            Some(Grant::Preview)
        } else if own {
            Some(Grant::Source)
        } else {
            None
        }
    }
}

/// Moves a token given as a path segment into the `Authorization` header before routing:
/// `/v1/ingest/{source}/{token}/{file}` and `/v1/vod/live/{source}/{token}/{file}` become the token-less paths.
/// ffmpeg derives segment URLs from the playlist URL, so the segments it uploads carry the token too; a
/// preview playlist's relative segment URIs do the same for players.
pub async fn lift_path_token(req: Request) -> Request {
    lift(req)
}

fn lift(mut req: Request) -> Request {
    let path = req.uri().path();
    let lifted = ["/v1/ingest/", "/v1/vod/live/"].iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        let mut parts = rest.split('/');
        let (source, token, file) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || token.is_empty() {
            return None;
        }
        Some((format!("{prefix}{source}/{file}"), format!("Bearer {token}")))
    });
    let Some((path, authorization)) = lifted else { return req };
    let Ok(authorization) = HeaderValue::from_str(&authorization) else { return req };
    let mut parts = req.uri().clone().into_parts();
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let Ok(path_and_query) = format!("{path}{query}").parse() else { return req };
    parts.path_and_query = Some(path_and_query);
    let Ok(uri) = Uri::from_parts(parts) else { return req };
    *req.uri_mut() = uri;
    req.headers_mut().insert(header::AUTHORIZATION, authorization);
    req
}

/// Why the edge refuses to start with its auth settings.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to serve ingest on {0} without credentials: set LIVEMIX_INGEST_TOKEN (--ingest-token), listen on a \
     loopback address (127.0.0.1), or pass --insecure-no-auth (LIVEMIX_INSECURE_NO_AUTH=true) if only trusted \
     machines can reach it"
)]
pub struct Unprotected(pub SocketAddr);

/// Checks that an edge without credentials listens on loopback only (unless insisted on), saying loudly what is
/// open.
pub fn check_exposure(protected: bool, addr: SocketAddr, insecure: bool) -> Result<(), Unprotected> {
    if protected {
        return Ok(());
    }
    if is_loopback(&addr) {
        tracing::warn!(
            %addr,
            "the edge's ingest and preview have NO authentication; it listens on loopback only, so only this machine \
             can push (set LIVEMIX_INGEST_TOKEN to serve them on the network)"
        );
        Ok(())
    } else if insecure {
        tracing::warn!(
            %addr,
            "INSECURE: the edge's ingest and preview have NO authentication and listen on {addr} because of \
             --insecure-no-auth; anyone who can reach it can inject video into its sources"
        );
        Ok(())
    } else {
        Err(Unprotected(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    pub(super) fn auth() -> EdgeAuth {
        EdgeAuth::new(
            Some(&parse_path_token("edge-tok").unwrap()),
            SourceTokens::parse("cam-a:tok-a, cam-b:tok-b").unwrap(),
            Some(&parse_path_token("view-tok").unwrap()),
            false,
        )
    }

    #[test]
    fn tokens_grant_what_they_should_and_nothing_else() {
        let auth = auth();
        let with = |token: &str| headers(&[("authorization", &format!("Bearer {token}"))]);
        let status = |h: &HeaderMap, access| auth.check(h, access).err().map(|e| e.status.as_u16());
        assert_eq!(status(&with("edge-tok"), Access::Ingest("cam-a")), None);
        assert_eq!(status(&with("tok-a"), Access::Ingest("cam-a")), None);
        assert_eq!(status(&with("tok-a"), Access::Ingest("cam-b")), Some(403), "another source's token");
        assert_eq!(status(&with("view-tok"), Access::Ingest("cam-a")), Some(403), "preview token cannot push");
        assert_eq!(status(&with("view-tok"), Access::Preview("cam-a")), None);
        assert_eq!(status(&with("tok-b"), Access::Preview("cam-b")), None);
        assert_eq!(status(&with("tok-b"), Access::View), Some(403));
        assert_eq!(status(&with("nope"), Access::Ingest("cam-a")), Some(403));
        assert_eq!(status(&HeaderMap::new(), Access::Ingest("cam-a")), Some(401));
        assert_eq!(status(&headers(&[("authorization", "Bearer ")]), Access::Ingest("cam-a")), Some(401));
        assert_eq!(status(&headers(&[("authorization", "Basic ZWRnZS10b2s=")]), Access::View), Some(401));
    }

    /// The playlist handler confines a source's own token by the grant, so the grant must name the credential.
    #[test]
    fn the_grant_says_which_credential_granted_access() {
        let auth = auth();
        let with = |token: &str| headers(&[("authorization", &format!("Bearer {token}"))]);
        let grant = |token: &str, access| auth.check(&with(token), access).ok();
        assert_eq!(grant("edge-tok", Access::Ingest("cam-a")), Some(Grant::Edge));
        assert_eq!(grant("tok-a", Access::Ingest("cam-a")), Some(Grant::Source));
        assert_eq!(grant("tok-a", Access::Preview("cam-a")), Some(Grant::Source));
        assert_eq!(grant("view-tok", Access::Preview("cam-a")), Some(Grant::Preview));
        assert_eq!(grant("view-tok", Access::View), Some(Grant::Preview));
        assert_eq!(grant("edge-tok", Access::View), Some(Grant::Edge));
        assert_eq!(grant("tok-a", Access::Ingest("cam-b")), None);
        assert!(Grant::Source.by_token() && Grant::Edge.by_token() && !Grant::Open.by_token());
        // An operator who gave a source the edge's token gave it the edge's reach: the broader grant wins.
        let same = EdgeAuth::new(
            Some(&parse_path_token("shared").unwrap()),
            SourceTokens::parse("cam-a:shared").unwrap(),
            None,
            false,
        );
        assert_eq!(same.check(&with("shared"), Access::Ingest("cam-a")).ok(), Some(Grant::Edge));
    }

    #[test]
    fn only_an_ingest_token_lifts_the_loopback_host_check() {
        let tok = || parse_path_token("t").unwrap();
        let open = EdgeAuth::new(None, SourceTokens::default(), None, false);
        assert!(!open.protects_ingest() && open.loopback_hosts_only());
        assert_eq!(open.check(&HeaderMap::new(), Access::Ingest("cam")).ok(), Some(Grant::Open));
        let preview_only = EdgeAuth::new(None, SourceTokens::default(), Some(&tok()), false);
        assert!(preview_only.loopback_hosts_only(), "a preview token does not protect ingest");
        assert!(preview_only.protects_preview());
        let insecure = EdgeAuth::new(None, SourceTokens::default(), None, true);
        assert!(!insecure.loopback_hosts_only());
        assert!(!EdgeAuth::new(Some(&tok()), SourceTokens::default(), None, false).loopback_hosts_only());
        let per_source = SourceTokens::parse("cam:tok-c").unwrap();
        assert!(!EdgeAuth::new(None, per_source, None, false).loopback_hosts_only());
    }

    #[test]
    fn bad_tokens_are_refused_at_start_up() {
        for bad in ["", "   ", "a b", "a/b", "tok%2f", "\u{7f}"] {
            assert!(parse_path_token(bad).is_err(), "{bad:?}");
        }
        assert!(SourceTokens::parse("cam:").is_err());
        assert!(SourceTokens::parse("../x:tok").is_err());
        assert!(SourceTokens::parse("cam:a,cam:b").is_err());
        assert_eq!(format!("{:?}", parse_path_token("s3cret").unwrap()), "<redacted>");
    }

    #[test]
    fn path_tokens_move_into_the_header() {
        let req = |uri: &str| Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        let lifted = lift(req("/v1/ingest/cam/tok-1/index0.ts"));
        assert_eq!(lifted.uri().path(), "/v1/ingest/cam/index0.ts");
        assert_eq!(lifted.headers()[header::AUTHORIZATION], "Bearer tok-1");
        let lifted = lift(req("/v1/vod/live/cam/tok-1/vid.m3u8?x=1"));
        assert_eq!(lifted.uri().to_string(), "/v1/vod/live/cam/vid.m3u8?x=1");
        let untouched = lift(req("/v1/ingest/cam/index0.ts"));
        assert!(untouched.headers().get(header::AUTHORIZATION).is_none());
        let deep = lift(req("/v1/ingest/cam/a/b/c"));
        assert_eq!(deep.uri().path(), "/v1/ingest/cam/a/b/c", "not a token path: routed (and refused) as is");
    }

    #[test]
    fn no_credentials_means_loopback_unless_insisted() {
        let public: SocketAddr = "0.0.0.0:9080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        assert!(check_exposure(false, public, false).is_err());
        assert!(check_exposure(false, public, true).is_ok());
        assert!(check_exposure(false, local, false).is_ok());
        assert!(check_exposure(true, public, false).is_ok());
    }

    mod properties {
        use axum::http::Method;
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any Authorization, Origin, Host or Content-Type bytes: an answer, never a panic, and no access
            /// without the token.
            #[test]
            fn header_parsing_never_panics_nor_lets_a_stranger_in(
                authorization in proptest::collection::vec(any::<u8>(), 0..64),
                origin in proptest::collection::vec(any::<u8>(), 0..32),
                host in "\\PC{0,24}",
            ) {
                let auth = tests::auth();
                let mut headers = HeaderMap::new();
                for (name, value) in [("authorization", &authorization), ("origin", &origin)] {
                    if let Ok(value) = HeaderValue::from_bytes(value) {
                        headers.insert(name, value);
                    }
                }
                if let Ok(value) = HeaderValue::from_str(&host) {
                    headers.insert("host", value);
                }
                let _ = livemix_common::door::check_not_cross_site(&Method::POST, &headers, &Uri::from_static("/"));
                let granted = auth.check(&headers, Access::Ingest("cam-a")).is_ok();
                let presented = authorization.get(7..).map(<[u8]>::trim_ascii).unwrap_or_default();
                prop_assert!(!granted || presented == b"edge-tok" || presented == b"tok-a");
            }

            #[test]
            fn path_tokens_lift_without_panicking(path in "/[a-z0-9/%._-]{0,60}") {
                if let Ok(req) = Request::builder().uri(path.as_str()).body(axum::body::Body::empty()) {
                    let lifted = lift(req);
                    prop_assert!(lifted.uri().path().len() <= path.len());
                }
            }
        }
    }
}
