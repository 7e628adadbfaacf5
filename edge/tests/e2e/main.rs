//! End to end with the real binaries, the real services and real ffmpeg: ffmpeg pushes into the edge, the
//! control node serves live and recorded video, ffprobe plays it.

mod exhaustion;
mod hostile;
mod recorder;
// Shared with the faults suite, which uses other parts of it.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use livemix_common::store::ObjectStore;
use serde_json::Value;

use support::{Deployment, INGEST_TOKEN, eventually, eventually_within, ffprobe, ffprobe_live, http, unique};

/// The seed's way: segments on a shared disk, playlist POSTed with `Video-Source-Name` and
/// `MPEG-TS-URI-Prefix: file://...`. Live, record with back-fill, replay, streaming off, edge SIGKILL.
#[tokio::test(flavor = "multi_thread")]
async fn file_push_live_record_replay_and_edge_restart() {
    let mut d = Deployment::start().await;
    let name = unique("cam");
    let id = d.register(&name).await;
    let _ffmpeg = d.ffmpeg_file_push(&name);

    // The edge serves the source as soon as ffmpeg pushes; nothing reaches control before streaming is on.
    eventually("the edge to preview the source", || async {
        let resp = http()
            .get(format!("{}/v1/vod/live/{name}/vid.m3u8", d.edge))
            .bearer_auth(INGEST_TOKEN)
            .send()
            .await
            .ok()?;
        resp.status().is_success().then_some(())
    })
    .await;
    assert!(d.live_playlist(&id).await.is_none(), "control has no segments while streaming is off");
    let source: Value = http().get(d.mgmt(&format!("/v1/source/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(source["source"]["reachable"], true, "the edge reported status");

    d.set_streaming(&id, true).await;
    let (first_seq, _) = eventually("a live playlist at control", || d.live_playlist(&id)).await;
    let (frames, _) = ffprobe_live(&d.live_url(&id)).await;
    assert!(frames > 0, "ffprobe decoded video from the live playlist");
    let (later_seq, _) = eventually("the media sequence to grow", || async {
        d.live_playlist(&id).await.filter(|(seq, _)| *seq >= first_seq + 3)
    })
    .await;
    assert!(later_seq > first_seq);

    // Record from a few seconds ago (back-fill from the edge cache) for ~10 s.
    let start_epoch = chrono::Utc::now().timestamp() - 4;
    let resp = http()
        .post(d.mgmt(&format!("/v1/source/{id}/recording")))
        .json(&serde_json::json!({"start_time_epoch": start_epoch, "alias": unique("clip")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec: Value = resp.json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stopped: Value =
        http().post(d.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap().json().await.unwrap();
    let start: chrono::DateTime<chrono::Utc> = stopped["recording"]["start_ts"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = stopped["recording"]["end_ts"].as_str().unwrap().parse().unwrap();
    let span = (end - start).num_milliseconds() as f64 / 1000.0;

    // Every segment of the span reaches S3 and control (uploads finish after the stop).
    let segments = eventually("the recorded segments to be registered", || async {
        let body: Value =
            http().get(d.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.ok()?.json().await.ok()?;
        let segs = body["segments"].as_array()?.clone();
        let total: f64 = segs.iter().map(|s| s["length_ms"].as_f64().unwrap_or(0.0) / 1000.0).sum();
        (total >= span - 1.0).then_some(segs)
    })
    .await;
    let store = livemix_testkit::control::s3().await;
    let mut keys = std::collections::HashSet::new();
    for segment in &segments {
        // `{prefix}/{source_id}/{run}/{seq:012}.ts`: one key per segment, never a reused encoder name.
        let key = segment["uri"].as_str().unwrap();
        let run = key.strip_prefix(&format!("recordings/{id}/")).and_then(|rest| rest.split('/').next()).unwrap();
        assert!(run.parse::<ulid::Ulid>().is_ok(), "documented object key: {key}");
        assert_eq!(key, format!("recordings/{id}/{run}/{:012}.ts", segment["seq"].as_u64().unwrap()));
        assert!(keys.insert(key.to_owned()), "unique keys: {key}");
        let data = store.get(key).await.unwrap();
        assert_eq!(data.len() as i64, segment["size"].as_i64().unwrap());
    }
    let replay = format!("{}/v1/vod/recording/{rec_id}/vid.m3u8", d.vod);
    let text = http().get(&replay).send().await.unwrap().text().await.unwrap();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
    let (frames, duration) = ffprobe(&replay).await;
    assert!(frames > 0);
    assert!((duration - span).abs() <= 1.0 + 0.1, "replayed {duration:.2}s of a {span:.2}s recording (segments of 1s)");

    // Streaming off: no new segment reaches control, while the edge keeps ingesting.
    d.set_streaming(&id, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (forwarded, ingested) =
        (d.edge_metric("livemix_edge_segments_forwarded_total").await, d.edge_ingested(&name).await);
    let newest_at_control = d.live_playlist(&id).await.and_then(|(_, names)| names.last().cloned());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(d.edge_metric("livemix_edge_segments_forwarded_total").await, forwarded, "nothing forwarded");
    assert!(d.edge_ingested(&name).await > ingested, "the edge kept ingesting");
    let now_at_control = d.live_playlist(&id).await.and_then(|(_, names)| names.last().cloned());
    assert!(now_at_control.is_none() || now_at_control == newest_at_control, "no new segment at control");
    let frozen = d.live_playlist(&id).await;

    // Streaming on again, then the edge dies mid-stream and comes back: forwarding resumes, the sequence grows.
    d.set_streaming(&id, true).await;
    let (before_kill, _) = eventually("forwarding to resume", || async {
        d.live_playlist(&id).await.filter(|p| Some(p) != frozen.as_ref())
    })
    .await;
    d.kill_edge().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.start_edge().await;
    let (after_restart, _) =
        eventually_within("forwarding after the edge restart", Duration::from_secs(40), || async {
            d.live_playlist(&id).await.filter(|(seq, _)| *seq > before_kill + 2)
        })
        .await;
    assert!(after_restart > before_kill);
    let (frames, _) = ffprobe_live(&d.live_url(&id)).await;
    assert!(frames > 0, "still playable after the restart");
}

/// ffmpeg's HTTP output into the edge (no shared disk), and bad input that must not disturb it.
#[tokio::test(flavor = "multi_thread")]
async fn http_push_and_bad_input() {
    let d = Deployment::start().await;
    let (name, id, _ffmpeg, first_seq) = d.http_stream().await;
    let (frames, _) = ffprobe_live(&d.live_url(&id)).await;
    assert!(frames > 0);

    let playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg.ts\n";
    let post = |source: &str, prefix: &str, body: String| {
        let mut req = http().post(format!("{}/v1/playlist", d.edge)).bearer_auth(INGEST_TOKEN).body(body);
        if !source.is_empty() {
            req = req.header("Video-Source-Name", source);
        }
        if !prefix.is_empty() {
            req = req.header("MPEG-TS-URI-Prefix", prefix);
        }
        req.send()
    };
    let root = format!("file://{}/", d.file_root.display());
    let error = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["success"], false);
        (status, body["error"]["message"].as_str().unwrap().to_owned())
    };

    let (status, message) = error(post("nobody-registered-this", &root, playlist.into()).await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(message.contains("POST /v1/source"), "says how to register: {message}");
    let (status, _) = error(post(&name, "file:///etc/", playlist.into()).await.unwrap()).await;
    assert_eq!(status, 403, "file:// outside the root");
    let (status, _) = error(post(&name, &format!("{root}../"), playlist.into()).await.unwrap()).await;
    assert_eq!(status, 403, "'..' in the prefix");
    let (status, _) = error(post(&name, &root, playlist.replace("seg.ts", "../../etc/passwd")).await.unwrap()).await;
    assert_eq!(status, 403, "'..' in a segment name");
    let (status, _) = error(post(&name, &root, "this is not a playlist".into()).await.unwrap()).await;
    assert_eq!(status, 400, "malformed m3u8");
    let (status, _) = error(post(&name, "", playlist.into()).await.unwrap()).await;
    assert_eq!(status, 400, "missing prefix header");
    let (status, _) = error(post("", &root, playlist.into()).await.unwrap()).await;
    assert_eq!(status, 400, "missing source header");
    let (status, _) = error(post(&name, &root, "#EXTM3U\n".repeat(20_000)).await.unwrap()).await;
    assert_eq!(status, 413, "playlist over the cap");
    let resp = http()
        .put(format!("{}/v1/ingest/{name}/huge.ts", d.edge))
        .bearer_auth(INGEST_TOKEN)
        .body(vec![0x47u8; 5_000_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413, "segment over the cap");
    let resp =
        http().put(format!("{}/v1/ingest/{name}/..", d.edge)).bearer_auth(INGEST_TOKEN).body("x").send().await.unwrap();
    assert!(resp.status().is_client_error());

    // The stream carried on through all of it.
    let (later, _) = eventually("the stream to keep going", || async {
        d.live_playlist(&id).await.filter(|(seq, _)| *seq >= first_seq + 3)
    })
    .await;
    assert!(later > first_seq);
    let sources = d.edge_json("/v1/source").await;
    assert_eq!(sources["sources"].as_array().unwrap().len(), 1, "bad input registered nothing: {sources}");
}

/// Hostile timestamps at the door get a 4xx naming the field, and no background task dies of them: the
/// command loop, the report loop and the source's forwarder worker all still run afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_playlists_get_4xx_and_every_task_keeps_running() {
    let d = Deployment::start().await;
    let (name, id, _ffmpeg, first_seq) = d.http_stream().await;

    let root = format!("file://{}/", d.file_root.display());
    let hostile = [
        ("#EXTINF:100000000000000,", "#EXTINF"),
        ("#EXT-X-PROGRAM-DATE-TIME:262142-01-01T00:00:00.000+0000\n#EXTINF:1.0,", "#EXT-X-PROGRAM-DATE-TIME"),
        ("#EXT-X-PROGRAM-DATE-TIME:+262142-01-01T00:00:00Z\n#EXTINF:1.0,", "#EXT-X-PROGRAM-DATE-TIME"),
        ("#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1.0,", "#EXT-X-MEDIA-SEQUENCE"),
        ("#EXTINF:-3,", "#EXTINF"),
    ];
    for (tags, field) in hostile {
        let body = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n{tags}\nhostile.ts\n");
        let posted = http()
            .post(format!("{}/v1/playlist", d.edge))
            .bearer_auth(INGEST_TOKEN)
            .header("Video-Source-Name", &name)
            .header("MPEG-TS-URI-Prefix", &root)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let pushed = http()
            .put(format!("{}/v1/ingest/{name}/{INGEST_TOKEN}/index.m3u8", d.edge))
            .body(body)
            .send()
            .await
            .unwrap();
        for resp in [posted, pushed] {
            assert_eq!(resp.status(), 400, "{tags}");
            let reply: Value = resp.json().await.unwrap();
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(field), "{tags}: the error names {field}: {reply}");
        }
    }

    // Every supervised task still runs, none restarted, and readiness is green.
    let tasks = d.edge_json("/debug/tasks").await;
    let tasks = tasks["tasks"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = tasks.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in ["command_loop", "report_loop", &format!("forwarder:{id}")] {
        assert!(names.contains(&expected), "{expected} supervised: {names:?}");
    }
    for task in &tasks {
        assert_eq!(task["running"], true, "{task}");
        assert_eq!(task["up"], true, "{task}");
        assert_eq!(task["restarts"], 0, "{task}");
    }
    let metrics = http().get(format!("{}/metrics", d.edge)).send().await.unwrap().text().await.unwrap();
    for name in &names {
        let line = format!("livemix_edge_tasks_running{{task=\"{name}\"}} 1");
        assert!(metrics.contains(&line), "{line} in /metrics");
    }
    let ready = http().get(format!("{}/liveness/ready", d.edge)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    // And the stream carried on.
    eventually("the stream to keep going", || async {
        d.live_playlist(&id).await.filter(|(seq, _)| *seq >= first_seq + 3)
    })
    .await;
}

/// Continuous recording on the real services: switched on by the mode alone (the command travels over Pub/Sub),
/// recorded while streaming is off, each object's SHA-256 taken by the edge and kept by control, any range played
/// and exported from S3, and verification that notices a deleted object.
#[tokio::test(flavor = "multi_thread")]
async fn continuous_recording_time_ranges_exports_and_verification_on_the_real_services() {
    let d = Deployment::start().await;
    let name = unique("cam");
    let id = d.register(&name).await;
    let _ffmpeg = d.ffmpeg_file_push(&name);
    let resp = http()
        .put(d.mgmt(&format!("/v1/source/{id}/recording-mode")))
        .json(&serde_json::json!({"recording": "continuous"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let started = chrono::Utc::now().timestamp() - 2;
    let recordings: Value =
        http().get(d.mgmt(&format!("/v1/source/{id}/recording"))).send().await.unwrap().json().await.unwrap();
    let rec = recordings["recordings"].as_array().unwrap().iter().find(|r| r["continuous"] == true).cloned().unwrap();
    let rec_id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(rec["active"], 1);

    // Streaming stays off: a continuous source records anyway.
    let segments = eventually_within("8 continuously recorded segments", Duration::from_secs(60), || async {
        let body: Value =
            http().get(d.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.ok()?.json().await.ok()?;
        let segs = body["segments"].as_array()?.clone();
        (segs.len() >= 8).then_some(segs)
    })
    .await;
    assert!(d.live_playlist(&id).await.is_none(), "nothing forwarded live while streaming is off");
    let store = livemix_testkit::control::s3().await;
    for segment in &segments {
        let data = store.get(segment["uri"].as_str().unwrap()).await.unwrap();
        let hash = livemix_common::digest::sha256_hex(&data);
        assert_eq!(segment["sha256"].as_str(), Some(hash.as_str()), "the edge's hash of the stored bytes: {segment}");
    }

    let end = chrono::Utc::now().timestamp() + 1;
    let range = format!("start={started}&end={end}");
    let playlist = format!("{}/v1/vod/source/{id}/vid.m3u8?{range}", d.vod);
    let (frames, _) = ffprobe(&playlist).await;
    assert!(frames > 0, "the time range plays");
    let dir = std::env::temp_dir().join(unique("export"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut counted = Vec::new();
    for file in ["export.ts", "export.mp4"] {
        let reply = http().get(format!("{}/v1/vod/source/{id}/{file}?{range}", d.vod)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{file}");
        let path = dir.join(file);
        std::fs::write(&path, reply.bytes().await.unwrap()).unwrap();
        counted.push(ffprobe(path.to_str().unwrap()).await.0);
    }
    assert!(counted[0] > 0 && counted[0] == counted[1], "the MP4 holds every frame of the segments: {counted:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // Verification: all there, then one object deleted behind LiveMix's back.
    let verify = || async {
        let body: Value =
            http().post(d.mgmt(&format!("/v1/recording/{rec_id}/verify"))).send().await.unwrap().json().await.unwrap();
        body["verification"].clone()
    };
    let clean = verify().await;
    assert!(
        clean["mismatched"].as_array().unwrap().is_empty() && clean["missing"].as_array().unwrap().is_empty(),
        "{clean}"
    );
    let gone = segments[3]["uri"].as_str().unwrap();
    store.delete(gone).await.unwrap();
    let after = verify().await;
    assert_eq!(after["missing"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["missing"][0]["key"], gone);

    // Back to on demand: the continuous recording stops.
    let resp = http()
        .put(d.mgmt(&format!("/v1/source/{id}/recording-mode")))
        .json(&serde_json::json!({"recording": "on_demand"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec: Value = http().get(d.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(rec["recording"]["active"], -1);
}
