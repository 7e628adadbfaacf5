//! Where `http(s)://` segment prefixes may lead: the `--fetch-allow` list (CIDRs and host names; empty by default,
//! so no http prefix is fetched until one is configured).
//!
//! The check is made on the address actually connected to: the fetcher's HTTP client resolves names through
//! [`GuardedResolver`], which drops every address the list does not allow, so a DNS answer of 127.0.0.1 (or a
//! name re-pointed between check and fetch) never gets a connection. The rules:
//! - an IP literal (however written: `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]` all normalise to one
//!   address) must lie in an allowed CIDR;
//! - a host name must be listed (exactly, or under a `*.suffix` entry), and each address it resolves to must lie
//!   in an allowed CIDR or be an ordinary unicast address; loopback, link-local (169.254.169.254, the cloud
//!   metadata service), unspecified, multicast, broadcast and IPv4-embedding IPv6 ranges need an explicit CIDR.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use livemix_common::model::validate_source_name;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a single-address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or CIDR"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Self { net, len })
    }
}

/// The `--fetch-allow` list.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FetchAllow {
    nets: Vec<Cidr>,
    /// Lower-case host names; `*.example` entries are kept as `.example`.
    names: Vec<String>,
}

impl fmt::Debug for FetchAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchAllow").field("nets", &self.nets).field("names", &self.names).finish()
    }
}

impl FetchAllow {
    /// Parses entries (CIDRs, addresses, host names, `*.suffix`), separated by commas or white space.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut allow = Self::default();
        for entry in entries.iter().flat_map(|e| e.split([',', ' ', '\n', '\t'])).map(str::trim) {
            if !entry.is_empty() {
                allow.add(entry).map_err(|err| format!("--fetch-allow entry {err}"))?;
            }
        }
        Ok(allow)
    }

    /// Adds one entry (a CIDR, an address, a host name or `*.suffix`); the error quotes the entry.
    fn add(&mut self, entry: &str) -> Result<(), String> {
        if entry.starts_with(|c: char| c.is_ascii_digit()) || entry.contains(':') {
            self.nets.push(entry.parse()?);
            return Ok(());
        }
        let name = entry.strip_prefix('*').unwrap_or(entry).to_ascii_lowercase();
        let label_ok =
            |l: &str| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let bare = name.strip_prefix('.').unwrap_or(&name);
        if name.len() > 253 || !bare.split('.').all(label_ok) || (entry.starts_with('*') && !name.starts_with('.')) {
            return Err(format!("{entry:?} is not a CIDR, an address or a host name"));
        }
        self.names.push(name);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.names.is_empty()
    }

    /// Whether a host name is listed.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|allowed| match allowed.strip_prefix('.') {
            Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(allowed.as_str()),
            None => *allowed == name,
        })
    }

    /// Whether an address given literally may be connected to: only inside an allowed CIDR.
    pub fn allows_literal(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// Whether an address a listed name resolved to may be connected to.
    pub fn allows_resolved(&self, ip: IpAddr) -> bool {
        self.allows_literal(ip) || !is_special(ip)
    }
}

/// `--source-fetch-allow`: the hosts each source's own token may name in an `http(s)://` prefix, on top of
/// `--fetch-allow` (a host must be on both). A source without entries may not use http prefixes on its own token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceFetchAllow(HashMap<String, FetchAllow>);

impl fmt::Debug for SourceFetchAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sources: Vec<_> = self.0.iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_map().entries(sources).finish()
    }
}

impl SourceFetchAllow {
    /// Parses `source=host-or-cidr` entries separated by commas or white space; a source may have many.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut allow = Self::default();
        let entries = entries.iter().flat_map(|e| e.split([',', ' ', '\n', '\t'])).map(str::trim);
        for entry in entries.filter(|e| !e.is_empty()) {
            let bad = |why: String| format!("--source-fetch-allow entry {entry:?}: {why}");
            let (source, host) = entry.split_once('=').ok_or_else(|| bad("expected `source=host-or-cidr`".into()))?;
            let (source, host) = (source.trim(), host.trim());
            validate_source_name(source).map_err(bad)?;
            if host.is_empty() {
                return Err(bad("no host or CIDR after '='".into()));
            }
            allow.0.entry(source.to_owned()).or_default().add(host).map_err(bad)?;
        }
        Ok(allow)
    }

    /// The hosts `source`'s own token may reach, if any are listed.
    pub fn of(&self, source: &str) -> Option<&FetchAllow> {
        self.0.get(source)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Addresses that reach this machine, its link or everyone rather than one remote host, and IPv6 forms that
/// embed an IPv4 address (which could be any of those).
pub fn is_special(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0)
                || v6.to_ipv4_mapped().is_some()
                || s[..6] == [0; 6]
        }
    }
}

/// The fetcher's DNS resolver: the system's answers, less every address [`FetchAllow`] refuses for the name.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow: Arc<FetchAllow>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if !allow.allows_name(&host) {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| allow.allows_resolved(a.ip())).collect();
            if allowed.is_empty() {
                tracing::warn!(host, "a listed host resolved only to addresses --fetch-allow does not allow");
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A resolution the allow-list refused.
#[derive(Debug, thiserror::Error)]
#[error("not an allowed address")]
pub struct Refused;

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &str) -> FetchAllow {
        FetchAllow::parse(&[entries.to_owned()]).unwrap()
    }

    #[test]
    fn cidrs_and_names() {
        let a = allow("192.168.1.0/24, cams.lan, *.site.example, 127.0.0.2, fd00::/8");
        assert!(a.allows_literal("192.168.1.20".parse().unwrap()));
        assert!(!a.allows_literal("192.168.2.20".parse().unwrap()));
        assert!(a.allows_literal("127.0.0.2".parse().unwrap()));
        assert!(!a.allows_literal("127.0.0.1".parse().unwrap()));
        assert!(a.allows_literal("::ffff:192.168.1.7".parse().unwrap()), "mapped forms are the same address");
        assert!(a.allows_literal("fd12::1".parse().unwrap()));
        assert!(a.allows_name("cams.lan") && a.allows_name("CAMS.LAN."));
        assert!(a.allows_name("gate.site.example") && !a.allows_name("site.example"));
        assert!(!a.allows_name("cams.lan.evil.example") && !a.allows_name("xcams.lan"));
    }

    #[test]
    fn special_addresses_need_an_explicit_cidr_even_for_a_listed_name() {
        let a = allow("cams.lan");
        for ip in ["127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "64:ff9b::7f00:1"] {
            assert!(!a.allows_resolved(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.1.20", "10.1.2.3", "8.8.8.8", "2001:db8:1::1"] {
            assert!(a.allows_resolved(ip.parse().unwrap()), "{ip}");
        }
        assert!(allow("cams.lan,127.0.0.0/8").allows_resolved("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_stop_the_start_up() {
        for bad in ["10.0.0.0/33", "exa mple_.com", "*example.com", "1.2.3", "::1/129", "a..b"] {
            assert!(FetchAllow::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(FetchAllow::parse(&[String::new()]).unwrap().is_empty());
    }

    #[test]
    fn source_lists_keep_each_source_to_its_own_hosts() {
        let lists = SourceFetchAllow::parse(&[
            "cam-a=10.0.0.5".into(),
            "cam-a=cam-a.lan, cam-b=10.0.0.6/32".into(),
            String::new(),
        ])
        .unwrap();
        let a = lists.of("cam-a").unwrap();
        assert!(a.allows_literal("10.0.0.5".parse().unwrap()) && a.allows_name("cam-a.lan"));
        assert!(!a.allows_literal("10.0.0.6".parse().unwrap()), "camera B's address");
        let b = lists.of("cam-b").unwrap();
        assert!(b.allows_literal("10.0.0.6".parse().unwrap()) && !b.allows_name("cam-a.lan"));
        assert!(lists.of("cam-c").is_none());
        assert_eq!(format!("{lists:?}").matches("cam-").count(), 3, "{lists:?}");
        for bad in
            ["cam-a", "cam-a=", "=10.0.0.5", "../x=10.0.0.5", "cam a=10.0.0.5", "cam-a=10.0.0.0/33", "cam-a=a..b"]
        {
            let err = SourceFetchAllow::parse(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains("--source-fetch-allow"), "{bad}: {err}");
        }
        assert!(SourceFetchAllow::parse(&[]).unwrap().is_empty());
    }
}
