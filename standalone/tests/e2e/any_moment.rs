//! Any moment of a continuously recorded source: an encoder restarted twice and the whole node (edge included)
//! killed in between; the time range across all of it plays, its coverage names the restarts and the outage, its
//! exports decode frame for frame, and verification catches a tampered and a deleted object.

use std::time::Duration;

use chrono::{DateTime, Utc};
use livemix_common::digest::sha256_hex;
use livemix_testkit::{eventually_within, http, media::ffprobe, unique};
use serde_json::{Value, json};

use crate::{
    MEDIA, push_test_pattern,
    support::{Standalone, data_dir},
};

/// Segments recorded of the source so far (its coverage over the last hour).
async fn recorded(node: &Standalone, id: &str) -> u64 {
    let end = Utc::now().timestamp() + 1;
    let coverage = node.get(&format!("/v1/source/{id}/coverage?start={}&end={end}", end - 3600)).await;
    coverage["coverage"]["segments"].as_u64().unwrap_or(0)
}

async fn set_mode(node: &Standalone, id: &str, mode: &str) -> u16 {
    let url = node.mgmt(&format!("/v1/source/{id}/recording-mode"));
    http().put(url).json(&json!({"recording": mode})).send().await.unwrap().status().as_u16()
}

/// Registers a source with this body; its reply.
async fn create(node: &Standalone, body: Value) -> Value {
    http().post(node.mgmt("/v1/source")).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn wait_recorded(node: &Standalone, id: &str, at_least: u64) {
    eventually_within(&format!("{at_least} recorded segments"), MEDIA, || async {
        (recorded(node, id).await >= at_least).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_time_range_plays_across_restarts_and_a_crash_and_exports_what_was_recorded() {
    let dir = data_dir();
    let mut node = Standalone::start(&dir, &[]).await;
    let name = unique("cam");
    let created = create(&node, json!({"name": name, "segment_len": 2, "recording": "continuous"})).await;
    assert_eq!(created["source"]["recording"], "continuous", "{created}");
    let id = created["source"]["id"].as_str().unwrap().to_owned();
    let started = Utc::now();
    let ingest = |node: &Standalone| format!("{}/v1/ingest/{name}/index.m3u8", node.ingest);

    // Run 1, then the encoder restarts (run 2).
    let ffmpeg = push_test_pattern(&ingest(&node));
    wait_recorded(&node, &id, 4).await;
    drop(ffmpeg);
    let ffmpeg = push_test_pattern(&ingest(&node));
    wait_recorded(&node, &id, 8).await;
    // The node crashes with its edge; the camera is gone too while it is down.
    drop(ffmpeg);
    node.kill().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    node = Standalone::start(&dir, &[]).await;
    // Run 3, after the outage.
    let ffmpeg = push_test_pattern(&ingest(&node));
    wait_recorded(&node, &id, 12).await;
    drop(ffmpeg);
    let (start, end) = (started.timestamp() - 5, Utc::now().timestamp() + 1);
    let range = format!("start={start}&end={end}");

    // Coverage: three runs, two restarts, the outage among them.
    let coverage = node.get(&format!("/v1/source/{id}/coverage?{range}")).await["coverage"].clone();
    let restarts: Vec<&Value> =
        coverage["gaps"].as_array().unwrap().iter().filter(|g| g["cause"] == "encoder_restart").collect();
    assert_eq!(restarts.len(), 2, "{coverage:#}");
    assert!(restarts[1]["secs"].as_f64().unwrap() >= 6.0, "the outage is a gap: {coverage:#}");
    assert_eq!(coverage["spans"].as_array().unwrap().len(), 3, "{coverage:#}");

    // The playlist: every segment dated, discontinuities exactly where the run changes, an end.
    let playlist_url = format!("{}/v1/vod/source/{id}/vid.m3u8?{range}", node.vod);
    let playlist = http().get(&playlist_url).send().await.unwrap().text().await.unwrap();
    let (mut uris, mut breaks, mut dated) = (Vec::new(), Vec::new(), 0);
    let mut pending_break = false;
    for line in playlist.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            pending_break = true;
        } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            dated += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            uris.push(line.to_owned());
            breaks.push(std::mem::take(&mut pending_break));
        }
    }
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    assert_eq!(dated, uris.len(), "{playlist}");
    let run_of = |uri: &str| uri.split_once('-').map(|(run, _)| run.to_owned()).unwrap();
    let run_changes: Vec<bool> =
        uris.iter().enumerate().map(|(i, uri)| i > 0 && run_of(uri) != run_of(&uris[i - 1])).collect();
    assert_eq!(breaks, run_changes, "discontinuities exactly at the restarts\n{playlist}");
    assert_eq!(breaks.iter().filter(|b| **b).count(), 2, "{playlist}");

    // It plays to its end.
    let recorded_secs = coverage["recorded_secs"].as_f64().unwrap();
    let (frames, _) = ffprobe(&playlist_url).await;
    assert!(frames as f64 >= recorded_secs * 25.0 * 0.9, "{frames} frames for {recorded_secs} s\n{}", node.log());

    // Exports: the .ts is the segments byte for byte, the MP4 the same frames in the right duration.
    let ts = dir.join("range.ts");
    let mp4 = dir.join("range.mp4");
    for (file, path) in [("export.ts", &ts), ("export.mp4", &mp4)] {
        let reply = http().get(format!("{}/v1/vod/source/{id}/{file}?{range}", node.vod)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{file}");
        let disposition = reply.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        std::fs::write(path, reply.bytes().await.unwrap()).unwrap();
    }
    // Progressive: the movie header comes before any media, so a `<video>` plays while the file downloads.
    let bytes = std::fs::read(&mp4).unwrap();
    let first = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!((&bytes[4..8], &bytes[first + 4..first + 8]), (&b"ftyp"[..], &b"moov"[..]), "MP4 starts ftyp, moov");
    let (ts_frames, _) = ffprobe(ts.to_str().unwrap()).await;
    let (mp4_frames, mp4_secs) = ffprobe(mp4.to_str().unwrap()).await;
    assert_eq!(mp4_frames, ts_frames, "every frame of the segments is in the MP4");
    assert!((mp4_secs - recorded_secs).abs() <= 2.5, "MP4 of {mp4_secs} s for {recorded_secs} s recorded");

    // The continuous recording's manifest checks its export.ts.
    let recordings = node.get(&format!("/v1/source/{id}/recording")).await;
    let rec = recordings["recordings"].as_array().unwrap().iter().find(|r| r["continuous"] == true).unwrap().clone();
    let rec_id = rec["id"].as_str().unwrap();
    let manifest = node.get(&format!("/v1/recording/{rec_id}/manifest")).await["manifest"].clone();
    let exported = http()
        .get(format!("{}/v1/vod/recording/{rec_id}/export.ts", node.vod))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(exported.len() as i64, manifest["total_bytes"].as_i64().unwrap());
    let entries = manifest["segments"].as_array().unwrap();
    assert!(entries.len() >= 12, "{manifest:#}");
    for entry in entries {
        let (offset, size) = (entry["offset"].as_u64().unwrap() as usize, entry["size"].as_u64().unwrap() as usize);
        let digest = sha256_hex(&exported[offset..offset + size]);
        assert_eq!(Some(digest.as_str()), entry["sha256"].as_str(), "{entry}");
    }

    // Verification finds an overwritten object and a deleted one.
    let object = |entry: &Value| dir.join("objects").join(entry["key"].as_str().unwrap());
    std::fs::write(object(&entries[1]), b"not what was recorded").unwrap();
    std::fs::remove_file(object(&entries[2])).unwrap();
    let verified: Value =
        http().post(node.mgmt(&format!("/v1/recording/{rec_id}/verify"))).send().await.unwrap().json().await.unwrap();
    let verification = &verified["verification"];
    assert_eq!(verification["mismatched"].as_array().unwrap().len(), 1, "{verified:#}");
    assert_eq!(verification["mismatched"][0]["key"], entries[1]["key"]);
    assert_eq!(verification["missing"].as_array().unwrap().len(), 1, "{verified:#}");
    assert_eq!(verification["missing"][0]["key"], entries[2]["key"]);
    assert_eq!(verification["ok"].as_u64().unwrap() as usize, entries.len() - 2);
    let summary = node.get(&format!("/v1/recording/{rec_id}")).await["recording"]["verification"].clone();
    assert_eq!((summary["mismatched"].as_i64(), summary["missing"].as_i64()), (Some(1), Some(1)), "{summary}");

    // A continuous recording stops with its mode only.
    let stop = http().post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap();
    assert_eq!(stop.status(), 409);
    assert_eq!(set_mode(&node, &id, "on_demand").await, 200);
    assert_eq!(node.get(&format!("/v1/recording/{rec_id}")).await["recording"]["active"], -1);
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_ranges_get_a_clear_json_4xx() {
    let dir = data_dir();
    let node = Standalone::start(&dir, &["--max-range=1h"]).await;
    let created = create(&node, json!({"name": unique("cam"), "segment_len": 2})).await;
    let id = created["source"]["id"].as_str().unwrap().to_owned();
    let now = Utc::now().timestamp();
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339();
    let cases: Vec<(String, u16)> = vec![
        (format!("start={}&end={}", now - 60, now - 120), 400), // reversed
        (format!("start={0}&end={0}", now - 60), 400),          // empty
        (format!("start={}&end={}", now + 600, now + 900), 400), // future
        (format!("start={}&end={}", now - 7200, now), 400),     // past the maximum
        ("start=1e300&end=1e301".into(), 400),                  // absurd
        ("start=0&end=10".into(), 400),                         // absurd (1970)
        ("start=yesterday&end=today".into(), 400),              // malformed
        (format!("start={}", now - 60), 400),                   // no end
        (format!("start={}&end={}", at(now - 120), at(now - 60)), 404), // nothing recorded there
    ];
    for file in ["vid.m3u8", "export.mp4", "export.ts"] {
        for (query, status) in &cases {
            let url = format!("{}/v1/vod/source/{id}/{file}?{query}", node.vod);
            let reply = http().get(&url).send().await.unwrap();
            assert_eq!(reply.status().as_u16(), *status, "{url}");
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["success"], false, "{url}: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{url}: {body}");
        }
    }
    for (query, status) in &cases[..8] {
        let url = node.mgmt(&format!("/v1/source/{id}/coverage?{query}"));
        assert_eq!(http().get(&url).send().await.unwrap().status().as_u16(), *status, "{url}");
    }
    let unknown = uuid::Uuid::new_v4();
    let range = format!("start={}&end={}", now - 120, now - 60);
    for url in [
        format!("{}/v1/vod/source/{unknown}/vid.m3u8?{range}", node.vod),
        node.mgmt(&format!("/v1/source/{unknown}/coverage?{range}")),
        format!("{}/v1/vod/recording/{}/export.mp4", node.vod, ulid::Ulid::new()),
    ] {
        assert_eq!(http().get(&url).send().await.unwrap().status(), 404, "{url}");
    }
    assert_eq!(
        http().get(format!("{}/v1/vod/source/not-a-uuid/vid.m3u8?{range}", node.vod)).send().await.unwrap().status(),
        400
    );
    assert_eq!(set_mode(&node, &id, "sometimes").await, 400);
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// H.265 video with AAC audio (what more and more cameras send): the range exports to an MP4 with both streams
/// copied, every video frame in it.
#[tokio::test]
async fn an_h265_and_aac_range_exports_to_mp4_without_transcoding() {
    let dir = data_dir();
    let node = Standalone::start(&dir, &[]).await;
    let name = unique("hevc");
    let created = create(&node, json!({"name": name, "segment_len": 2, "recording": "continuous"})).await;
    let id = created["source"]["id"].as_str().unwrap().to_owned();
    let start = Utc::now().timestamp() - 2;
    let _ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=50:min-keyint=50:log-level=error"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "5", "-hls_flags", "delete_segments", "-method", "PUT"])
        .arg(format!("{}/v1/ingest/{name}/index.m3u8", node.ingest))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg with libx265");
    wait_recorded(&node, &id, 4).await;
    let range = format!("start={start}&end={}", Utc::now().timestamp() + 1);
    let mp4 = dir.join("hevc.mp4");
    let reply = http().get(format!("{}/v1/vod/source/{id}/export.mp4?{range}", node.vod)).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    std::fs::write(&mp4, reply.bytes().await.unwrap()).unwrap();
    let probe = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name,codec_tag_string", "-of", "csv=p=0"])
        .arg(&mp4)
        .output()
        .await
        .unwrap();
    let streams = String::from_utf8_lossy(&probe.stdout).to_string();
    // `hvc1`, the tag Apple's players need (ffmpeg's own choice is `hev1`).
    assert!(streams.contains("hevc,video,hvc1") && streams.contains("aac,audio"), "{streams}");
    let segments_url = format!("{}/v1/vod/source/{id}/export.ts?{range}", node.vod);
    let ts = dir.join("hevc.ts");
    std::fs::write(&ts, http().get(segments_url).send().await.unwrap().bytes().await.unwrap()).unwrap();
    let (mp4_frames, _) = ffprobe(mp4.to_str().unwrap()).await;
    assert_eq!(mp4_frames, ffprobe(ts.to_str().unwrap()).await.0, "every H.265 frame is in the MP4");
    assert!(mp4_frames > 0);
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
