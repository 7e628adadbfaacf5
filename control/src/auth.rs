//! Who may call the control node: the management token, the edges' credentials, and the start-up policy that keeps
//! an API without credentials off the network.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time, so neither a token's bytes nor its
//! length shows in how long a refusal takes.

use std::{fmt, net::SocketAddr};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// clap value parser of tokens: empty or blank tokens are refused (an empty `Authorization: Bearer ` must never
/// match), surrounding whitespace (a newline from a Secret file) is dropped.
pub fn parse_token(raw: &str) -> Result<Secret, String> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("the token is empty; give a long random value (e.g. `openssl rand -hex 32`)".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token contains whitespace or control characters, which no HTTP header can carry".into());
    }
    Ok(Secret(token.to_owned()))
}

/// clap value parser of the playback signing key: at least 16 bytes (32 random bytes recommended).
pub fn parse_signing_key(raw: &str) -> Result<Secret, String> {
    let key = parse_token(raw)?;
    if key.0.len() < 16 {
        return Err("the signing key is shorter than 16 bytes; use e.g. `openssl rand -hex 32`".into());
    }
    Ok(key)
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// One token, kept as its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(secret: &Secret) -> Self {
        Self(digest(secret.0.as_bytes()))
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.ct_eq(&digest(presented)))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<token>")
    }
}

/// Per-edge credentials: each edge id has its own token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EdgeTokens(Vec<(String, TokenDigest)>);

impl fmt::Debug for EdgeTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(id, _)| id)).finish()
    }
}

impl EdgeTokens {
    /// Parses `edge-id:token` entries separated by commas or new lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens: Vec<(String, TokenDigest)> = Vec::new();
        let entries = text.lines().flat_map(|line| line.split(',')).map(str::trim);
        for (n, entry) in entries.filter(|e| !e.is_empty() && !e.starts_with('#')).enumerate() {
            let (id, token) =
                entry.split_once(':').ok_or_else(|| format!("edge credential #{}: expected `edge-id:token`", n + 1))?;
            let id = id.trim();
            if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(format!("edge credential #{}: the edge id must be 1 to 128 letters, digits, - _ .", n + 1));
            }
            let token = parse_token(token).map_err(|err| format!("edge credential {id:?}: {err}"))?;
            let digest = TokenDigest::of(&token);
            if tokens.iter().any(|(other, _)| other == id) {
                return Err(format!("edge id {id:?} is listed twice"));
            }
            if tokens.iter().any(|(_, d)| *d == digest) {
                return Err(format!("edge {id:?} has the same token as another edge; each edge needs its own"));
            }
            tokens.push((id.to_owned(), digest));
        }
        Ok(Self(tokens))
    }

    /// Reads [`EdgeTokens::parse`]'s format from a file (a mounted Kubernetes Secret, say).
    pub fn read_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("reading {path}: {err}"))?;
        Self::parse(&text)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The edge whose token this is. Every entry is compared, so the time taken does not say which matched.
    pub fn identify(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for (id, token) in &self.0 {
            if bool::from(token.0.ct_eq(&presented)) {
                found = Some(id.as_str());
            }
        }
        found
    }

    /// Both sets together (the flag's and the file's); an id in both is an error.
    pub fn merged(mut self, other: Self) -> Result<Self, String> {
        for (id, token) in other.0 {
            if self.0.iter().any(|(mine, _)| *mine == id) {
                return Err(format!("edge id {id:?} is given both in LIVEMIX_EDGE_TOKENS and the tokens file"));
            }
            self.0.push((id, token));
        }
        Ok(self)
    }
}

/// Why the control node refuses to start with its auth settings.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    #[error(
        "refusing to serve the {api} API on {addr} without credentials: {remedy}, listen on a loopback address \
         (127.0.0.1), or pass --insecure-no-auth (LIVEMIX_INSECURE_NO_AUTH=true) if only trusted machines can reach it"
    )]
    Unprotected { api: &'static str, addr: SocketAddr, remedy: &'static str },
    #[error("{0}")]
    Credentials(String),
}

/// Whether an address only takes connections from this machine (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Checks that no API without credentials listens beyond loopback (unless the operator insisted), and says
/// loudly at start-up what is open.
pub fn check_exposure(
    management_protected: bool,
    management: SocketAddr,
    edge_protected: bool,
    edge: SocketAddr,
    insecure: bool,
) -> Result<(), ExposureError> {
    let apis = [
        ("management", management_protected, management, "set LIVEMIX_MANAGEMENT_TOKEN (--management-token)"),
        ("edge-facing", edge_protected, edge, "set LIVEMIX_EDGE_TOKENS, --edge-tokens-file or LIVEMIX_EDGE_TOKEN"),
    ];
    for (api, protected, addr, remedy) in apis {
        if protected {
            continue;
        }
        if is_loopback(&addr) {
            tracing::warn!(
                %addr,
                "the {api} API has NO authentication; it listens on loopback only, so only this machine can call it \
                 ({remedy} to serve it on the network)"
            );
        } else if insecure {
            tracing::warn!(
                %addr,
                "INSECURE: the {api} API has NO authentication and listens on {addr} because of --insecure-no-auth; \
                 anyone who can reach it controls it"
            );
        } else {
            return Err(ExposureError::Unprotected { api, addr, remedy });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_real_values() {
        assert!(parse_token("").is_err());
        assert!(parse_token("   \n").is_err());
        assert!(parse_token("a b").is_err());
        assert_eq!(parse_token(" s3cret\n").unwrap().expose(), "s3cret");
        assert_eq!(format!("{:?}", parse_token("s3cret").unwrap()), "<redacted>");
        assert!(parse_signing_key("short").is_err());
        assert!(parse_signing_key("0123456789abcdef").is_ok());
    }

    #[test]
    fn edge_tokens_parse_from_lists_and_files() {
        let tokens = EdgeTokens::parse("# site A\nedge-a:tok-a\n\nedge-b: tok-b ,edge-c:tok-c\n").unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.identify(b"tok-b"), Some("edge-b"));
        assert_eq!(tokens.identify(b"tok-c"), Some("edge-c"));
        assert_eq!(tokens.identify(b"tok"), None);
        assert_eq!(tokens.identify(b""), None);
        assert_eq!(format!("{tokens:?}"), r#"["edge-a", "edge-b", "edge-c"]"#, "ids only, never tokens");
        for bad in ["edge-a", "edge-a:", ":tok", "a b:tok", "edge-a:t1,edge-a:t2", "edge-a:same,edge-b:same"] {
            assert!(EdgeTokens::parse(bad).is_err(), "{bad:?}");
        }
        let merged = EdgeTokens::parse("a:1").unwrap().merged(EdgeTokens::parse("b:2").unwrap()).unwrap();
        assert_eq!(merged.identify(b"2"), Some("b"));
        assert!(EdgeTokens::parse("a:1").unwrap().merged(EdgeTokens::parse("a:2").unwrap()).is_err());
    }

    #[test]
    fn unprotected_apis_stay_on_loopback_unless_insisted() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_exposure(false, local, false, mapped, false).is_ok());
        assert!(check_exposure(true, any, true, any, false).is_ok());
        let err = check_exposure(false, any, true, any, false).unwrap_err().to_string();
        assert!(err.contains("management") && err.contains("LIVEMIX_MANAGEMENT_TOKEN"), "{err}");
        let err = check_exposure(true, any, false, any, false).unwrap_err().to_string();
        assert!(err.contains("edge-facing"), "{err}");
        assert!(check_exposure(false, any, false, any, true).is_ok());
    }
}
