//! Who may call the control node: the management token, the edges' credentials, and the start-up policy that keeps
//! an API without credentials off the network.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time, so neither a token's bytes nor its
//! length shows in how long a refusal takes.

use std::{fmt, net::SocketAddr};

use livemix_common::credentials::{NamedTokens, TokenListFormat};
pub use livemix_common::credentials::{Presented, Secret, TokenDigest, is_loopback, parse_token};

/// clap value parser of the playback signing key: at least 16 bytes (32 random bytes recommended).
pub fn parse_signing_key(raw: &str) -> Result<Secret, String> {
    let key = parse_token(raw)?;
    if key.expose().len() < 16 {
        return Err("the signing key is shorter than 16 bytes; use e.g. `openssl rand -hex 32`".into());
    }
    Ok(key)
}

/// Per-edge credentials: each edge id has its own token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EdgeTokens(NamedTokens);

impl fmt::Debug for EdgeTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

const EDGE_TOKENS: TokenListFormat =
    TokenListFormat { name: "edge id", valid_name: livemix_common::model::validate_edge_id, token: parse_token };

impl EdgeTokens {
    /// Parses `edge-id:token` entries separated by commas or new lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        NamedTokens::parse(text, &EDGE_TOKENS).map(Self).map_err(|err| format!("edge credentials: {err}"))
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

    /// Whether `id` is an edge with its own token.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// The edge whose token this is; every entry is compared.
    pub fn identify(&self, presented: &Presented) -> Option<&str> {
        self.0.identify(presented)
    }

    /// Both sets together (LIVEMIX_EDGE_TOKENS and the tokens file); an id or token in both is an error.
    pub fn merged(self, other: Self) -> Result<Self, String> {
        self.0
            .merged(other.0, "edge id")
            .map(Self)
            .map_err(|err| format!("LIVEMIX_EDGE_TOKENS and the tokens file together: {err}"))
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
    fn signing_keys_are_long_enough() {
        assert!(parse_signing_key("short").is_err());
        assert!(parse_signing_key("0123456789abcdef").is_ok());
    }

    #[test]
    fn edge_tokens_parse_from_lists_and_files() {
        let tokens = EdgeTokens::parse("# site A\nedge-a:tok-a\n\nedge-b: tok-b ,edge-c:tok-c\n").unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.identify(&Presented::new(b"tok-b")), Some("edge-b"));
        assert_eq!(tokens.identify(&Presented::new(b"tok-c")), Some("edge-c"));
        assert_eq!(tokens.identify(&Presented::new(b"tok")), None);
        assert_eq!(format!("{tokens:?}"), r#"["edge-a", "edge-b", "edge-c"]"#, "ids only, never tokens");
        for bad in ["edge-a", "edge-a:", ":tok", "a b:tok", "edge-a:t1,edge-a:t2", "edge-a:same,edge-b:same", "a/b:tok"]
        {
            assert!(EdgeTokens::parse(bad).is_err(), "{bad:?}");
        }
        let merged = EdgeTokens::parse("a:1").unwrap().merged(EdgeTokens::parse("b:2").unwrap()).unwrap();
        assert_eq!(merged.identify(&Presented::new(b"2")), Some("b"));
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
