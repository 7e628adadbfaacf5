//! Small HTTP helpers: timed requests, JSON API calls, ffmpeg-like chunked bodies, Prometheus text.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use tokio::time::Instant;

use crate::stats::failure_kind;

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("livemix-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("building an HTTP client")
}

/// Sends a request and reads the whole body: (status, body, time until the last byte).
pub async fn timed(req: RequestBuilder) -> Result<(StatusCode, Bytes, Duration), reqwest::Error> {
    let started = Instant::now();
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    Ok((status, body, started.elapsed()))
}

/// A request of the simulated load: the body of a 2xx answer and the time until its last byte, or how the request
/// failed (its status, or [`failure_kind`]), as [`crate::stats::Errors`] counts it.
pub async fn fetch_ok(req: RequestBuilder) -> Result<(Bytes, Duration), String> {
    match timed(req).await {
        Ok((status, body, elapsed)) if status.is_success() => Ok((body, elapsed)),
        Ok((status, _, _)) => Err(status.as_u16().to_string()),
        Err(err) => Err(failure_kind(&err)),
    }
}

/// A management API call that must succeed: its JSON reply and how long it took.
pub async fn json_ok(req: RequestBuilder, what: &str) -> anyhow::Result<(serde_json::Value, Duration)> {
    let (status, body, elapsed) = timed(req).await.with_context(|| what.to_owned())?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((serde_json::from_slice(&body).with_context(|| format!("{what}: reply is not JSON"))?, elapsed))
}

/// A node's `/metrics` text (empty when it does not answer: its counters then read as 0).
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A body sent the way ffmpeg's HTTP output sends it: chunked (no Content-Length), in `chunk`-byte writes.
pub fn chunked(data: &Bytes, chunk: usize) -> reqwest::Body {
    let parts = split(data, chunk).into_iter().map(Ok::<_, std::io::Error>);
    reqwest::Body::wrap_stream(futures::stream::iter(parts))
}

/// [`chunked`], plus a receiver that completes once the client has taken the whole body (ffmpeg's "written").
pub fn chunked_signalled(data: &Bytes, chunk: usize) -> (reqwest::Body, tokio::sync::oneshot::Receiver<()>) {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let parts = futures::stream::iter(split(data, chunk).into_iter().map(Ok::<_, std::io::Error>));
    let done = futures::stream::poll_fn(move |_| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
        std::task::Poll::Ready(None)
    });
    (reqwest::Body::wrap_stream(parts.chain(done)), rx)
}

fn split(data: &Bytes, chunk: usize) -> Vec<Bytes> {
    let chunk = chunk.max(1);
    (0..data.len()).step_by(chunk).map(|at| data.slice(at..(at + chunk).min(data.len()))).collect()
}

/// One sample of a Prometheus text exposition: metric name, label text (without braces) and value.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.trim().parse().ok()?;
        match series.split_once('{') {
            Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
            None => Some((series.trim(), "", value)),
        }
    })
}

/// The sum of every series of a metric (0 when absent).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text).filter(|(n, _, _)| *n == name).map(|(_, _, v)| v).sum()
}

/// A metric's series by their label text.
pub fn metric_series(text: &str, name: &str) -> BTreeMap<String, f64> {
    samples(text).filter(|(n, _, _)| *n == name).map(|(_, labels, v)| (labels.to_owned(), v)).collect()
}

/// The newest segment URI of a media playlist.
pub fn newest_segment(playlist: &str) -> Option<&str> {
    segment_uris(playlist).last()
}

/// The segment URIs of a media playlist, in order.
pub fn segment_uris(playlist: &str) -> impl Iterator<Item = &str> {
    playlist.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let text = "# HELP x_total X\n# TYPE x_total counter\nx_total 3\n\
                    y_total{reason=\"a\"} 1\ny_total{reason=\"b\"} 2.5\nyy_total 9\n# EOF\n";
        assert_eq!(metric_sum(text, "x_total"), 3.0);
        assert_eq!(metric_sum(text, "y_total"), 3.5);
        assert_eq!(metric_sum(text, "z_total"), 0.0);
        assert_eq!(metric_series(text, "y_total").get("reason=\"b\""), Some(&2.5));
    }

    #[test]
    fn playlists() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1.0,\nindex4.ts\n#EXTINF:1.0,\nindex5.ts\n";
        assert_eq!(newest_segment(text), Some("index5.ts"));
        assert_eq!(segment_uris(text).count(), 2);
        assert_eq!(newest_segment("#EXTM3U\n"), None);
    }

    #[test]
    fn chunked_bodies_keep_every_byte() {
        let data = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<_>>());
        let parts = split(&data, 300);
        assert_eq!(parts.iter().map(Bytes::len).collect::<Vec<_>>(), vec![300, 300, 300, 100]);
        assert_eq!(parts.concat(), data.to_vec());
    }
}
