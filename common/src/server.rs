//! Serving an axum router over HTTP/1 and HTTP/2 with graceful shutdown and bounds on what a client can hold.
//!
//! This exists instead of `axum::serve` for two reasons. ffmpeg's HTTP output (`-method PUT|POST`) sends a
//! request, closes its write side and never reads the reply; hyper's default then drops the request before the
//! handler finishes, so every pushed segment would be lost (HTTP/1 half-close keeps the request alive). And every
//! listener here is bounded ([`Limits`]): a connection cap, a deadline for request headers (which is also the
//! idle timeout of a kept-alive connection), an idle and an overall deadline for request bodies, and a deadline
//! for the whole request, so slow or stuck clients cannot hold handlers, tasks or sockets.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo, http::StatusCode};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use parking_lot::Mutex;
use tokio::{net::TcpListener, sync::Notify};
use tower_http::timeout::{RequestBodyDeadlineLayer, RequestBodyTimeoutLayer, TimeoutLayer};

use crate::fds;

/// How long open connections get to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// What one client may hold on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (and never more than the listener's share of the descriptor limit); further
    /// clients wait in the kernel's accept backlog until one closes.
    pub max_connections: usize,
    /// Open connections of one peer address at most; default half the cap, so one client never holds them all.
    pub max_connections_per_peer: Option<usize>,
    /// Time to send a request's headers, counted from when the connection is ready for the next request: it
    /// closes slow-header clients and kept-alive connections left idle.
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body (a segment of several MB from a remote site included).
    pub body_deadline: Duration,
    /// Longest time a request may take from its headers to the start of its reply; then 503.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_peer: None,
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(20),
            body_deadline: Duration::from_secs(120),
            request_timeout: Duration::from_secs(150),
        }
    }
}

impl Limits {
    /// The router with the request and body deadlines applied (the connection-level bounds are [`serve_with`]'s).
    /// A body that stalls fails its extractor, which the API conventions answer with 408.
    pub fn apply(&self, router: Router) -> Router {
        router
            .layer(RequestBodyDeadlineLayer::new(self.body_deadline))
            .layer(RequestBodyTimeoutLayer::new(self.body_idle_timeout))
            .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, self.request_timeout))
    }
}

/// [`serve_with`] on the default [`Limits`].
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    serve_with(listener, router, Limits::default(), shutdown).await
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then drains open connections.
///
/// Open connections are capped at the smaller of `max_connections` and this listener's share of the descriptor
/// limit ([`fds::listener_share`]): further clients wait in the kernel's backlog, so one busy port cannot make
/// `accept` (or any outbound connection) fail for the whole process. One peer address may hold at most half of
/// the cap (`max_connections_per_peer` when set); its connections beyond that are closed at once. Handlers see
/// the peer as [`ConnectInfo`]`<SocketAddr>`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let _slot = fds::ListenerSlot::take();
    let router = limits.apply(router);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().half_close(true).timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    // HTTP/2 multiplexes: bound streams per connection too, and drop peers that stop answering pings.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    let local = listener.local_addr().ok();
    let cap = || limits.max_connections.min(fds::listener_share()).max(1);
    let per_peer = || limits.max_connections_per_peer.unwrap_or(cap() / 2).clamp(1, cap());
    tracing::info!(addr = ?local, max_connections = cap(), per_peer = per_peer(), "listener connection caps");
    let open = Arc::new(OpenConnections::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    'serve: loop {
        // Wait for a free slot before accepting: until then new clients wait in the backlog.
        let mut warned = false;
        loop {
            let closed = open.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if open.total() < cap() {
                break;
            }
            if !warned {
                tracing::warn!(addr = ?local, limit = cap(), "connection limit reached; new clients wait");
                warned = true;
            }
            tokio::select! {
                () = closed => {}
                () = &mut shutdown => break 'serve,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of file descriptors and the like: back off briefly rather than spin.
                Err(err) => {
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.admit(peer.ip(), per_peer()) else {
            tracing::debug!(%peer, limit = per_peer(), "connections per peer reached; closing the new one");
            drop(stream);
            continue;
        };
        let with_peer = move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        };
        let service = TowerToHyperService::new(tower::util::MapRequest::new(router.clone(), with_peer));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// A listener's open connections, in all and per peer address.
#[derive(Default)]
struct OpenConnections {
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    closed: Notify,
}

impl OpenConnections {
    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Counts a new connection of `peer`, unless it already has `limit`.
    fn admit(self: &Arc<Self>, peer: IpAddr, limit: usize) -> Option<ConnectionSlot> {
        let mut per_peer = self.per_peer.lock();
        let count = per_peer.entry(peer).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(ConnectionSlot { open: Arc::clone(self), peer })
    }
}

/// One open connection; dropping it frees its slot.
struct ConnectionSlot {
    open: Arc<OpenConnections>,
    peer: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_peer = self.open.per_peer.lock();
        if let Some(count) = per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                per_peer.remove(&self.peer);
            }
        }
        drop(per_peer);
        self.open.total.fetch_sub(1, Ordering::SeqCst);
        self.open.closed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::{get, post};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    async fn start(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: bytes::Bytes| async move { body.len().to_string() }));
        tokio::spawn(serve_with(listener, router, limits, std::future::pending()));
        addr
    }

    /// Reads until the peer closes (or 5 s pass); what arrived.
    async fn read_all(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn slow_headers_and_idle_connections_are_closed() {
        let limits = Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
        let addr = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = Instant::now();
        let reply = read_all(&mut slow).await;
        assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
        assert!(!reply.contains("200 OK"), "{reply}");
    }

    #[tokio::test]
    async fn slow_bodies_end_in_a_timeout_not_a_held_handler() {
        let limits = Limits { body_idle_timeout: Duration::from_millis(300), ..Limits::default() };
        let addr = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc").await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await.expect("a reply").unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");

        let limits = Limits {
            body_deadline: Duration::from_millis(500),
            body_idle_timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        let addr = start(limits).await;
        let mut trickle = TcpStream::connect(addr).await.unwrap();
        trickle.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").await.unwrap();
        let started = Instant::now();
        // One byte every 100 ms never trips the idle timeout, only the deadline.
        let reply = loop {
            if trickle.write_all(b"a").await.is_err() {
                break String::new();
            }
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buf)).await {
                break String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "the trickling body was never cut off");
        };
        assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    #[tokio::test]
    async fn one_peer_holds_at_most_its_share_and_others_are_still_served() {
        let limits = Limits { max_connections: 8, max_connections_per_peer: Some(2), ..Limits::default() };
        let addr = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            assert!(conn.read(&mut buf).await.unwrap() > 0);
            held.push(conn);
        }
        // The third from the same address is closed without a reply...
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(read_all(&mut third).await, "");
        // ...while another address is served.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        assert!(read_all(&mut other).await.starts_with("HTTP/1.1 200"));
        drop(held);
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let limits = Limits { max_connections: 1, ..Limits::default() };
        let addr = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        assert!(first.read(&mut buf).await.unwrap() > 0);
        // The second connection is accepted by the kernel but not served while the first stays open.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await.is_err());
        drop(first);
        let reply = read_all(&mut second).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
}
