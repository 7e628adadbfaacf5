//! HTTP caching for what players and CDNs fetch: entity tags, `If-None-Match` (304), byte ranges (206, 416) and
//! `Cache-Control`. `HEAD` needs nothing here: axum answers it from the GET handler, without the body and with
//! the same headers.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;

/// What a cacheable reply carries besides its bytes.
pub struct Representation<'a> {
    pub etag: &'a str,
    pub content_type: &'static str,
    pub cache_control: HeaderValue,
    /// Whether byte ranges are served (segments: hls.js and Safari ask for them).
    pub ranges: bool,
}

/// The reply to a GET (or HEAD) of `data`: 304 when the client's copy is current, 206 or 416 for a range, else
/// the whole body.
pub fn reply(request: &HeaderMap, data: &Bytes, rep: &Representation<'_>) -> Response {
    let mut headers = HeaderMap::with_capacity(5);
    if let Ok(etag) = HeaderValue::from_str(rep.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, rep.cache_control.clone());
    if none_match(request, rep.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(rep.content_type));
    if !rep.ranges {
        return (headers, Body::from(data.clone())).into_response();
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = data.len() as u64;
    match wanted_range(request, rep.etag, len) {
        None => (headers, Body::from(data.clone())).into_response(),
        Some(Err(Unsatisfiable)) => {
            headers.insert(header::CONTENT_RANGE, content_range(&format!("bytes */{len}")));
            (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response()
        }
        Some(Ok((first, last))) => {
            headers.insert(header::CONTENT_RANGE, content_range(&format!("bytes {first}-{last}/{len}")));
            // Within `len`, which is a usize: the casts cannot truncate.
            let part = data.slice(first as usize..=last as usize);
            (StatusCode::PARTIAL_CONTENT, headers, Body::from(part)).into_response()
        }
    }
}

fn content_range(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// `If-None-Match` lists `etag` (weak comparison, as RFC 9110 says for this header) or is `*`.
fn none_match(request: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

#[derive(Debug, PartialEq, Eq)]
struct Unsatisfiable;

/// The one range asked for, as inclusive offsets. `None` means "send it all": no `Range`, an `If-Range` for
/// another version, several ranges (allowed to be ignored, and players never ask for them) or a header this
/// does not parse (RFC 9110: ignore it).
fn wanted_range(request: &HeaderMap, etag: &str, len: u64) -> Option<Result<(u64, u64), Unsatisfiable>> {
    let spec = request.get(header::RANGE)?.to_str().ok()?.trim();
    if let Some(if_range) = request.get(header::IF_RANGE) {
        // Strong comparison; a date there never matches (we send no Last-Modified).
        if if_range.to_str().ok()?.trim() != etag || etag.starts_with("W/") {
            return None;
        }
    }
    let spec = spec.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // The last `n` bytes.
        let n: u64 = last.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(Unsatisfiable));
        }
        return Some(Ok((len - n.min(len), len - 1)));
    }
    let first: u64 = first.parse().ok()?;
    let last: Option<u64> = if last.is_empty() { None } else { Some(last.parse().ok()?) };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    if first >= len {
        return Some(Err(Unsatisfiable));
    }
    Some(Ok((first, last.map_or(len - 1, |last| last.min(len - 1)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let range = |spec: &str| wanted_range(&headers(&[(header::RANGE, spec)]), "\"t\"", 10);
        assert_eq!(range("bytes=0-3"), Some(Ok((0, 3))));
        assert_eq!(range("bytes=4-"), Some(Ok((4, 9))));
        assert_eq!(range("bytes=4-100"), Some(Ok((4, 9))));
        assert_eq!(range("bytes=-3"), Some(Ok((7, 9))));
        assert_eq!(range("bytes=-30"), Some(Ok((0, 9))));
        assert_eq!(range("bytes=10-"), Some(Err(Unsatisfiable)));
        assert_eq!(range("bytes=-0"), Some(Err(Unsatisfiable)));
        for ignored in ["bytes=5-2", "bytes=0-1,3-4", "items=0-1", "bytes=x-", "bytes=-", "bytes=18446744073709551616-"]
        {
            assert_eq!(range(ignored), None, "{ignored}");
        }
        let stale = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"old\"")]);
        assert_eq!(wanted_range(&stale, "\"t\"", 10), None, "If-Range for another version: all of it");
        let current = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"t\"")]);
        assert_eq!(wanted_range(&current, "\"t\"", 10), Some(Ok((0, 1))));
    }

    #[test]
    fn if_none_match_compares_weakly_and_knows_lists() {
        let inm = |v: &str| none_match(&headers(&[(header::IF_NONE_MATCH, v)]), "\"abc\"");
        assert!(inm("\"abc\""));
        assert!(inm("W/\"abc\""));
        assert!(inm("\"x\", \"abc\""));
        assert!(inm("*"));
        assert!(!inm("\"abcd\""));
        assert!(!none_match(&HeaderMap::new(), "\"abc\""));
    }

    #[tokio::test]
    async fn replies_carry_validators_and_the_right_status() {
        let data = Bytes::from_static(b"0123456789");
        let rep = Representation {
            etag: "\"t\"",
            content_type: "video/mp2t",
            cache_control: HeaderValue::from_static("public, max-age=60"),
            ranges: true,
        };
        let full = reply(&HeaderMap::new(), &data, &rep);
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(full.headers()[header::ETAG], "\"t\"");
        assert_eq!(full.headers()[header::ACCEPT_RANGES], "bytes");
        let part = reply(&headers(&[(header::RANGE, "bytes=2-4")]), &data, &rep);
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        let body = axum::body::to_bytes(part.into_body(), 100).await.unwrap();
        assert_eq!(body, "234");
        let none = reply(&headers(&[(header::RANGE, "bytes=10-")]), &data, &rep);
        assert_eq!(none.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(none.headers()[header::CONTENT_RANGE], "bytes */10");
        let cached = reply(&headers(&[(header::IF_NONE_MATCH, "\"t\"")]), &data, &rep);
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[header::ETAG], "\"t\"");
    }
}
