//! Counters of the memcached server the control node uses (`stats`), to see the cache traffic behind each
//! phase. The server may be shared with other users: its counters then include their traffic too.

use std::{collections::BTreeMap, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub type Stats = BTreeMap<String, u64>;

/// The numeric `STAT` lines of `host:port`, or `None` when it does not answer in time.
pub async fn stats(addr: &str) -> Option<Stats> {
    let read = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"stats\r\n").await.ok()?;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !text.ends_with(b"END\r\n") {
            let n = conn.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        Some(parse(&String::from_utf8_lossy(&text)))
    };
    tokio::time::timeout(Duration::from_secs(2), read).await.ok().flatten()
}

fn parse(text: &str) -> Stats {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("STAT ")?.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect()
}

/// `after - before` of one counter.
pub fn delta(before: &Option<Stats>, after: &Option<Stats>, name: &str) -> Option<u64> {
    Some(after.as_ref()?.get(name)?.saturating_sub(*before.as_ref()?.get(name)?))
}

/// The host:port of a `memcache://host:port?...` URL.
pub fn addr_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next()?;
    (!hostport.is_empty()).then(|| hostport.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_and_urls() {
        let s = parse("STAT pid 7\r\nSTAT version 1.6.18\r\nSTAT get_hits 12\r\nEND\r\n");
        assert_eq!(s.get("get_hits"), Some(&12));
        assert!(!s.contains_key("version"));
        assert_eq!(delta(&Some(s.clone()), &Some(s), "get_hits"), Some(0));
        assert_eq!(addr_of("memcache://127.0.0.1:11211?timeout=5").as_deref(), Some("127.0.0.1:11211"));
        assert_eq!(addr_of("127.0.0.1:11211").as_deref(), Some("127.0.0.1:11211"));
    }
}
