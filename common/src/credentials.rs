//! Tokens and the checks both nodes make with them, in one place.
//!
//! A token from the command line or environment is a [`Secret`] (never printed); the nodes keep only its SHA-256
//! [`TokenDigest`] and compare digests in constant time, so neither a token's bytes nor its length shows in how
//! long a refusal takes. A presented token is hashed once per request ([`Presented`]) and compared with every
//! candidate, so the time taken does not say which one matched either.

use std::{fmt, net::SocketAddr};

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest token accepted: more than any random token needs, and a bound on what a header may make us hash.
pub const MAX_TOKEN_LEN: usize = 512;

/// A secret from the command line or environment: never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// clap value parser of tokens sent in a header: empty, blank or unprintable tokens are refused (an empty
/// `Authorization: Bearer ` must never match); surrounding whitespace (a newline from a Secret file) is dropped.
pub fn parse_token(raw: &str) -> Result<Secret, String> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("the token is empty; give a long random value (e.g. `openssl rand -hex 32`)".into());
    }
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the token must be at most {MAX_TOKEN_LEN} visible ASCII characters (no spaces), which any HTTP header \
             can carry"
        ));
    }
    Ok(Secret(token.to_owned()))
}

/// [`parse_token`] for tokens that may also travel as a URL path segment (ffmpeg's PUT output cannot send
/// headers everywhere): `/ % ? #` are refused as well.
pub fn parse_path_token(raw: &str) -> Result<Secret, String> {
    let token = parse_token(raw)?;
    if token.0.bytes().any(|b| matches!(b, b'/' | b'%' | b'?' | b'#')) {
        return Err("the token is also a URL path segment, so it may not contain / % ? #".into());
    }
    Ok(token)
}

/// The digest of a token presented with a request, computed once and compared with every candidate.
pub struct Presented([u8; 32]);

impl Presented {
    pub fn new(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }
}

/// One configured token, kept as its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(secret: &Secret) -> Self {
        Self(Presented::new(secret.0.as_bytes()).0)
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &Presented) -> bool {
        bool::from(self.0.ct_eq(&presented.0))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<token>")
    }
}

/// Tokens of named callers (`edge-id:token`, `source:token`): each name has its own token, and no two names
/// share one (a shared token could not tell them apart). `Debug` lists the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NamedTokens(Vec<(String, TokenDigest)>);

impl fmt::Debug for NamedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

/// How one kind of [`NamedTokens`] reads: what its names are called, which names are valid and which tokens.
pub struct TokenListFormat {
    /// "edge id", "source".
    pub name: &'static str,
    pub valid_name: fn(&str) -> Result<(), String>,
    pub token: fn(&str) -> Result<Secret, String>,
}

impl NamedTokens {
    /// Parses `name:token` entries separated by commas or new lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str, format: &TokenListFormat) -> Result<Self, String> {
        let what = format.name;
        let mut tokens = Self::default();
        let entries = text.lines().flat_map(|line| line.split(',')).map(str::trim);
        for (n, entry) in entries.filter(|e| !e.is_empty() && !e.starts_with('#')).enumerate() {
            let (name, token) =
                entry.split_once(':').ok_or_else(|| format!("entry #{}: expected `{what}:token`", n + 1))?;
            let name = name.trim();
            // The reason only, not the name: an entry written backwards (`token:name`) would show the token.
            (format.valid_name)(name).map_err(|_| format!("entry #{}: the {what} before ':' is not valid", n + 1))?;
            let token = (format.token)(token).map_err(|err| format!("the token of {what} {name:?}: {err}"))?;
            tokens.push(name, TokenDigest::of(&token), what)?;
        }
        Ok(tokens)
    }

    fn push(&mut self, name: &str, token: TokenDigest, what: &str) -> Result<(), String> {
        if self.0.iter().any(|(other, _)| other == name) {
            return Err(format!("{what} {name:?} is given twice"));
        }
        if self.0.iter().any(|(_, other)| *other == token) {
            return Err(format!("{what} {name:?} has the same token as another; each needs its own"));
        }
        self.0.push((name.to_owned(), token));
        Ok(())
    }

    /// Both lists together (from a flag and a file, say); a name or token in both is an error.
    pub fn merged(mut self, other: Self, what: &str) -> Result<Self, String> {
        for (name, token) in other.0 {
            self.push(&name, token, what)?;
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `name` has a token here.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(candidate, _)| candidate == name)
    }

    /// The name whose token this is. Every entry is compared.
    pub fn identify(&self, presented: &Presented) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.0 {
            if token.matches(presented) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Whether `presented` is `name`'s own token. Every entry is compared.
    pub fn admits(&self, name: &str, presented: &Presented) -> bool {
        let mut found = false;
        for (candidate, token) in &self.0 {
            found |= token.matches(presented) && candidate == name;
        }
        found
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case, spaces trimmed); `None` when the
/// header is missing, of another scheme or empty. Each API words its own 401.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_first_chunk::<7>()?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// Whether an address only takes connections from this machine (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Whether a `Host` (with or without port) names this machine: `localhost` (and `*.localhost`), `127.0.0.1`,
/// `[::1]`. An API without credentials answers only these, so a web page cannot reach it through a DNS name it
/// points at 127.0.0.1 (DNS rebinding).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(name: &str) -> Result<(), String> {
        if name.is_empty() || name.contains(' ') { Err("bad name".into()) } else { Ok(()) }
    }

    const FORMAT: TokenListFormat = TokenListFormat { name: "caller", valid_name, token: parse_token };

    #[test]
    fn tokens_must_be_real_values() {
        for bad in ["", "   \n", "a b", "tab\there", "é-accent", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_token(" s3cret\n").unwrap().expose(), "s3cret");
        assert_eq!(parse_token("a/b+c=").unwrap().expose(), "a/b+c=", "base64 is fine in a header");
        for bad in ["a/b", "a%2f", "a?b", "a#b"] {
            assert!(parse_path_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{:?}", parse_token("s3cret").unwrap()), "<redacted>");
        assert_eq!(format!("{:?}", TokenDigest::of(&parse_token("s3cret").unwrap())), "<token>");
    }

    #[test]
    fn named_tokens_identify_and_admit_their_own() {
        let tokens = NamedTokens::parse("# site A\na:tok-a\n\nb: tok-b ,c:tok-c\n", &FORMAT).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.identify(&Presented::new(b"tok-b")), Some("b"));
        assert_eq!(tokens.identify(&Presented::new(b"tok")), None);
        assert_eq!(tokens.identify(&Presented::new(b"")), None);
        assert!(tokens.admits("c", &Presented::new(b"tok-c")));
        assert!(!tokens.admits("a", &Presented::new(b"tok-c")), "another's token");
        assert_eq!(format!("{tokens:?}"), r#"["a", "b", "c"]"#, "names only, never tokens");
        for bad in ["a", "a:", ":tok", "a b:tok", "a:t1,a:t2", "a:same,b:same"] {
            assert!(NamedTokens::parse(bad, &FORMAT).is_err(), "{bad:?}");
        }
        let one = |text| NamedTokens::parse(text, &FORMAT).unwrap();
        let merged = one("a:1").merged(one("b:2"), "caller").unwrap();
        assert_eq!(merged.identify(&Presented::new(b"2")), Some("b"));
        assert!(one("a:1").merged(one("a:2"), "caller").is_err());
        assert!(one("a:1").merged(one("b:1"), "caller").is_err());
    }

    #[test]
    fn bearer_tokens_and_loopback_hosts() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, token) in [
            ("bearer  tok ", Some(&b"tok"[..])),
            ("Bearer tok", Some(b"tok")),
            ("Basic dG9rOg==", None),
            ("Bearer ", None),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), token, "{value:?}");
        }
        for host in ["localhost", "LOCALHOST:8080", "app.localhost", "127.0.0.1:80", "[::1]:8080", "[::ffff:127.0.0.1]"]
        {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "localhost.example.com", "10.0.0.1:80", "[fe80::1]", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_loopback(&"[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(!is_loopback(&"0.0.0.0:1".parse().unwrap()));
    }
}
