//! Signed, expiring playback URLs on the VOD API (on when `--playback-signing-key` is set).
//!
//! The scheme, for anyone minting URLs outside LiveMix:
//! - `exp`: expiry in seconds since the Unix epoch;
//! - `scope`: the URL path up to and including its last `/` (`/v1/vod/live/<source>/`), so one signature covers a
//!   playlist and the segments it lists;
//! - `sig`: lowercase hex of HMAC-SHA256(key, `"{exp}\n{scope}"`);
//! - the URL: `<path>?exp=<exp>&sig=<sig>`.
//!
//! Players resolve a playlist's relative segment URIs against the playlist's URL, which drops its query, so a
//! playlist served under a valid signature gets that signature appended to every relative URI it lists.
//! Missing parameters are 401, an expired or wrong signature 403.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{KeyInit, Mac};
use livemix_common::{ApiError, ApiResult, api::M3U8_CONTENT_TYPE, digest::hex};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Largest playlist rewritten (a recording of days of 2 s segments is a few MB).
const MAX_PLAYLIST_BYTES: usize = 32 << 20;

/// Signs and checks playback URLs with one key.
#[derive(Clone)]
pub struct PlaybackSigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for PlaybackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackSigner(<key>)")
    }
}

/// The part of a path a signature covers: everything up to and including its last `/`.
fn scope(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl PlaybackSigner {
    pub fn new(key: &[u8]) -> Self {
        // HMAC takes keys of any length.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
        Self { mac }
    }

    fn mac_of(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(format!("{expires}\n{}", scope(path)).as_bytes());
        mac
    }

    /// The signature of `path` (and every path beside it) until `expires`.
    pub fn sign(&self, path: &str, expires: i64) -> String {
        hex(&self.mac_of(path, expires).finalize().into_bytes())
    }

    /// `path` with `exp` and `sig` for `ttl` from now, and the expiry.
    pub fn signed_path(&self, path: &str, ttl: Duration) -> (String, i64) {
        let expires = now_secs().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        (format!("{path}?exp={expires}&sig={}", self.sign(path, expires)), expires)
    }

    /// Checks the `exp` and `sig` of a request for `path` at `now`; the accepted query to pass on.
    pub fn verify(&self, path: &str, query: Option<&str>, now: i64) -> ApiResult<String> {
        let (mut exp, mut sig) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("exp", value)) => exp = Some(value),
                Some(("sig", value)) => sig = Some(value),
                _ => {}
            }
        }
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(ApiError::unauthorized(
                "this VOD API serves signed URLs only: ask the management API for one (GET /v1/playback-url)",
            ));
        };
        let refused = || ApiError::forbidden("invalid playback URL signature");
        let expires: i64 = exp.parse().map_err(|_| refused())?;
        let sig = unhex(sig).ok_or_else(refused)?;
        // Constant time: a wrong signature takes as long as a nearly right one.
        self.mac_of(path, expires).verify_slice(&sig).map_err(|_| refused())?;
        if expires < now {
            return Err(ApiError::forbidden("this playback URL has expired; ask for a new one"));
        }
        Ok(format!("exp={expires}&sig={}", hex(&sig)))
    }
}

/// Middleware of the VOD routes: refuses unsigned, expired or tampered URLs, and carries a playlist's signature
/// to the segment URIs it lists.
pub async fn require_signature(signer: Arc<PlaybackSigner>, req: Request, next: Next) -> Response {
    // CORS preflights carry no query a player chose; they reveal nothing.
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let query = match signer.verify(req.uri().path(), req.uri().query(), now_secs()) {
        Ok(query) => query,
        Err(err) => return err.into_response(),
    };
    let response = next.run(req).await;
    let is_playlist = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(M3U8_CONTENT_TYPE.as_bytes()));
    if response.status() != StatusCode::OK || !is_playlist {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAYLIST_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            tracing::error!(%err, "reading a playlist to sign its segment URIs");
            return ApiError::internal("the playlist could not be signed").into_response();
        }
    };
    let signed = sign_uris(&text, &query);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(signed))
}

/// Appends `query` to every relative URI line of a playlist (absolute ones point elsewhere and keep theirs).
fn sign_uris(playlist: &str, query: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        let content = content.strip_suffix('\r').unwrap_or(content);
        let newline = &line[content.len()..];
        let trimmed = content.trim();
        out.push_str(content);
        if !trimmed.is_empty() && !trimmed.starts_with('#') && !trimmed.starts_with('/') && !trimmed.contains("://") {
            out.push(if trimmed.contains('?') { '&' } else { '?' });
            out.push_str(query);
        }
        out.push_str(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/vod/live/6a0c5c3e-4d55-4d42-9b59-0d2b1d6b7c11/vid.m3u8";

    #[test]
    fn valid_expired_tampered_and_missing() {
        let signer = PlaybackSigner::new(b"0123456789abcdef0123456789abcdef");
        let now = 1_800_000_000;
        let sig = signer.sign(PATH, now + 60);
        let query = format!("exp={}&sig={sig}", now + 60);
        assert_eq!(signer.verify(PATH, Some(&query), now).unwrap(), query);
        // A segment beside the playlist shares the signature; another source does not.
        assert!(signer.verify("/v1/vod/live/6a0c5c3e-4d55-4d42-9b59-0d2b1d6b7c11/a.ts", Some(&query), now).is_ok());
        let other = signer.verify("/v1/vod/live/00000000-0000-0000-0000-000000000000/vid.m3u8", Some(&query), now);
        assert_eq!(other.unwrap_err().status, StatusCode::FORBIDDEN);

        let expired = signer.verify(PATH, Some(&query), now + 61).unwrap_err();
        assert_eq!(expired.status, StatusCode::FORBIDDEN);
        assert!(expired.message.contains("expired"));
        let later = format!("exp={}&sig={sig}", now + 6000);
        assert_eq!(signer.verify(PATH, Some(&later), now).unwrap_err().status, StatusCode::FORBIDDEN);
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let tampered = format!("exp={}&sig={}", now + 60, String::from_utf8(flipped).unwrap());
        assert_eq!(signer.verify(PATH, Some(&tampered), now).unwrap_err().status, StatusCode::FORBIDDEN);
        for bad in ["exp=x&sig=00", "exp=1&sig=zz", "exp=1&sig=0", "exp=-1&sig="] {
            assert_eq!(signer.verify(PATH, Some(bad), now).unwrap_err().status, StatusCode::FORBIDDEN, "{bad}");
        }
        for missing in [None, Some(""), Some("exp=1"), Some(sig.as_str())] {
            assert_eq!(signer.verify(PATH, missing, now).unwrap_err().status, StatusCode::UNAUTHORIZED);
        }
        let other_key = PlaybackSigner::new(b"another key of enough length....");
        assert!(other_key.verify(PATH, Some(&query), now).is_err());
    }

    #[test]
    fn playlists_carry_the_signature_to_relative_uris() {
        let playlist =
            "#EXTM3U\n#EXTINF:2.0,\nseg-1.ts\r\n#EXTINF:2.0,\nseg-2.ts?x=1\nhttps://cdn.example/a.ts\n/abs/b.ts\n\n";
        let signed = sign_uris(playlist, "exp=1&sig=ab");
        assert_eq!(
            signed,
            "#EXTM3U\n#EXTINF:2.0,\nseg-1.ts?exp=1&sig=ab\r\n#EXTINF:2.0,\nseg-2.ts?x=1&exp=1&sig=ab\n\
             https://cdn.example/a.ts\n/abs/b.ts\n\n"
        );
    }
}
