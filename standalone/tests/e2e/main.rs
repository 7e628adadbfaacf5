//! End-to-end tests of the standalone `livemix` binary: started as a child process (as a user starts it), fed by
//! real ffmpeg, decoded by real ffprobe, stopped with SIGTERM and started again on the same data directory. It
//! needs no backing service.

mod any_moment;
mod support;

use std::{process::Stdio, time::Duration};

use livemix_testkit::{
    eventually_within, http,
    media::{ffprobe, ffprobe_live},
};
use serde_json::Value;
use support::{Standalone, data_dir};
use tokio::process::{Child, Command};

/// How long a step involving ffmpeg's real-time output may take.
pub(crate) const MEDIA: Duration = Duration::from_secs(90);

#[tokio::test]
async fn demo_plays_live_and_replay_and_keeps_its_state_across_a_restart() {
    let dir = data_dir();
    let node = Standalone::start(&dir, &["--demo"]).await;
    let source: Value = eventually_within("the demo camera", MEDIA, || async {
        let found = node.get("/v1/source?source_name=demo-camera").await;
        Some(found["sources"].as_array()?.first()?.clone())
    })
    .await;
    let id = source["id"].as_str().expect("id").to_owned();
    let live = format!("{}/v1/vod/live/{id}/vid.m3u8", node.vod);
    eventually_within("a live playlist with segments", MEDIA, || async {
        let body = http().get(&live).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
        body.contains("#EXTINF").then_some(())
    })
    .await;
    let (frames, _) = ffprobe_live(&live).await;
    assert!(frames > 0, "the live stream decodes");

    // The demo records a few seconds and stops; its segments reach the object directory through the bus.
    let recording: Value = eventually_within("the demo's recording to stop with segments", MEDIA, || async {
        let recs = node.get(&format!("/v1/source/{id}/recording")).await;
        let rec = recs["recordings"].as_array()?.first()?.clone();
        let rec_id = rec["id"].as_str()?;
        let segments = node.get(&format!("/v1/recording/{rec_id}/segment")).await;
        (rec["active"] == -1 && segments["segments"].as_array()?.len() >= 2).then_some(rec)
    })
    .await;
    let rec_id = recording["id"].as_str().expect("recording id").to_owned();
    let replay = format!("{}/v1/vod/recording/{rec_id}/vid.m3u8", node.vod);
    let (frames, duration) = ffprobe(&replay).await;
    assert!(frames > 0 && duration >= 2.0, "the recording decodes: {frames} frames, {duration} s\n{}", node.log());
    let segments_before = node.get(&format!("/v1/recording/{rec_id}/segment")).await;
    node.stop().await;

    // Started again (without --demo) on the same directory: the same camera, recording and segments, replaying.
    let node = Standalone::start(&dir, &[]).await;
    let after = node.get(&format!("/v1/source/{id}")).await;
    assert_eq!(after["source"]["name"], "demo-camera");
    assert_eq!(after["source"]["created_at"], source["created_at"]);
    let rec_after = node.get(&format!("/v1/recording/{rec_id}")).await;
    assert_eq!(rec_after["recording"], recording);
    let segments_after = node.get(&format!("/v1/recording/{rec_id}/segment")).await;
    assert_eq!(segments_after["segments"], segments_before["segments"]);
    // On new ports: the restarted process was given fresh ones.
    let replay = format!("{}/v1/vod/recording/{rec_id}/vid.m3u8", node.vod);
    let (frames_after, duration_after) = ffprobe(&replay).await;
    assert_eq!((frames_after, duration_after), (frames, duration), "the replay is the same after the restart");
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The seed README's commands, verbatim as curl sends them: `-d` makes a form-encoded POST, no `-d` no body
/// and no content type. The answers have the seed's shapes.
#[tokio::test]
async fn the_seed_readme_curl_sequence_works_as_written() {
    let dir = data_dir();
    let node = Standalone::start(&dir, &[]).await;
    let curl_d = |url: String, body: String| {
        http().post(url).header("content-type", "application/x-www-form-urlencoded").header("accept", "*/*").body(body)
    };

    // curl -v -X POST http://127.0.0.1:8080/v1/source -d '{"name": "test-video", ...}'
    let created = curl_d(
        node.mgmt("/v1/source"),
        r#"{"name": "test-video", "description": "Test video source", "segment_len": 4}"#.to_owned(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["success"], true);
    assert!(created["request_id"].is_string());
    let source = &created["source"];
    for (key, want) in [
        ("name", Value::from("test-video")),
        ("segment_length", Value::from(4)),
        ("description", Value::from("Test video source")),
        ("streaming", Value::from(-1)),
    ] {
        assert_eq!(source[key], want, "{key} in {source}");
    }
    for key in ["id", "created_at", "updated_at"] {
        assert!(source[key].is_string(), "{key} in {source}");
    }
    let id = source["id"].as_str().unwrap().to_owned();

    // The seed's edge node and ffmpeg (uploading, as no disk is shared here).
    let _ffmpeg = push_test_pattern(&format!("{}/v1/ingest/test-video/index.m3u8", node.ingest));

    // curl http://127.0.0.1:8080/v1/source
    let listed: Value = eventually_within("the edge to report test-video", MEDIA, || async {
        let listed: Value = http().get(node.mgmt("/v1/source")).send().await.ok()?.json().await.ok()?;
        listed["sources"][0]["rr_target"].is_string().then_some(listed)
    })
    .await;
    assert_eq!(listed["success"], true);
    assert_eq!(listed["sources"][0]["id"], id.as_str());
    assert!(listed["sources"][0]["local_time"].is_string());

    // curl -v -X PUT 'http://127.0.0.1:8080/v1/source/<id>/streaming?new_state=true'
    let streaming = http().put(node.mgmt(&format!("/v1/source/{id}/streaming?new_state=true"))).send().await.unwrap();
    assert_eq!(streaming.status(), 200);
    assert_eq!(streaming.json::<Value>().await.unwrap()["success"], true);
    // ffplay http://127.0.0.1:8081/v1/vod/live/<id>/vid.m3u8
    let live = format!("{}/v1/vod/live/{id}/vid.m3u8", node.vod);
    eventually_within("the live playlist", MEDIA, || async {
        http().get(&live).send().await.ok()?.text().await.ok()?.contains("#EXTINF").then_some(())
    })
    .await;
    assert!(ffprobe_live(&live).await.0 > 0);

    // curl -v -X POST http://localhost:8080/v1/source/<id>/recording -d '{"start_time_epoch": ###}'
    let start = chrono::Utc::now().timestamp() - 4;
    let body = format!(r#"{{"start_time_epoch": {start}}}"#);
    let recording = curl_d(node.mgmt(&format!("/v1/source/{id}/recording")), body).send().await.unwrap();
    assert_eq!(recording.status(), 200);
    let recording: Value = recording.json().await.unwrap();
    assert_eq!(recording["success"], true);
    let rec = &recording["recording"];
    assert_eq!(rec["source"], id.as_str());
    assert_eq!(rec["active"], 1);
    assert_eq!(
        rec["start_ts"].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()).map(|t| t.timestamp()),
        Some(start)
    );
    let rec_id = rec["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(6)).await;

    // curl -X POST http://localhost:8080/v1/recording/<id>/stop
    let stopped = http().post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap();
    assert_eq!(stopped.status(), 200);
    let stopped: Value = stopped.json().await.unwrap();
    assert_eq!(
        (stopped["success"].clone(), stopped["recording"]["active"].clone()),
        (Value::from(true), Value::from(-1))
    );

    // ffplay http://127.0.0.1:8081/v1/vod/recording/<id>/vid.m3u8
    let replay = format!("{}/v1/vod/recording/{rec_id}/vid.m3u8", node.vod);
    eventually_within("the recording's segments", MEDIA, || async {
        let segs = node.get(&format!("/v1/recording/{rec_id}/segment")).await;
        (segs["segments"].as_array()?.len() >= 2).then_some(())
    })
    .await;
    let (frames, _) = ffprobe(&replay).await;
    assert!(frames > 0, "the recording decodes\n{}", node.log());
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// ffmpeg's test pattern as 2-second HLS segments uploaded to `url`; killed when dropped.
pub(crate) fn push_test_pattern(url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .args(["testsrc=size=320x180:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "2", "-hls_list_size", "5"])
        .args(["-hls_flags", "delete_segments", "-method", "PUT", url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed")
}
