//! Where segment bytes come from: the `MPEG-TS-URI-Prefix` (a confined `file://` directory or an `http(s)://`
//! base) or segments pushed to `/v1/ingest` (kept by the [`crate::uploads::Uploads`]).

use std::{
    fs::OpenOptions,
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use livemix_common::model::validate_segment_name;
use url::{Host, Url};

use crate::fetch_allow::{FetchAllow, GuardedResolver};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request is not allowed (403): outside the file root, `..`, a host not on `--fetch-allow`, not `.ts`.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The segment could not be read (skipped; a later playlist retries it). The message is shown to the caller,
    /// so it says what kind of failure it was and nothing the remote side or the file system said.
    #[error("{0}")]
    Unavailable(String),
}

/// Where the segments of one playlist are read from.
#[derive(Debug, Clone)]
pub enum SegmentSource {
    /// A directory under the edge's file root (already canonicalized and checked).
    Dir(PathBuf),
    /// An `http(s)://` base URL, ending in `/` or a name prefix, whose host is allowed (see [`FetchAllow`]).
    Http(String),
    /// Segments pushed with `PUT /v1/ingest/{source}/{file}`.
    Pushed,
}

/// Whose rules an `MPEG-TS-URI-Prefix` is checked by: the credential that POSTed the playlist decides.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The edge's own ingest token (or an edge without tokens): anything under the file root, any host
    /// `--fetch-allow` allows.
    Edge,
    /// A source's own token: only `{file root}/{name}/` and only hosts on both `--fetch-allow` and this source's
    /// `--source-fetch-allow` entries (`allow`; `None` when it has none, and then no http prefix at all), so one
    /// camera's token cannot read another camera's segments.
    Source { name: &'a str, allow: Option<&'a FetchAllow> },
}

impl SegmentSource {
    /// Interprets an `MPEG-TS-URI-Prefix` header under `scope`'s rules.
    pub fn from_prefix(
        prefix: &str,
        file_root: Option<&Path>,
        allow: &FetchAllow,
        scope: Scope<'_>,
    ) -> Result<Self, FetchError> {
        let prefix = prefix.trim();
        if prefix.chars().any(char::is_control) {
            return Err(FetchError::Invalid("MPEG-TS-URI-Prefix contains control characters".into()));
        }
        if let Some(path) = prefix.strip_prefix("file://") {
            let root = file_root.ok_or_else(|| {
                FetchError::Forbidden(
                    "file:// prefixes are disabled on this edge; start it with --file-root DIR".into(),
                )
            })?;
            return confine(root, Path::new(path), scope).map(SegmentSource::Dir);
        }
        let lower = prefix.get(..8).unwrap_or(prefix).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return http_prefix(prefix, allow, scope).map(SegmentSource::Http);
        }
        Err(FetchError::Invalid("MPEG-TS-URI-Prefix must start with file:// or http(s)://".into()))
    }
}

/// Checks an `http(s)://` prefix: no userinfo, query, fragment or backslash, a path (so a segment name cannot
/// extend the host), and a host `--fetch-allow` allows (and, for a source's own token, that source's
/// `--source-fetch-allow` entries too). Returns the normalised URL (`0x7f000001` written as `127.0.0.1`).
fn http_prefix(prefix: &str, allow: &FetchAllow, scope: Scope<'_>) -> Result<String, FetchError> {
    let invalid = |what: &str| FetchError::Invalid(format!("MPEG-TS-URI-Prefix: {what}"));
    if prefix.contains(['#', '?', '\\']) {
        return Err(invalid("no fragment (#), query (?) or backslash is allowed"));
    }
    let after_scheme = prefix.split_once("://").map_or("", |(_, rest)| rest);
    let Some((authority, _path)) = after_scheme.split_once('/') else {
        return Err(invalid("give a path after the host (http://host/dir/)"));
    };
    if authority.contains('@') {
        return Err(invalid("no user name or password is allowed"));
    }
    let url = Url::parse(prefix).map_err(|_| invalid("not a valid URL"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("no user name, query or fragment is allowed"));
    }
    if let Scope::Source { name, allow: None } = scope {
        return Err(FetchError::Forbidden(format!(
            "source {name:?}'s own token may not use http(s) prefixes: list its camera hosts as `{name}=host` in \
             --source-fetch-allow (LIVEMIX_SOURCE_FETCH_ALLOW), and in --fetch-allow, or push with the edge's \
             ingest token"
        )));
    }
    if !host_allowed(&url, allow) {
        return Err(FetchError::Forbidden(if allow.is_empty() {
            "http(s) prefixes are disabled on this edge; list the camera hosts in --fetch-allow (LIVEMIX_FETCH_ALLOW)"
                .into()
        } else {
            "MPEG-TS-URI-Prefix: this host is not on the edge's --fetch-allow list".into()
        }));
    }
    if let Scope::Source { name, allow: Some(own) } = scope
        && !host_allowed(&url, own)
    {
        return Err(FetchError::Forbidden(format!(
            "MPEG-TS-URI-Prefix: this host is not among source {name:?}'s own hosts in --source-fetch-allow \
             (LIVEMIX_SOURCE_FETCH_ALLOW)"
        )));
    }
    Ok(url.into())
}

/// Whether `url`'s host is on `allow`: an address literal inside a listed CIDR, or a listed name.
fn host_allowed(url: &Url, allow: &FetchAllow) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => allow.allows_literal(ip.into()),
        Some(Host::Ipv6(ip)) => allow.allows_literal(ip.into()),
        Some(Host::Domain(name)) => allow.allows_name(name),
        None => false,
    }
}

/// Resolves `path` and checks it lies under `root` (under `root/{source}` for a source's own token), following
/// symlinks, so neither `..` nor a link escapes. A source's directory must be a real directory of the root, not
/// a link (a link could lead into another camera's). The refusal is the same whether the path exists or not,
/// and names no path.
fn confine(root: &Path, path: &Path, scope: Scope<'_>) -> Result<PathBuf, FetchError> {
    let refused = || {
        FetchError::Forbidden(match scope {
            Scope::Edge => "the file:// prefix is not a directory under the edge's file root".into(),
            Scope::Source { name, .. } => format!(
                "the file:// prefix is not a directory under {name}/ in the edge's file root, the only one source \
                 {name:?}'s own token may read"
            ),
        })
    };
    if !path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(refused());
    }
    let root = root.canonicalize().map_err(|err| {
        tracing::error!(root = %root.display(), %err, "the file root cannot be resolved");
        FetchError::Unavailable("the edge's file root is not available".into())
    })?;
    // Source names are single path components (no `/`, never `.` or `..`): checked before any token was.
    let within = match scope {
        Scope::Edge => root,
        Scope::Source { name, .. } => root.join(name),
    };
    let resolved = path.canonicalize().map_err(|_| refused())?;
    if !resolved.starts_with(&within) || !resolved.is_dir() {
        return Err(refused());
    }
    Ok(resolved)
}

/// Segment names listed in a playlist are single safe path components naming MPEG-TS segments.
pub fn check_segment_uri(uri: &str) -> Result<(), FetchError> {
    if uri.contains("..") || uri.contains('/') || uri.contains('\\') {
        return Err(FetchError::Forbidden(format!("segment URI {uri:?} leaves the prefix ('..' or '/')")));
    }
    validate_segment_name(uri).map_err(FetchError::Invalid)?;
    if !uri.ends_with(".ts") {
        return Err(FetchError::Forbidden(format!("segment URI {uri:?}: only .ts segments are read")));
    }
    Ok(())
}

/// Reads segments from a directory or an HTTP server, with a timeout and a size cap.
pub struct Fetcher {
    http: reqwest::Client,
    max_bytes: usize,
}

impl Fetcher {
    /// `allow` decides which addresses the HTTP client may connect to; it follows no redirect and uses no proxy
    /// (a proxy would connect on its behalf, to anything).
    pub fn new(timeout: Duration, max_bytes: usize, allow: Arc<FetchAllow>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow }))
            .build()?;
        Ok(Self { http, max_bytes })
    }

    /// Reads segment `name` (already checked with [`check_segment_uri`]) from a prefix directory.
    pub async fn read_file(&self, dir: &Path, name: &str) -> Result<Bytes, FetchError> {
        let (dir, name, max) = (dir.to_owned(), name.to_owned(), self.max_bytes);
        tokio::task::spawn_blocking(move || read_confined(&dir, &name, max))
            .await
            .map_err(|_| FetchError::Unavailable("reading the segment failed".into()))?
    }

    /// Fetches segment `name` (already checked with [`check_segment_uri`]) from an `http(s)://` prefix.
    pub async fn get(&self, base: &str, name: &str) -> Result<Bytes, FetchError> {
        let unreachable = || FetchError::Unavailable("the segment's host did not answer in time".into());
        let url = Url::parse(&format!("{base}{name}")).map_err(|_| FetchError::Invalid("bad segment URL".into()))?;
        let resp = self.http.get(url.clone()).send().await.map_err(|err| {
            tracing::debug!(%url, %err, "segment fetch failed");
            unreachable()
        })?;
        let status = resp.status();
        if !status.is_success() {
            let hint = if status.is_redirection() { " (redirects are not followed)" } else { "" };
            return Err(FetchError::Unavailable(format!("the segment's host answered HTTP {}{hint}", status.as_u16())));
        }
        let too_large = || FetchError::Unavailable(format!("the segment is larger than {} bytes", self.max_bytes));
        if resp.content_length().is_some_and(|len| len > self.max_bytes as u64) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| {
                tracing::debug!(%url, %err, "segment body failed");
                unreachable()
            })?;
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// Reads `dir/name` if it is a regular file really beneath `dir`, without a window between check and read: the
/// file is opened first (never following a final symlink, never blocking on a FIFO), then the opened file itself
/// is checked (its type, and where `/proc/self/fd` says it is, which catches a directory swapped for a link).
fn read_confined(dir: &Path, name: &str, max_bytes: usize) -> Result<Bytes, FetchError> {
    let refused = |what: &str| FetchError::Forbidden(format!("segment {name:?} {what}"));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(dir.join(name))
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => refused("is a symbolic link"),
            _ if err.kind() == std::io::ErrorKind::NotFound => {
                FetchError::Unavailable(format!("segment {name:?} is not there (yet)"))
            }
            _ => FetchError::Unavailable(format!("segment {name:?} cannot be opened")),
        })?;
    let meta = file.metadata().map_err(|_| FetchError::Unavailable(format!("segment {name:?} cannot be read")))?;
    if !meta.is_file() {
        return Err(refused("is not a regular file"));
    }
    use std::os::fd::AsRawFd;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| FetchError::Unavailable(format!("segment {name:?} cannot be located")))?;
    if real.parent() != Some(dir) {
        return Err(refused("is not in the prefix directory"));
    }
    if meta.len() > max_bytes as u64 {
        return Err(FetchError::Unavailable(format!("segment {name:?} is larger than {max_bytes} bytes")));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|_| FetchError::Unavailable(format!("segment {name:?} cannot be read")))?;
    if data.len() > max_bytes {
        return Err(FetchError::Unavailable(format!("segment {name:?} is larger than {max_bytes} bytes")));
    }
    Ok(Bytes::from(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch_allow::SourceFetchAllow;

    #[test]
    fn file_prefixes_stay_under_the_root() {
        let root = std::env::temp_dir().join(format!("livemix-root-{}", uuid::Uuid::new_v4()));
        let inside = root.join("cam");
        std::fs::create_dir_all(&inside).unwrap();
        let outside = std::env::temp_dir();

        let none = FetchAllow::default();
        let ok = SegmentSource::from_prefix(&format!("file://{}", inside.display()), Some(&root), &none, Scope::Edge)
            .unwrap();
        assert!(matches!(ok, SegmentSource::Dir(_)));
        for bad in [
            format!("file://{}", outside.display()),
            format!("file://{}/cam/../..", root.display()),
            "file:///etc".into(),
        ] {
            let err = SegmentSource::from_prefix(&bad, Some(&root), &none, Scope::Edge).unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{bad}: {err}");
        }
        assert!(matches!(
            SegmentSource::from_prefix("file:///tmp", None, &none, Scope::Edge),
            Err(FetchError::Forbidden(_))
        ));
        assert!(matches!(
            SegmentSource::from_prefix("ftp://x/", Some(&root), &none, Scope::Edge),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            SegmentSource::from_prefix("http://cam.local/hls/", None, &none, Scope::Edge),
            Err(FetchError::Forbidden(_))
        ));
        let cams = FetchAllow::parse(&["cam.local".into()]).unwrap();
        assert!(matches!(
            SegmentSource::from_prefix("http://cam.local/hls/", None, &cams, Scope::Edge),
            Ok(SegmentSource::Http(_))
        ));
        let _ = std::fs::remove_dir_all(root);
    }

    /// Camera A's own token reads camera A's directory and hosts only; the edge's token reads them all.
    #[test]
    fn a_sources_own_token_reaches_only_its_own_prefixes() {
        let root = std::env::temp_dir().join(format!("livemix-root-{}", uuid::Uuid::new_v4()));
        for dir in ["cam-a/hls", "cam-b", "cam-ab", "shared"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("cam-b"), root.join("cam-a/to-b")).unwrap();
        std::os::unix::fs::symlink(root.join("cam-b"), root.join("cam-c")).unwrap();
        let global = FetchAllow::parse(&["10.0.0.0/24,cam-a.lan,cam-b.lan".into()]).unwrap();
        let lists = SourceFetchAllow::parse(&["cam-a=10.0.0.5,cam-a=cam-a.lan,cam-b=10.0.0.6/32".into()]).unwrap();
        let own = |name| Scope::Source { name, allow: lists.of(name) };
        let check = |prefix: String, scope| SegmentSource::from_prefix(&prefix, Some(&root), &global, scope);
        let file = |dir: &str| format!("file://{}/{dir}", root.display());

        assert!(matches!(check(file("cam-a"), own("cam-a")), Ok(SegmentSource::Dir(_))));
        assert!(matches!(check(file("cam-a/hls/"), own("cam-a")), Ok(SegmentSource::Dir(_))));
        for (prefix, why) in [
            (file("cam-b"), "another camera's directory"),
            (file("cam-ab"), "a directory whose name starts with the source's"),
            (file("shared"), "elsewhere under the root"),
            (file(""), "the root itself"),
            (file("cam-a/to-b"), "a link from its directory into another's"),
            (file("cam-a/../cam-b"), "'..'"),
        ] {
            let err = check(prefix, own("cam-a")).unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{why}: {err}");
            assert!(!err.to_string().contains(root.to_str().unwrap()), "{why}: names no path: {err}");
        }
        let err = check(file("cam-c"), own("cam-c")).unwrap_err();
        assert!(matches!(err, FetchError::Forbidden(_)), "a source directory that is a link: {err}");
        for dir in ["cam-b", "shared", ""] {
            assert!(matches!(check(file(dir), Scope::Edge), Ok(SegmentSource::Dir(_))), "the edge's token: {dir}");
        }

        let http = |host: &str| format!("http://{host}/hls/");
        assert!(matches!(check(http("10.0.0.5"), own("cam-a")), Ok(SegmentSource::Http(_))));
        assert!(matches!(check(http("cam-a.lan"), own("cam-a")), Ok(SegmentSource::Http(_))));
        assert!(matches!(check(http("10.0.0.6"), own("cam-b")), Ok(SegmentSource::Http(_))));
        for (host, name) in
            [("10.0.0.6", "cam-a"), ("cam-b.lan", "cam-a"), ("10.0.0.5", "cam-b"), ("10.0.0.7", "cam-a")]
        {
            let err = check(http(host), own(name)).unwrap_err();
            assert!(
                matches!(&err, FetchError::Forbidden(m) if m.contains("--source-fetch-allow")),
                "{name} -> {host}: {err}"
            );
        }
        let err = check(http("10.0.0.9"), own("cam-x")).unwrap_err();
        assert!(
            matches!(&err, FetchError::Forbidden(m) if m.contains("--source-fetch-allow") && m.contains("cam-x=")),
            "a source without entries: {err}"
        );
        // The global list still applies to a source's own hosts.
        let narrow = FetchAllow::parse(&["10.0.0.6".into()]).unwrap();
        let err = SegmentSource::from_prefix(&http("10.0.0.5"), None, &narrow, own("cam-a")).unwrap_err();
        assert!(matches!(&err, FetchError::Forbidden(m) if m.contains("--fetch-allow list")), "{err}");
        for host in ["10.0.0.6", "cam-b.lan", "10.0.0.5"] {
            assert!(matches!(check(http(host), Scope::Edge), Ok(SegmentSource::Http(_))), "the edge's token: {host}");
        }
        // Malformed prefixes are 400 whoever sends them.
        assert!(matches!(check("http://cam-a.lan".into(), own("cam-x")), Err(FetchError::Invalid(_))));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn http_prefixes_reach_only_allowed_hosts() {
        let allow = FetchAllow::parse(&["192.168.1.0/24,cams.lan".into()]).unwrap();
        let check = |prefix: &str| SegmentSource::from_prefix(prefix, None, &allow, Scope::Edge);
        assert!(matches!(check("http://192.168.1.20:8080/hls/"), Ok(SegmentSource::Http(_))));
        assert!(matches!(check("https://cams.lan/hls/cam-"), Ok(SegmentSource::Http(_))));
        for forbidden in [
            "http://127.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/",
            "http://localhost/",
            "http://cams.lan.evil.example/",
            "http://192.168.2.1/",
        ] {
            assert!(matches!(check(forbidden), Err(FetchError::Forbidden(_))), "{forbidden}");
        }
        for invalid in [
            "http://user:pw@cams.lan/",
            "http://cams.lan@127.0.0.1/",
            "http://cams.lan/hls/#",
            "http://cams.lan/x?a=",
            "http://cams.lan",
            "http://cams.lan\\@127.0.0.1/",
            "http://cams.lan/\r\nX-Injected: 1/",
            "gopher://cams.lan/",
        ] {
            assert!(matches!(check(invalid), Err(FetchError::Invalid(_))), "{invalid}");
        }
        match check("http://192.168.1.020/") {
            Ok(SegmentSource::Http(base)) => assert_eq!(base, "http://192.168.1.16/", "normalised (octal 020)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listed_names_cannot_escape() {
        assert!(check_segment_uri("seg-1.ts").is_ok());
        assert!(matches!(check_segment_uri("../x.ts"), Err(FetchError::Forbidden(_))));
        assert!(matches!(check_segment_uri("a/b.ts"), Err(FetchError::Forbidden(_))));
        assert!(matches!(check_segment_uri("a b.ts"), Err(FetchError::Invalid(_))));
        assert!(matches!(check_segment_uri("server.key"), Err(FetchError::Forbidden(_))), "only .ts");
    }

    #[tokio::test]
    async fn symlinks_out_of_the_prefix_are_refused() {
        let root = std::env::temp_dir().join(format!("livemix-root-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        let secret = std::env::temp_dir().join(format!("livemix-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&secret, b"secret").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("evil.ts")).unwrap();
        std::fs::write(root.join("good.ts"), b"ts").unwrap();
        let fetcher = Fetcher::new(Duration::from_secs(1), 1000, Arc::default()).unwrap();
        let Ok(SegmentSource::Dir(dir)) = SegmentSource::from_prefix(
            &format!("file://{}", root.display()),
            Some(&root),
            &FetchAllow::default(),
            Scope::Edge,
        ) else {
            panic!("a directory under the root")
        };
        assert_eq!(fetcher.read_file(&dir, "good.ts").await.unwrap(), Bytes::from_static(b"ts"));
        assert!(matches!(fetcher.read_file(&dir, "evil.ts").await, Err(FetchError::Forbidden(_))));
        // A FIFO never blocks the read; a directory named like a segment is no segment either.
        let fifo = root.join("fifo.ts");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let read = tokio::time::timeout(Duration::from_secs(5), fetcher.read_file(&dir, "fifo.ts")).await;
        assert!(matches!(read, Ok(Err(FetchError::Forbidden(_)))), "{read:?}");
        std::fs::create_dir(root.join("dir.ts")).unwrap();
        assert!(matches!(fetcher.read_file(&dir, "dir.ts").await, Err(FetchError::Forbidden(_))));
        std::fs::write(root.join("big.ts"), vec![0u8; 1001]).unwrap();
        assert!(matches!(fetcher.read_file(&dir, "big.ts").await, Err(FetchError::Unavailable(_))));
        assert!(matches!(fetcher.read_file(&dir, "missing.ts").await, Err(FetchError::Unavailable(_))));
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_file(secret);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn prefix() -> impl Strategy<Value = String> {
            let host = prop_oneof![
                Just("127.0.0.2".to_owned()),
                Just("cams.lan".to_owned()),
                Just("127.0.0.1".to_owned()),
                Just("[::ffff:127.0.0.2]".to_owned()),
                "[a-z0-9.:@\\[\\]%]{0,24}",
                any::<u32>().prop_map(|n| n.to_string()),
            ];
            (prop_oneof![Just("http://"), Just("https://"), Just("HtTp://"), Just("file://")], host, "\\PC{0,24}")
                .prop_map(|(scheme, host, rest)| format!("{scheme}{host}{rest}"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever the header says, an accepted http prefix leads to an allowed host, with no userinfo, query
            /// or fragment, and appending a segment name keeps it there.
            #[test]
            fn accepted_http_prefixes_stay_on_allowed_hosts(prefix in prefix(), name in "[a-z0-9]{1,8}\\.ts") {
                let allow = FetchAllow::parse(&["127.0.0.2/32,cams.lan".into()]).unwrap();
                if let Ok(SegmentSource::Http(base)) = SegmentSource::from_prefix(&prefix, None, &allow, Scope::Edge) {
                    let url = Url::parse(&format!("{base}{name}")).unwrap();
                    let allowed = match url.host() {
                        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::new(127, 0, 0, 2),
                        // The IPv4-mapped form is the same address.
                        Some(Host::Ipv6(ip)) => ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::new(127, 0, 0, 2)),
                        Some(Host::Domain(name)) => name == "cams.lan",
                        None => false,
                    };
                    prop_assert!(allowed, "{prefix:?} -> {url}");
                    prop_assert!(url.query().is_none() && url.fragment().is_none() && url.username().is_empty());
                }
            }

            #[test]
            fn accepted_segment_names_are_single_ts_components(uri in "\\PC{0,40}") {
                if check_segment_uri(&uri).is_ok() {
                    prop_assert!(!uri.contains('/') && !uri.contains("..") && uri.ends_with(".ts"));
                }
            }

            #[test]
            fn allow_lists_never_panic(entries in proptest::collection::vec("[a-z0-9.:/*, -]{0,30}", 0..4)) {
                if let Ok(allow) = FetchAllow::parse(&entries) {
                    let _ = allow.allows_name("cams.lan");
                    let _ = allow.allows_resolved("127.0.0.1".parse().unwrap());
                }
            }
        }
    }
}
