//! Resource exhaustion on the real edge binary: memory held by unauthenticated request bodies, and descriptors
//! held by idle connections. Each attack runs while a client with the token pushes, which must keep working.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinSet,
};

use crate::support::{Deployment, INGEST_TOKEN, eventually_within, http, unique};

const ATTACKERS: usize = 200;
const ANNOUNCED: usize = 8_000_000;
const CHUNK: usize = 64 * 1024;

/// The resident memory of a process, in bytes (`VmRSS` of `/proc/<pid>/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// What an attacker's latest try came to.
#[derive(Default)]
struct Tally {
    /// Attackers the edge refused at least once (a reply or a closed connection before the body was all sent).
    refused: AtomicUsize,
    /// Attackers that sent all but the last byte of their body (what the edge buffered, if it reads first).
    holding: AtomicUsize,
}

/// One attacker: announces an 8 MB segment without a token and trickles it, 64 KiB every 50 ms, never sending the
/// last byte; refused, it tries again until `stop`.
async fn attack(edge: String, source: String, n: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok(conn) = TcpStream::connect(&edge).await else { continue };
        let (mut read, mut write) = conn.into_split();
        let answered = Arc::new(AtomicBool::new(false));
        let reader = {
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = read.read(&mut buf).await;
                answered.store(true, Ordering::SeqCst);
            })
        };
        let head = format!(
            "PUT /v1/ingest/{source}/attack{n}.ts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
        );
        let mut ok = write.write_all(head.as_bytes()).await.is_ok();
        let chunk = vec![0x47u8; CHUNK];
        let mut sent = 0;
        while ok && sent < ANNOUNCED - 1 && !answered.load(Ordering::SeqCst) && !stop.load(Ordering::Relaxed) {
            let len = CHUNK.min(ANNOUNCED - 1 - sent);
            ok = write.write_all(&chunk[..len]).await.is_ok();
            sent += len;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if sent >= ANNOUNCED - 1 && ok && !answered.load(Ordering::SeqCst) {
            tally.holding.fetch_add(1, Ordering::SeqCst);
            // Hold the nearly complete body until the test ends.
            while !stop.load(Ordering::Relaxed) && !answered.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reader.abort();
            return;
        }
        reader.abort();
        if !counted {
            tally.refused.fetch_add(1, Ordering::SeqCst);
            counted = true;
        }
        // Pace the retries: the attack goes on without spinning the machine's two cores.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pushes one segment with the token; its status.
async fn push(d: &Deployment, source: &str, n: usize) -> u16 {
    let url = format!("{}/v1/ingest/{source}/{INGEST_TOKEN}/seg{n}.ts", d.edge);
    match http().put(url).body(vec![0x47u8; 1_000_000]).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// The OOM: 200 unauthenticated clients each announcing an 8 MB body and trickling it. The edge refuses
/// them on their headers, so its memory barely moves (reading first, it held 1.6 GB), and the camera with the
/// token keeps pushing.
#[tokio::test(flavor = "multi_thread")]
async fn trickled_unauthenticated_bodies_hold_no_memory_and_ingest_goes_on() {
    let d = Deployment::start_with(&[], &["--max-segment-bytes=8000000"]).await;
    let source = unique("cam");
    d.register(&source).await;
    let edge_addr = d.edge.trim_start_matches("http://").to_owned();
    let pid = d.edge_pid();
    assert_eq!(push(&d, &source, 0).await, 201, "a push before the attack");
    let baseline = rss(pid);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let mut attackers = JoinSet::new();
    for n in 0..ATTACKERS {
        attackers.spawn(attack(edge_addr.clone(), source.clone(), n, Arc::clone(&tally), Arc::clone(&stop)));
    }
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Every attacker has been refused once or has sent all it will: the attack is at its height.
    eventually_within("every attacker refused or holding", Duration::from_secs(120), || async {
        let (refused, holding) = (tally.refused.load(Ordering::SeqCst), tally.holding.load(Ordering::SeqCst));
        (refused + holding >= ATTACKERS).then_some(())
    })
    .await;
    // Pushes with the token succeed while the attackers keep trying.
    for n in 1..=5 {
        assert_eq!(push(&d, &source, n).await, 201, "push {n} during the attack");
    }
    peak.fetch_max(rss(pid), Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    while attackers.join_next().await.is_some() {}

    let grew = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!(
        "edge RSS: baseline {} MB, peak during the attack {} MB (+{} MB); refused {}, holding {}",
        baseline >> 20,
        peak.load(Ordering::SeqCst) >> 20,
        grew >> 20,
        tally.refused.load(Ordering::SeqCst),
        tally.holding.load(Ordering::SeqCst),
    );
    assert_eq!(tally.holding.load(Ordering::SeqCst), 0, "no unauthenticated body was read");
    assert!(grew < 150 << 20, "the edge's memory grew by {} MB under the attack", grew >> 20);
}

/// The process's `Max open files` (soft, hard) from `/proc/<pid>/limits`.
fn fd_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    let mut numbers = line.split_whitespace().filter_map(|w| w.parse().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// The descriptor exhaustion: an edge started with a soft limit of 256 raises it to its hard limit, and
/// 700 idle connections from one address neither take every descriptor nor keep a client with the token out.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_from_one_peer_leave_room_for_ingest() {
    let mut d = Deployment::start().await;
    d.edge_fd_limit = Some((256, 640));
    d.restart_edge_with(&[]).await;
    assert_eq!(fd_limits(d.edge_pid()), (640, 640), "the edge raised its soft limit to the hard one");
    let source = unique("cam");
    d.register(&source).await;
    let edge: std::net::SocketAddr = d.edge.trim_start_matches("http://").parse().unwrap();

    // 700 idle connections from 127.0.0.2: more than the edge has descriptors.
    let mut idle = Vec::new();
    for _ in 0..700 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(conn) = socket.connect(edge).await {
            idle.push(conn);
        }
    }
    assert!(idle.len() >= 600, "{} idle connections opened", idle.len());
    // A client with the token, from another address, is served, and its push reaches the control node.
    let status = eventually_within("a push beside the idle connections", Duration::from_secs(10), || async {
        let url = format!("{}/v1/ingest/{source}/{INGEST_TOKEN}/seg0.ts", d.edge);
        let resp = http().put(url).body(vec![0x47u8; 1000]).timeout(Duration::from_secs(2)).send().await.ok()?;
        Some(resp.status().as_u16())
    })
    .await;
    assert_eq!(status, 201);
    drop(idle);
}
