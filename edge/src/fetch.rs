//! Where segment bytes come from: the `MPEG-TS-URI-Prefix` (a confined `file://` directory or an `http(s)://`
//! base) or segments pushed to `/v1/ingest` (kept by the [`crate::inbox::Inbox`]).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use livemix_common::model::validate_segment_name;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request is not allowed (403): outside the file root, `..`, file:// disabled.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The segment could not be read (skipped; a later playlist retries it).
    #[error("{0}")]
    Unavailable(String),
}

/// Where the segments of one playlist are read from.
#[derive(Debug, Clone)]
pub enum SegmentSource {
    /// A directory under the edge's file root (already canonicalized and checked).
    Dir(PathBuf),
    /// An `http(s)://` base URL, ending in `/` or a name prefix.
    Http(String),
    /// Segments pushed with `PUT /v1/ingest/{source}/{file}`.
    Pushed,
}

impl SegmentSource {
    /// Interprets an `MPEG-TS-URI-Prefix` header.
    pub fn from_prefix(prefix: &str, file_root: Option<&Path>) -> Result<Self, FetchError> {
        let prefix = prefix.trim();
        if let Some(path) = prefix.strip_prefix("file://") {
            let root = file_root.ok_or_else(|| {
                FetchError::Forbidden(
                    "file:// prefixes are disabled on this edge; start it with --file-root DIR".into(),
                )
            })?;
            return confine(root, Path::new(path)).map(SegmentSource::Dir);
        }
        if prefix.starts_with("http://") || prefix.starts_with("https://") {
            url::Url::parse(prefix)
                .map_err(|err| FetchError::Invalid(format!("MPEG-TS-URI-Prefix {prefix:?}: {err}")))?;
            return Ok(SegmentSource::Http(prefix.to_owned()));
        }
        Err(FetchError::Invalid(format!("MPEG-TS-URI-Prefix {prefix:?} must start with file:// or http(s)://")))
    }
}

/// Resolves `path` and checks it lies under `root`, following symlinks, so neither `..` nor a link escapes.
fn confine(root: &Path, path: &Path) -> Result<PathBuf, FetchError> {
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(FetchError::Forbidden(format!("{} contains '..'", path.display())));
    }
    let root =
        root.canonicalize().map_err(|err| FetchError::Unavailable(format!("file root {}: {err}", root.display())))?;
    let resolved = path
        .canonicalize()
        .map_err(|err| FetchError::Forbidden(format!("{} is not a readable directory: {err}", path.display())))?;
    if !resolved.starts_with(&root) {
        return Err(FetchError::Forbidden(format!(
            "{} is outside the edge's file root {}",
            path.display(),
            root.display()
        )));
    }
    Ok(resolved)
}

/// Segment names listed in a playlist are single safe path components.
pub fn check_segment_uri(uri: &str) -> Result<(), FetchError> {
    if uri.contains("..") || uri.contains('/') || uri.contains('\\') {
        return Err(FetchError::Forbidden(format!("segment URI {uri:?} leaves the prefix ('..' or '/')")));
    }
    validate_segment_name(uri).map_err(FetchError::Invalid)
}

/// Reads segments from a directory or an HTTP server, with a timeout and a size cap.
pub struct Fetcher {
    http: reqwest::Client,
    max_bytes: usize,
}

impl Fetcher {
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()?;
        Ok(Self { http, max_bytes })
    }

    /// Reads segment `name` (already checked with [`check_segment_uri`]) from a prefix directory.
    pub async fn read_file(&self, dir: &Path, name: &str) -> Result<Bytes, FetchError> {
        let path = dir.join(name);
        // A symlinked segment must not lead out of the prefix directory either.
        // A missing file is not (yet) there, not forbidden: the next playlist retries it.
        let resolved = confine(dir, &path).map_err(|err| match err {
            FetchError::Forbidden(msg) if !path.exists() => FetchError::Unavailable(msg),
            other => other,
        })?;
        let meta = tokio::fs::metadata(&resolved)
            .await
            .map_err(|err| FetchError::Unavailable(format!("{}: {err}", path.display())))?;
        if meta.len() > self.max_bytes as u64 {
            return Err(FetchError::Unavailable(format!(
                "{} is {} bytes, over the {} byte segment limit",
                path.display(),
                meta.len(),
                self.max_bytes
            )));
        }
        tokio::fs::read(&resolved)
            .await
            .map(Bytes::from)
            .map_err(|err| FetchError::Unavailable(format!("{}: {err}", path.display())))
    }

    /// Fetches segment `name` (already checked with [`check_segment_uri`]) from an `http(s)://` prefix.
    pub async fn get(&self, base: &str, name: &str) -> Result<Bytes, FetchError> {
        let url = &format!("{base}{name}");
        let resp =
            self.http.get(url).send().await.map_err(|err| FetchError::Unavailable(format!("GET {url}: {err}")))?;
        if !resp.status().is_success() {
            return Err(FetchError::Unavailable(format!("GET {url}: HTTP {}", resp.status())));
        }
        if resp.content_length().is_some_and(|len| len > self.max_bytes as u64) {
            return Err(FetchError::Unavailable(format!("GET {url}: larger than {} bytes", self.max_bytes)));
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| FetchError::Unavailable(format!("GET {url}: {err}")))?;
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::Unavailable(format!("GET {url}: larger than {} bytes", self.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_prefixes_stay_under_the_root() {
        let root = std::env::temp_dir().join(format!("livemix-root-{}", uuid::Uuid::new_v4()));
        let inside = root.join("cam");
        std::fs::create_dir_all(&inside).unwrap();
        let outside = std::env::temp_dir();

        let ok = SegmentSource::from_prefix(&format!("file://{}", inside.display()), Some(&root)).unwrap();
        assert!(matches!(ok, SegmentSource::Dir(_)));
        for bad in [
            format!("file://{}", outside.display()),
            format!("file://{}/cam/../..", root.display()),
            "file:///etc".into(),
        ] {
            let err = SegmentSource::from_prefix(&bad, Some(&root)).unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{bad}: {err}");
        }
        assert!(matches!(SegmentSource::from_prefix("file:///tmp", None), Err(FetchError::Forbidden(_))));
        assert!(matches!(SegmentSource::from_prefix("ftp://x/", Some(&root)), Err(FetchError::Invalid(_))));
        assert!(matches!(SegmentSource::from_prefix("http://cam.local/hls/", None), Ok(SegmentSource::Http(_))));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn listed_names_cannot_escape() {
        assert!(check_segment_uri("seg-1.ts").is_ok());
        assert!(matches!(check_segment_uri("../x.ts"), Err(FetchError::Forbidden(_))));
        assert!(matches!(check_segment_uri("a/b.ts"), Err(FetchError::Forbidden(_))));
        assert!(matches!(check_segment_uri("a b.ts"), Err(FetchError::Invalid(_))));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_prefix_are_refused() {
        let root = std::env::temp_dir().join(format!("livemix-root-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        let secret = std::env::temp_dir().join(format!("livemix-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&secret, b"secret").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("evil.ts")).unwrap();
        std::fs::write(root.join("good.ts"), b"ts").unwrap();
        let fetcher = Fetcher::new(Duration::from_secs(1), 1000).unwrap();
        let Ok(SegmentSource::Dir(dir)) =
            SegmentSource::from_prefix(&format!("file://{}", root.display()), Some(&root))
        else {
            panic!("a directory under the root")
        };
        assert_eq!(fetcher.read_file(&dir, "good.ts").await.unwrap(), Bytes::from_static(b"ts"));
        assert!(matches!(fetcher.read_file(&dir, "evil.ts").await, Err(FetchError::Forbidden(_))));
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_file(secret);
    }
}
