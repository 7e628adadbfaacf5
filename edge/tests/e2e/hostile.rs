//! Issue 11's battery: hostile requests against a real edge (SSRF forms, traversal, FIFOs and key files, hosts
//! that never answer or answer badly, huge and endless bodies, non-UTF-8, header injection, 10,000-entry
//! playlists, absurd numbers, unknown methods, missing and wrong tokens). Each gets its documented status, no reply
//! carries a secret, a remote body or a resolver's words, and ffmpeg's stream beside it keeps playing.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Method, RequestBuilder, header::HeaderValue};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::support::{
    Deployment, EDGE_TOKEN, INGEST_TOKEN, eventually_within, ffprobe_live, http, run_to_exit, unique,
};

/// A file under the root no reply may ever show.
const KEY_CONTENTS: &str = "SECRET-KEY-MATERIAL";
/// What the misbehaving host puts in its error bodies.
const REMOTE_SECRET: &str = "SECRET-REMOTE-BODY";
const OTHER_SOURCE_TOKEN: &str = "other-camera-token";
const FETCH_TIMEOUT_MS: u64 = 1500;
const DEADLINE_SECS: u64 = 3;

/// A web server on 127.0.0.2 (allowed by `--fetch-allow`) that misbehaves in every way its path asks for.
async fn misbehaving_host(edge_port: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let kind = path.split('/').nth(1).unwrap_or("");
                let _ = match kind {
                    "redirect" => {
                        let to = format!("http://127.0.0.1:{edge_port}/metrics");
                        conn.write_all(
                            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await
                    }
                    "hang" => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        Ok(())
                    }
                    "slow" => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").await;
                        loop {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            if conn.write_all(b"G").await.is_err() {
                                break Ok(());
                            }
                        }
                    }
                    "huge" => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n").await;
                        let zeros = vec![0u8; 65536];
                        while conn.write_all(&zeros).await.is_ok() {}
                        Ok(())
                    }
                    "endless" => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
                        let chunk = [b"10000\r\n".as_slice(), &vec![0x47u8; 65536], b"\r\n"].concat();
                        while conn.write_all(&chunk).await.is_ok() {}
                        Ok(())
                    }
                    "error" | "missing" => {
                        let status = if kind == "error" { "500 Internal Server Error" } else { "404 Not Found" };
                        let body = format!("{REMOTE_SECRET} at {path}");
                        conn.write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                        )
                        .await
                    }
                    _ => conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await,
                };
            });
        }
    });
    addr
}

/// A request as the test sends it: through reqwest, or as raw bytes (what reqwest refuses to send).
enum Request {
    Http(Box<RequestBuilder>),
    Raw(Vec<u8>),
}

struct Case {
    what: String,
    request: Request,
    status: u16,
    /// The reply must come within this time.
    within: Duration,
}

/// Sends raw bytes and returns the status of the reply (0 when the edge closed without one).
async fn raw_status(addr: &str, bytes: &[u8]) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn playlist(names: &[&str]) -> String {
    let mut text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n".to_owned();
    for name in names {
        text.push_str(&format!("#EXTINF:1.0,\n{name}\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_hostile_requests_get_their_4xx_leak_nothing_and_the_stream_plays_on() {
    let fetch_timeout = format!("--fetch-timeout-ms={FETCH_TIMEOUT_MS}");
    let deadline = format!("--ingest-deadline-secs={DEADLINE_SECS}");
    let other = unique("other-cam");
    let per_source = format!("--ingest-tokens={other}:{OTHER_SOURCE_TOKEN}");
    let d = Deployment::start_with(
        &[],
        &[
            "--fetch-allow=127.0.0.2/32,localhost",
            &fetch_timeout,
            &deadline,
            &per_source,
            "--max-playlist-entries=64",
            "--max-playlist-bytes=1048576",
        ],
    )
    .await;
    let edge_addr = d.edge.trim_start_matches("http://").to_owned();
    let edge_port: u16 = edge_addr.rsplit(':').next().unwrap().parse().unwrap();

    // The stream that must keep playing, pushed by ffmpeg with the token in the URL.
    let name = unique("cam");
    let id = d.register(&name).await;
    d.set_streaming(&id, true).await;
    let _ffmpeg = d.ffmpeg_http_push(&name);
    let (first_seq, _) =
        eventually_within("a live playlist at control", Duration::from_secs(40), || d.live_playlist(&id)).await;

    // The source the hostile playlists are aimed at, and the file root's traps.
    let target = unique("target");
    d.register(&target).await;
    d.register(&other).await;
    let root = d.file_root.canonicalize().unwrap();
    let cam_dir = root.join("trap");
    std::fs::create_dir_all(&cam_dir).unwrap();
    std::fs::write(cam_dir.join("server.key"), KEY_CONTENTS).unwrap();
    std::fs::write(d.dir.join("outside.ts"), KEY_CONTENTS).unwrap();
    std::os::unix::fs::symlink(d.dir.join("outside.ts"), cam_dir.join("link.ts")).unwrap();
    std::os::unix::fs::symlink(&d.dir, root.join("escape")).unwrap();
    std::fs::create_dir_all(cam_dir.join("dir.ts")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(cam_dir.join("fifo.ts")).status().unwrap().success());
    let trap = format!("file://{}/", cam_dir.display());

    let host = misbehaving_host(edge_port).await;
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let one = playlist(&["seg.ts"]);
    let edge = d.edge.clone();
    let fast = Duration::from_secs(5);
    let bounded = Duration::from_secs(DEADLINE_SECS + 3);

    let post = |prefix: &str, body: String| {
        http()
            .post(format!("{edge}/v1/playlist"))
            .bearer_auth(INGEST_TOKEN)
            .header("Video-Source-Name", &target)
            .header("MPEG-TS-URI-Prefix", prefix)
            .body(body)
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |what: &str, request: RequestBuilder, status: u16, within: Duration| {
        cases.push(Case { what: what.to_owned(), request: Request::Http(Box::new(request)), status, within });
    };

    // SSRF: literal addresses in every spelling, and names not on the list (403 before anything is fetched).
    for prefix in [
        format!("http://127.0.0.1:{edge_port}/"),
        format!("http://0x7f000001:{edge_port}/"),
        format!("http://2130706433:{edge_port}/"),
        format!("http://0177.0.0.1:{edge_port}/"),
        format!("http://127.1:{edge_port}/"),
        format!("http://[::1]:{edge_port}/"),
        format!("http://[::ffff:127.0.0.1]:{edge_port}/"),
        format!("http://[::ffff:7f00:1]:{edge_port}/"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[fe80::1]/".into(),
        "http://0.0.0.0/".into(),
        "http://10.0.0.1/".into(),
        "http://192.168.0.1/".into(),
        "https://metadata.google.internal/computeMetadata/v1/".into(),
        "http://127.0.0.2.nip.io/".into(),
        "http://evil.example/".into(),
        "HTTP://127.0.0.1/".into(),
    ] {
        add(&format!("SSRF {prefix}"), post(&prefix, one.clone()), 403, fast);
    }
    // An allowed name whose DNS answer is loopback: refused on the resolved address (nothing read: 422).
    add("allowed name resolving to 127.0.0.1", post(&format!("http://localhost:{edge_port}/"), one.clone()), 422, fast);
    add("allowed name, FQDN form", post(&format!("http://LOCALHOST.:{edge_port}/"), one.clone()), 422, fast);
    // Prefix tricks (400).
    for prefix in [
        format!("http://user:pw@{host}/ok/"),
        format!("http://{host}@127.0.0.1/"),
        format!("http://{host}/ok/#"),
        format!("http://{host}/ok/x?y="),
        format!("http://{host}"),
        format!("http://{host}\\@127.0.0.1/"),
        "gopher://127.0.0.1/".into(),
        "ftp://127.0.0.2/".into(),
        "javascript:alert(1)//".into(),
        format!("http://{host}/ok/\tX-Injected: 1/"),
    ] {
        add(&format!("prefix trick {prefix:?}"), post(&prefix, one.clone()), 400, fast);
    }
    // An allowed host that misbehaves: nothing read (422), within the deadline, and no remote detail.
    for (what, path) in [
        ("redirect to the edge itself", "redirect"),
        ("host that never answers", "hang"),
        ("slow body", "slow"),
        ("huge body", "huge"),
        ("endless body", "endless"),
        ("500 with a secret body", "error"),
        ("404 with a secret body", "missing"),
    ] {
        add(what, post(&format!("http://{host}/{path}/"), one.clone()), 422, bounded);
    }
    add(
        "nothing listening (same reply as a hang)",
        post(&format!("http://127.0.0.2:{refused_port}/"), one.clone()),
        422,
        bounded,
    );
    let twenty: Vec<String> = (0..20).map(|i| format!("seg{i}.ts")).collect();
    let twenty: Vec<&str> = twenty.iter().map(String::as_str).collect();
    add(
        "20 entries at a host that never answers",
        post(&format!("http://{host}/hang/"), playlist(&twenty)),
        422,
        bounded,
    );

    // file://: traversal, encodings, links out, FIFOs, key files.
    let r = root.display();
    for (what, prefix, status) in [
        ("outside the root", "file:///etc/".to_owned(), 403),
        ("'..'", format!("file://{r}/../"), 403),
        ("encoded '..'", format!("file://{r}/%2e%2e/"), 403),
        ("encoded slashes", format!("file://{r}/trap/..%2f..%2f"), 403),
        ("relative path", "file://trap/".to_owned(), 403),
        ("directory symlink out of the root", format!("file://{r}/escape/"), 403),
        ("the root's parent by ..", format!("file://{r}/trap/../../"), 403),
    ] {
        add(&format!("file prefix: {what}"), post(&prefix, one.clone()), status, fast);
    }
    for (what, listed, status) in [
        ("key file (not .ts)", "server.key", 403),
        ("symlink out of the root", "link.ts", 422),
        ("FIFO", "fifo.ts", 422),
        ("directory named .ts", "dir.ts", 422),
        ("'..' in a name", "../../etc/passwd", 403),
        ("encoded '..' in a name", "%2e%2e%2foutside.ts", 400),
        ("absolute name", "/etc/passwd.ts", 403),
        ("backslash name", "..\\outside.ts", 403),
        ("missing file", "nothing-here.ts", 422),
    ] {
        add(&format!("listed {what}"), post(&trap, playlist(&[listed])), status, fast);
    }

    // Playlist bodies.
    add("non-UTF-8 playlist", post(&trap, String::new()).body(vec![0xffu8, 0xfe, 0x00, 0x80]), 400, fast);
    let ten_thousand: Vec<String> = (0..10_000).map(|i| format!("s{i}.ts")).collect();
    let ten_thousand: Vec<&str> = ten_thousand.iter().map(String::as_str).collect();
    let big = playlist(&ten_thousand);
    assert!(big.len() < 1_000_000);
    add("10,000-entry playlist (only the newest 64 looked at)", post(&trap, big), 422, fast);
    add("absurd EXTINF", post(&trap, one.replace("#EXTINF:1.0,", "#EXTINF:1e300,")), 400, fast);
    add("NaN EXTINF", post(&trap, one.replace("#EXTINF:1.0,", "#EXTINF:NaN,")), 400, fast);
    add("absurd media sequence", post(&trap, one.replace(":0\n", ":18446744073709551615\n")), 400, fast);
    add("master playlist", post(&trap, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n".into()), 400, fast);
    add("empty body", post(&trap, String::new()), 400, fast);
    add("over the playlist cap", post(&trap, "#EXTM3U\n".repeat(200_000)), 413, fast);

    // Headers.
    let bad_name = HeaderValue::from_bytes(b"cam\xff\xfe").unwrap();
    add(
        "non-ASCII source name",
        http()
            .post(format!("{edge}/v1/playlist"))
            .bearer_auth(INGEST_TOKEN)
            .header("Video-Source-Name", bad_name)
            .header("MPEG-TS-URI-Prefix", &trap)
            .body(one.clone()),
        400,
        fast,
    );
    add(
        "traversing source name",
        http()
            .post(format!("{edge}/v1/playlist"))
            .bearer_auth(INGEST_TOKEN)
            .header("Video-Source-Name", "../etc")
            .header("MPEG-TS-URI-Prefix", &trap)
            .body(one.clone()),
        400,
        fast,
    );

    // Credentials.
    let target_put = format!("{edge}/v1/ingest/{target}/index.m3u8");
    add("push without a token", http().put(&target_put).body(one.clone()), 401, fast);
    add("push with a wrong token", http().put(&target_put).bearer_auth("wrong").body(one.clone()), 403, fast);
    add(
        "push with an empty bearer",
        http().put(&target_put).header("authorization", "Bearer ").body(one.clone()),
        401,
        fast,
    );
    add(
        "push with basic auth",
        http().put(&target_put).basic_auth("x", Some(INGEST_TOKEN)).body(one.clone()),
        401,
        fast,
    );
    add(
        "another source's token",
        http().put(format!("{edge}/v1/ingest/{name}/x.ts")).bearer_auth(OTHER_SOURCE_TOKEN).body("x"),
        403,
        fast,
    );
    add("wrong token in the path", http().put(format!("{edge}/v1/ingest/{name}/wrong/x.ts")).body("x"), 403, fast);
    add(
        "playlist POST without a token",
        http()
            .post(format!("{edge}/v1/playlist"))
            .header("Video-Source-Name", &name)
            .header("MPEG-TS-URI-Prefix", &trap),
        401,
        fast,
    );
    add("preview without a token", http().get(format!("{edge}/v1/vod/live/{name}/vid.m3u8")), 401, fast);
    add("preview with a wrong path token", http().get(format!("{edge}/v1/vod/live/{name}/nope/vid.m3u8")), 403, fast);
    add("source list without a token", http().get(format!("{edge}/v1/source")), 401, fast);
    add("task list without a token", http().get(format!("{edge}/debug/tasks")), 401, fast);
    // Browsers.
    add(
        "cross-origin push from a web page",
        http()
            .put(format!("{edge}/v1/ingest/{name}/{INGEST_TOKEN}/x.ts"))
            .header("origin", "https://evil.example")
            .body("x"),
        403,
        fast,
    );
    add("text/plain form post", post(&trap, one.clone()).header("content-type", "text/plain"), 415, fast);
    add(
        "PUT playlist over the playlist cap",
        http().put(&target_put).bearer_auth(INGEST_TOKEN).body("#EXTM3U\n".repeat(200_000)),
        413,
        fast,
    );
    add(
        "segment name of 300 characters",
        http().put(format!("{edge}/v1/ingest/{target}/{}.ts", "a".repeat(300))).bearer_auth(INGEST_TOKEN).body("x"),
        400,
        fast,
    );
    add(
        "key file pushed",
        http().put(format!("{edge}/v1/ingest/{target}/server.key")).bearer_auth(INGEST_TOKEN).body(KEY_CONTENTS),
        400,
        fast,
    );
    // Methods.
    for method in ["PATCH", "TRACE", "FOO"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        add(
            &format!("{method} /v1/playlist"),
            http().request(method.clone(), format!("{edge}/v1/playlist")),
            405,
            fast,
        );
    }
    // Raw requests reqwest would not send.
    let raw = |what: &str, bytes: String, status: u16| Case {
        what: what.into(),
        request: Request::Raw(bytes.into_bytes()),
        status,
        within: Duration::from_secs(10),
    };
    let auth = format!("Authorization: Bearer {INGEST_TOKEN}\r\nConnection: close\r\n");
    cases.push(raw(
        "header injection (bare CR)",
        format!("POST /v1/playlist HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Video-Source-Name: x\rX-Evil: 1\r\nContent-Length: 0\r\n\r\n"),
        400,
    ));
    cases.push(raw(
        "absurd Content-Length",
        format!(
            "POST /v1/playlist HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 99999999999999999999999\r\n\r\n"
        ),
        400,
    ));
    // The body never comes: the body idle timeout (20 s) ends it, not a held handler.
    cases.push(Case {
        within: Duration::from_secs(30),
        ..raw(
            "a 5 GB segment announced, never sent",
            format!(
                "PUT /v1/ingest/{target}/x.ts HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 5000000000\r\n\r\n"
            ),
            408,
        )
    });
    cases.push(raw(
        "encoded traversal in the ingest path",
        format!("PUT /v1/ingest/{target}/%2e%2e%2f%2e%2e%2fx.ts HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 1\r\n\r\nx"),
        400,
    ));
    cases.push(raw(
        "a lone dot as the source in the ingest path",
        format!("PUT /v1/ingest/./x.ts HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 1\r\n\r\nx"),
        400,
    ));
    cases.push(raw(
        "a lone dot as Video-Source-Name",
        format!(
            "POST /v1/playlist HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Video-Source-Name: .\r\nMPEG-TS-URI-Prefix: \
             {trap}\r\nContent-Length: {}\r\n\r\n{one}",
            one.len()
        ),
        400,
    ));
    cases.push(raw(
        "DNS-rebinding style Host on a protected edge still needs the token",
        "GET /v1/source HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_owned(),
        401,
    ));

    assert!(cases.len() >= 60, "{} cases", cases.len());
    let forbidden_in_replies = [
        KEY_CONTENTS,
        REMOTE_SECRET,
        "127.0.0.2",
        "os error",
        "onnection refused",
        "error sending request",
        "operation timed out",
        root.to_str().unwrap(),
    ];
    let mut failures = Vec::new();
    let mut hang_message = None;
    let mut refused_message = None;
    for case in cases {
        let started = Instant::now();
        let (status, body) = match case.request {
            Request::Http(req) => match req.send().await {
                Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
                Err(err) => (0, err.to_string()),
            },
            Request::Raw(bytes) => raw_status(&edge_addr, &bytes).await,
        };
        let took = started.elapsed();
        if status != case.status {
            failures.push(format!("{}: expected {}, got {status}: {body}", case.what, case.status));
        }
        if took > case.within {
            failures.push(format!("{}: took {took:?}", case.what));
        }
        if let Some(leak) = forbidden_in_replies.iter().find(|marker| body.contains(*marker)) {
            failures.push(format!("{}: the reply shows {leak:?}: {body}", case.what));
        }
        if case.what == "host that never answers" {
            hang_message = serde_json::from_str::<Value>(&body).ok().map(|v| v["error"]["message"].clone());
        }
        if case.what.starts_with("nothing listening") {
            refused_message = serde_json::from_str::<Value>(&body).ok().map(|v| v["error"]["message"].clone());
        }
    }
    assert!(failures.is_empty(), "{} hostile requests misbehaved:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(hang_message, refused_message, "a refused connection and a hang look the same (no port scanning)");

    // The stream carried on, at control and in the edge's preview (the token in the path, as a player would).
    eventually_within("the stream to keep going", Duration::from_secs(30), || async {
        d.live_playlist(&id).await.filter(|(seq, _)| *seq >= first_seq + 3)
    })
    .await;
    let (frames, _) = ffprobe_live(&d.live_url(&id)).await;
    assert!(frames > 0, "control's live playlist plays after the battery");
    let (frames, _) = ffprobe_live(&format!("{edge}/v1/vod/live/{name}/{INGEST_TOKEN}/vid.m3u8")).await;
    assert!(frames > 0, "the edge preview plays after the battery");
    let tasks: Value =
        http().get(format!("{edge}/debug/tasks")).bearer_auth(INGEST_TOKEN).send().await.unwrap().json().await.unwrap();
    for task in tasks["tasks"].as_array().unwrap() {
        assert_eq!(task["up"], true, "{task}");
    }
}

const PREVIEW_TOKEN: &str = "e2e-preview-token";

/// A client that reaches the edge under a DNS name pointing at it, as a page after DNS rebinding does; over
/// HTTP/2 (prior knowledge) the name travels as `:authority`, with no `Host` header.
fn rebound_client(edge: SocketAddr, http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().resolve("rebound.evil.example", edge).timeout(Duration::from_secs(10));
    if http2 { builder.http2_prior_knowledge() } else { builder }.build().unwrap()
}

/// Pushes segment `segN.ts` and a playlist listing it without a token (ingest is open on these edges).
async fn push_open(client: &reqwest::Client, edge: &str, source: &str, n: u32) {
    let segment = vec![0x47u8; 188 * 10];
    let name = format!("seg{n}.ts");
    let resp = client.put(format!("{edge}/v1/ingest/{source}/{name}")).body(segment).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
    let listed = playlist(&[&name]).replace("SEQUENCE:0", &format!("SEQUENCE:{n}"));
    let resp = client.put(format!("{edge}/v1/ingest/{source}/index.m3u8")).body(listed).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
}

/// An edge whose ingest has no token (a preview token alone, then none) answers only loopback host names, by
/// `Host` and by HTTP/2 `:authority`; a token-less preview gives no web origin the right to read it, a
/// token-protected one any, with private caching; `--preview-cors-origins` lists origins for the token-less one.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_without_an_ingest_token_answers_loopback_names_only_and_guards_its_preview() {
    let preview_only = format!("--preview-token={PREVIEW_TOKEN}");
    let mut d = Deployment::start_with(&[], &["!--ingest-token", &preview_only]).await;
    let source = unique("cam");
    d.register(&source).await;
    let addr: SocketAddr = d.edge.trim_start_matches("http://").parse().unwrap();
    let rebound = format!("http://rebound.evil.example:{}", addr.port());
    let (h1, h2) = (rebound_client(addr, false), rebound_client(addr, true));
    let local_h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();

    let ingest = format!("/v1/ingest/{source}/seg9.ts");
    let status = |resp: reqwest::Result<reqwest::Response>| resp.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status(h1.put(format!("{rebound}{ingest}")).body("x").send().await), 403, "HTTP/1 Host");
    assert_eq!(status(h2.put(format!("{rebound}{ingest}")).body("x").send().await), 403, "HTTP/2 :authority");
    let preview = format!("/v1/vod/live/{source}/vid.m3u8");
    let resp = h2.get(format!("{rebound}{preview}")).bearer_auth(PREVIEW_TOKEN).send().await;
    assert_eq!(status(resp), 403, "even with the preview token");
    // Addressed as 127.0.0.1, over HTTP/2 too, the same edge takes the push.
    push_open(&local_h2, &d.edge, &source, 0).await;

    // The preview needs its token, so any page holding it may read it; segments are not for shared caches.
    let resp = http()
        .get(format!("{}{preview}", d.edge))
        .bearer_auth(PREVIEW_TOKEN)
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let segment = format!("{}/v1/vod/live/{source}/{PREVIEW_TOKEN}/seg0.ts", d.edge);
    let resp = http().get(&segment).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.starts_with("private"), "a token-protected segment is {cache:?}");
    let preflight = http()
        .request(Method::OPTIONS, format!("{}{preview}", d.edge))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");

    // No token at all: any local page could guess a camera name, so no origin may read the preview...
    d.restart_edge_with(&["!--preview-token"]).await;
    assert_eq!(status(h2.get(format!("{rebound}/v1/source")).send().await), 403, "HTTP/2 :authority");
    push_open(&http(), &d.edge, &source, 1).await;
    let preview_url = format!("{}{preview}", d.edge);
    let from = |origin: &'static str| http().get(&preview_url).header("origin", origin);
    let resp = from("https://evil.example").send().await.unwrap();
    assert_eq!(resp.status(), 200, "the preview itself still plays locally");
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());
    let resp = http()
        .request(Method::OPTIONS, format!("{}{preview}", d.edge))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());

    // ...unless listed.
    d.restart_edge_with(&["--preview-cors-origins=https://console.example"]).await;
    push_open(&http(), &d.edge, &source, 2).await;
    let resp = from("https://console.example").send().await.unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://console.example");
    assert!(from("https://evil.example").send().await.unwrap().headers().get("access-control-allow-origin").is_none());
}

/// A 5xx of the edge says what failed and under which request id, never the control node's URL or the
/// transport's words.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_outage_is_a_generic_503_with_the_request_id() {
    let mut d = Deployment::start().await;
    let control_port = d.mgmt("").rsplit(':').next().unwrap().to_owned();
    d.kill_control().await;
    let source = unique("cam");
    let resp = http()
        .put(format!("{}/v1/ingest/{source}/seg0.ts", d.edge))
        .bearer_auth(INGEST_TOKEN)
        .body(vec![0x47u8; 188])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap();
    assert!(body.contains(&request_id), "{body}");
    for leak in ["http://", "127.0.0.1", "onnection refused", "error sending request", "unreachable"] {
        assert!(!body.contains(leak), "the reply shows {leak:?}: {body}");
    }
    assert!(!body.contains(&control_port), "{body}");
}

const CAM_A_TOKEN: &str = "e2e-cam-a-token";
const CAM_B_TOKEN: &str = "e2e-cam-b-token";

/// A camera's web server on `ip`: every GET gets a small segment. Counts the requests it gets.
async fn camera_host(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = vec![0x47u8; 188 * 10];
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(&[head.as_bytes(), &body].concat()).await;
            });
        }
    });
    (addr, hits)
}

/// The status and body of a reply.
async fn answer(resp: reqwest::Result<reqwest::Response>) -> (u16, String) {
    let resp = resp.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

/// Camera A's own token (`--ingest-tokens`) cannot make the edge read camera B's directory or camera B's host
/// (nor any other directory of the file root): 403 with a JSON message naming the flag to set, and camera B's
/// host never gets a request. Its own directory and its own `--source-fetch-allow` host work; camera B, with no
/// entry there, may use no http prefix on its own token; the edge's ingest token keeps the edge-wide rules.
#[tokio::test(flavor = "multi_thread")]
async fn a_sources_own_token_reaches_only_its_own_directory_and_hosts() {
    let (cam_a, cam_b) = (unique("cam-a"), unique("cam-b"));
    let (host_a, hits_a) = camera_host("127.0.0.2").await;
    let (host_b, hits_b) = camera_host("127.0.0.3").await;
    let tokens = format!("--ingest-tokens={cam_a}:{CAM_A_TOKEN},{cam_b}:{CAM_B_TOKEN}");
    let own_hosts = format!("--source-fetch-allow={cam_a}=127.0.0.2");
    let d = Deployment::start_with(&[], &["--fetch-allow=127.0.0.2/32,127.0.0.3/32", &tokens, &own_hosts]).await;
    let root = d.file_root.canonicalize().unwrap();
    for dir in [cam_a.as_str(), cam_b.as_str(), "shared"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        for n in 0..20 {
            std::fs::write(root.join(dir).join(format!("seg{n}.ts")), vec![0x47u8; 188 * 10]).unwrap();
        }
    }
    d.register(&cam_a).await;
    d.register(&cam_b).await;

    let mut n = 0;
    let mut post = |source: &str, token: &str, prefix: String| {
        n += 1;
        let body = playlist(&[&format!("seg{n}.ts")]).replace("SEQUENCE:0", &format!("SEQUENCE:{n}"));
        http()
            .post(format!("{}/v1/playlist", d.edge))
            .bearer_auth(token)
            .header("Video-Source-Name", source)
            .header("MPEG-TS-URI-Prefix", prefix)
            .body(body)
            .send()
    };
    let file = |dir: &str| format!("file://{}/{dir}", root.display());
    let web = |host: SocketAddr| format!("http://{host}/hls/");

    let mut failures = Vec::new();
    let mut expect = |what: &str, (status, body): (u16, String), want: u16, says: &[&str]| {
        if status != want {
            failures.push(format!("{what}: expected {want}, got {status}: {body}"));
        }
        if want >= 400 {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
            match message {
                Some(m) if says.iter().all(|s| m.contains(s)) => {}
                _ => failures.push(format!("{what}: a JSON error saying {says:?} expected: {body}")),
            }
        }
        if body.contains(root.to_str().unwrap()) {
            failures.push(format!("{what}: the reply shows the file root: {body}"));
        }
    };
    for (what, prefix) in [
        ("camera B's directory", file(&cam_b)),
        ("the file root itself", file("")),
        ("another directory of the root", file("shared")),
        ("'..' out of its own directory", file(&format!("{cam_a}/../{cam_b}"))),
    ] {
        let reply = answer(post(&cam_a, CAM_A_TOKEN, prefix).await).await;
        expect(&format!("camera A's token, {what}"), reply, 403, &["file://", cam_a.as_str()]);
    }
    let reply = answer(post(&cam_a, CAM_A_TOKEN, web(host_b)).await).await;
    expect("camera A's token, camera B's host", reply, 403, &["--source-fetch-allow"]);
    let reply = answer(post(&cam_b, CAM_A_TOKEN, file(&cam_b)).await).await;
    expect("camera A's token, as camera B", reply, 403, &["token"]);
    let reply = answer(post(&cam_b, CAM_B_TOKEN, web(host_b)).await).await;
    let entry = format!("{cam_b}=");
    expect("camera B's token, no --source-fetch-allow entry", reply, 403, &["--source-fetch-allow", entry.as_str()]);
    assert_eq!(hits_b.load(Ordering::SeqCst), 0, "camera B's host was never asked");

    let reply = answer(post(&cam_a, CAM_A_TOKEN, file(&cam_a)).await).await;
    expect("camera A's token, its own directory", reply, 200, &[]);
    let reply = answer(post(&cam_a, CAM_A_TOKEN, web(host_a)).await).await;
    expect("camera A's token, its own host", reply, 200, &[]);
    let reply = answer(post(&cam_b, CAM_B_TOKEN, file(&cam_b)).await).await;
    expect("camera B's token, its own directory", reply, 200, &[]);
    let reply = answer(post(&cam_b, INGEST_TOKEN, file("shared")).await).await;
    expect("the edge's token, anywhere under the root", reply, 200, &[]);
    let reply = answer(post(&cam_b, INGEST_TOKEN, web(host_b)).await).await;
    expect("the edge's token, any --fetch-allow host", reply, 200, &[]);
    assert!(failures.is_empty(), "{} requests misbehaved:\n{}", failures.len(), failures.join("\n"));
    assert!(hits_a.load(Ordering::SeqCst) >= 1 && hits_b.load(Ordering::SeqCst) >= 1);
    assert_eq!(d.edge_ingested(&cam_a).await, 2);
    assert_eq!(d.edge_ingested(&cam_b).await, 3);
}

/// One camera pushing 1 MB segments it never lists fills its share of a small edge's upload room and gets 507
/// (naming its share); another camera's upload and playlist still go in, and so does a real ffmpeg push.
#[tokio::test(flavor = "multi_thread")]
async fn a_greedy_uploader_cannot_take_every_cameras_upload_room() {
    // 8 MB of budget, half of it for uploads: four of the greedy camera's 1 MB segments fill it.
    let d = Deployment::start_with(&[], &["--cache-bytes=8000000"]).await;
    let (greedy, other) = (unique("greedy"), unique("cam"));
    d.register(&greedy).await;
    d.register(&other).await;
    let put = |source: &str, file: String, body: Vec<u8>| {
        http().put(format!("{}/v1/ingest/{source}/{file}", d.edge)).bearer_auth(INGEST_TOKEN).body(body).send()
    };
    let mut refused = None;
    for n in 0..10 {
        let (status, body) = answer(put(&greedy, format!("never-{n}.ts"), vec![0x47u8; 1_000_000]).await).await;
        match status {
            201 => continue,
            507 => {
                refused = Some((n, body));
                break;
            }
            other => panic!("upload {n}: {other}: {body}"),
        }
    }
    let (n, refusal) = refused.expect("the greedy camera is refused at its share");
    assert_eq!(n, 4, "refused once it held its share: {refusal}");
    // The other camera gets in, at the greedy camera's expense...
    let (status, body) = answer(put(&other, "seg0.ts".into(), vec![0x47u8; 188 * 10]).await).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = answer(put(&other, "index.m3u8".into(), playlist(&["seg0.ts"]).into_bytes()).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("seg0.ts"), "{body}");
    let message: Value = serde_json::from_str(&refusal).unwrap();
    let message = message["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(&greedy) && message.contains("share"), "the greedy camera's refusal: {refusal}");
    // ...and while both hold uploads, the greedy one (3 MB, over its 2 MB) is still refused.
    let (status, body) = answer(put(&other, "seg1.ts".into(), vec![0x47u8; 188 * 10]).await).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = answer(put(&greedy, "never-x.ts".into(), vec![0x47u8; 1_000_000]).await).await;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("2 sources"), "{body}");

    // A real camera's ffmpeg push plays.
    let (name, id, _ffmpeg, _) = d.http_stream().await;
    let (frames, _) = ffprobe_live(&d.live_url(&id)).await;
    assert!(frames > 0, "{name} plays");
    assert!(d.edge_ingested(&name).await > 0);
}

/// `--edge-token-file` (`LIVEMIX_EDGE_TOKEN_FILE`, a mounted Secret's key per pod) gives the edge its control
/// token; both ways at once, an empty or a missing file stop the start with a message naming the path; a refused
/// token value, from a flag, the environment or a config file, never appears in the output.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_token_comes_from_a_file_and_refused_tokens_are_never_echoed() {
    let mut d = Deployment::start().await;
    let source = unique("cam");
    d.register(&source).await;
    let secrets = d.dir.join("edge-token");
    std::fs::create_dir_all(&secrets).unwrap();
    let pod = secrets.join("livemix-edge-0");
    std::fs::write(&pod, format!("{EDGE_TOKEN}\n")).unwrap();
    d.set_edge_env("LIVEMIX_EDGE_TOKEN", None);
    d.set_edge_env("LIVEMIX_EDGE_TOKEN_FILE", Some(pod.display().to_string()));
    d.restart_edge_with(&[]).await;
    let edge_url = d.edge.clone();
    let put = |n: u32| {
        http()
            .put(format!("{edge_url}/v1/ingest/{source}/seg{n}.ts"))
            .bearer_auth(INGEST_TOKEN)
            .body(vec![0x47u8; 188 * 10])
            .send()
    };
    let (status, body) = answer(put(0).await).await;
    assert_eq!(status, 201, "the control node took the token from the file: {body}");

    let wrong = secrets.join("livemix-edge-1");
    std::fs::write(&wrong, "not-the-edge-token\n").unwrap();
    d.restart_edge_with(&[&format!("--edge-token-file={}", wrong.display())]).await;
    let (status, body) = answer(put(1).await).await;
    assert_eq!(status, 503, "the control node refused the file's other token: {body}");
    assert!(!body.contains("not-the-edge-token"), "{body}");

    let empty = secrets.join("livemix-edge-2");
    std::fs::write(&empty, "\n").unwrap();
    let config = d.dir.join("edge.yaml");
    std::fs::write(&config, "LIVEMIX_PREVIEW_TOKEN: \"leaky config value\"\n").unwrap();
    let edge = crate::support::binary("livemix-edge");
    let mut env = d.edge_envs();
    env.retain(|(name, _)| *name != "LIVEMIX_EDGE_TOKEN_FILE");
    let with = |extra: &[(&'static str, String)]| [env.clone(), extra.to_vec()].concat();
    let file_env = |path: &std::path::Path| ("LIVEMIX_EDGE_TOKEN_FILE", path.display().to_string());
    // The edge's command line without the flag the restart above added.
    let args = |extra: &[&str]| d.edge_args_with(&[&["!--edge-token-file"], extra].concat());
    let missing = secrets.join("livemix-edge-9");
    let (pod_path, empty_path, missing_path) =
        (pod.display().to_string(), empty.display().to_string(), missing.display().to_string());
    let config_flag = format!("--config={}", config.display());
    let both = with(&[file_env(&pod), ("LIVEMIX_EDGE_TOKEN", EDGE_TOKEN.into())]);
    let bad_tokens = with(&[("LIVEMIX_INGEST_TOKENS", "cam-a:leaky value,cam-b:leaky-2".into())]);
    let cases = [
        ("token and token file", args(&[]), both, vec!["--edge-token-file", "one way only", &pod_path]),
        ("empty token file", args(&[]), with(&[file_env(&empty)]), vec!["empty", &empty_path]),
        ("missing token file", args(&[]), with(&[file_env(&missing)]), vec!["cannot read", &missing_path]),
        ("bad per-source token in the environment", args(&[]), bad_tokens, vec!["LIVEMIX_INGEST_TOKENS", "secret"]),
        ("bad ingest token flag", args(&["--ingest-token=leaky/slash"]), env.clone(), vec!["--ingest-token", "secret"]),
        ("bad preview token in a config file", args(&[&config_flag]), env.clone(), vec!["--preview-token", "secret"]),
    ];
    for (what, args, envs, says) in cases {
        let (code, output) = run_to_exit(&edge, &args, &envs, Duration::from_secs(20)).await;
        assert_ne!(code, 0, "{what}: {output}");
        for said in says {
            assert!(output.contains(said), "{what}: {said:?} expected in {output}");
        }
        for leak in ["leaky", EDGE_TOKEN, "not-the-edge-token"] {
            assert!(!output.contains(leak), "{what}: the output shows {leak:?}: {output}");
        }
    }
}
