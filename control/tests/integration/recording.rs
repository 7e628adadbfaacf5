//! Recordings: segments an edge uploaded to S3 and reported over Pub/Sub replay from the control node.

use livemix_common::{
    hls::parse_media_playlist,
    messages::Message,
    model::SegmentInfo,
    store::{ObjectStore, segment_key},
};
use serde_json::Value;

use crate::support::{ControlNode, eventually, ffmpeg_segments, ffprobe, http, publish_to_control, unique};

/// Plays an edge of before segment ids: uploads segment `i` (1 s long, `i` seconds after `start`) to S3 at the
/// documented key and returns its report.
async fn upload_legacy(
    node: &ControlNode,
    sid: uuid::Uuid,
    i: usize,
    name: &str,
    data: &bytes::Bytes,
    start: chrono::DateTime<chrono::Utc>,
) -> SegmentInfo {
    let key = segment_key("recordings", sid, name);
    node.store.put(&key, data.clone()).await.unwrap();
    let start_ts = start + chrono::Duration::seconds(i as i64);
    SegmentInfo {
        name: name.to_owned(),
        source: sid,
        run: None,
        seq: i as i64,
        discontinuity: false,
        start_ts,
        end_ts: start_ts + chrono::Duration::seconds(1),
        length_ms: 1000,
        size: data.len() as i64,
        uri: key,
        sha256: None,
    }
}

#[tokio::test]
async fn recorded_segments_replay_from_s3_with_single_flight_reads() {
    // Without the in-process layer, so every read shows in memcached and S3 as it did before there was one
    // (`replays_are_served_from_memory_after_the_first_read` covers that layer).
    let node = ControlNode::start(&["--prime-segments=0", "--hot-segment-bytes=0"]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid: uuid::Uuid = source["id"].as_str().unwrap().parse().unwrap();
    let resp = http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap();
    let rec: Value = resp.json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();

    // Play the edge: upload each segment to S3 at the documented key, then report it on the control topic.
    let segments = &ffmpeg_segments().await[..5];
    let start = chrono::Utc::now() - chrono::Duration::seconds(10);
    for (i, (name, data)) in segments.iter().enumerate() {
        let info = upload_legacy(&node, sid, i, name, data, start).await;
        let msg = Message::NewVideoRecordingSegment { recording_ids: vec![rec_id.clone()], segment: info };
        publish_to_control(&node, msg.clone()).await;
        // Redelivery is normal on Pub/Sub: handling is idempotent.
        publish_to_control(&node, msg).await;
    }
    let listed = eventually("all recorded segments to be registered", || async {
        let body: Value =
            http().get(node.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.ok()?.json().await.ok()?;
        let segs = body["segments"].as_array()?.clone();
        (segs.len() == segments.len()).then_some(segs)
    })
    .await;
    for field in ["id", "name", "source", "seq", "start_ts", "end_ts", "length_ms", "size", "uri"] {
        assert!(listed[0].get(field).is_some(), "segment has {field}");
    }
    assert_eq!(listed[0]["uri"], format!("recordings/{sid}/seg0.ts"));
    http().post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap();

    // The replay playlist is a complete VOD playlist.
    let playlist_url = format!("{}/v1/vod/recording/{rec_id}/vid.m3u8", node.vod);
    let text = http().get(&playlist_url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    let playlist = parse_media_playlist(text.as_bytes()).unwrap();
    assert_eq!(
        playlist.segments.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
        vec!["seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts", "seg4.ts"]
    );

    // A miss reads S3 and fills memcached; the next read is a hit.
    let seg_url = format!("{}/v1/vod/recording/{rec_id}/seg2.ts", node.vod);
    let key = segment_key("recordings", sid, "seg2.ts");
    let data = http().get(&seg_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(data, segments[2].1);
    assert_eq!(node.store.reads_of(&key), 1);
    assert_eq!(http().get(&seg_url).send().await.unwrap().bytes().await.unwrap(), segments[2].1);
    assert_eq!(node.store.reads_of(&key), 1, "second read came from memcached");

    // Delete the cache entry: the next read goes to S3 again.
    node.cache.delete(&format!("obj:{key}")).await.unwrap();
    assert_eq!(http().get(&seg_url).send().await.unwrap().bytes().await.unwrap(), segments[2].1);
    assert_eq!(node.store.reads_of(&key), 2);

    // 20 concurrent misses for one segment: exactly one S3 read.
    node.cache.delete(&format!("obj:{key}")).await.unwrap();
    let before = node.store.reads_of(&key);
    let client = http();
    let fetches = (0..20).map(|_| {
        let client = client.clone();
        let url = seg_url.clone();
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    });
    for body in futures::future::join_all(fetches).await {
        assert_eq!(body, segments[2].1);
    }
    assert_eq!(node.store.reads_of(&key) - before, 1, "20 concurrent misses made one S3 read");
    assert!(node.store.total_reads() >= 3);

    let metrics = http().get(format!("{}/metrics", node.vod)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("livemix_control_object_store_reads_total 3"), "{metrics}");

    // Unknown segment and recording.
    assert_eq!(
        http().get(format!("{}/v1/vod/recording/{rec_id}/nope.ts", node.vod)).send().await.unwrap().status(),
        404
    );
    let other = ulid::Ulid::new();
    assert_eq!(
        http().get(format!("{}/v1/vod/recording/{other}/vid.m3u8", node.vod)).send().await.unwrap().status(),
        404
    );

    // A player decodes the whole recording.
    let (frames, duration) = ffprobe(&playlist_url).await;
    assert!(frames >= 120, "decoded {frames} frames");
    assert!((duration - 5.0).abs() < 1.5, "duration {duration}");
}

#[tokio::test]
async fn replays_are_served_from_memory_after_the_first_read() {
    let node = ControlNode::start(&["--prime-segments=0"]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid: uuid::Uuid = source["id"].as_str().unwrap().parse().unwrap();
    let resp = http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap();
    let rec: Value = resp.json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();
    let (name, data) = &ffmpeg_segments().await[0];
    let key = segment_key("recordings", sid, name);
    node.store.put(&key, data.clone()).await.unwrap();
    let start_ts = chrono::Utc::now() - chrono::Duration::seconds(5);
    let info = SegmentInfo {
        name: name.clone(),
        source: sid,
        run: None,
        seq: 0,
        discontinuity: false,
        start_ts,
        end_ts: start_ts + chrono::Duration::seconds(1),
        length_ms: 1000,
        size: data.len() as i64,
        uri: key.clone(),
        sha256: None,
    };
    publish_to_control(&node, Message::NewVideoRecordingSegment { recording_ids: vec![rec_id.clone()], segment: info })
        .await;
    let seg_url = format!("{}/v1/vod/recording/{rec_id}/{name}", node.vod);
    let first = eventually("the recorded segment to be served", || async {
        let resp = http().get(&seg_url).send().await.ok()?;
        resp.status().is_success().then_some(resp)
    })
    .await;
    assert_eq!(first.headers()["cache-control"], "public, max-age=300", "a legacy name may be rewritten");
    assert_eq!(first.bytes().await.unwrap(), data);
    assert_eq!(node.store.reads_of(&key), 1);

    // Gone from memcached, yet served without reading S3 again: from this replica's memory.
    node.cache.delete(&format!("obj:{key}")).await.unwrap();
    let fetches = (0..20).map(|_| async { http().get(&seg_url).send().await.unwrap().bytes().await.unwrap() });
    for body in futures::future::join_all(fetches).await {
        assert_eq!(body, data);
    }
    assert_eq!(node.store.reads_of(&key), 1, "replays came from memory");
}

/// A recording longer than one playlist may list (a continuous one, after days) points to time ranges instead
/// of building an answer of unbounded size; its manifest is signed with the playback key.
#[tokio::test]
async fn long_recordings_point_to_time_ranges_and_manifests_are_signed() {
    const KEY: &str = "manifest-signing-key-0123456789";
    let node = ControlNode::start(&["--max-range-segments=3", &format!("--playback-signing-key={KEY}")]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid: uuid::Uuid = source["id"].as_str().unwrap().parse().unwrap();
    let rec: Value =
        http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap().json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();
    let start = chrono::Utc::now() - chrono::Duration::seconds(20);
    for (i, (name, data)) in ffmpeg_segments().await[..4].iter().enumerate() {
        let segment = SegmentInfo {
            sha256: Some(livemix_common::digest::sha256_hex(data)),
            ..upload_legacy(&node, sid, i, name, data, start).await
        };
        let msg = Message::NewVideoRecordingSegment { recording_ids: vec![rec_id.clone()], segment };
        publish_to_control(&node, msg).await;
    }
    eventually("4 segments indexed", || async {
        let body: Value =
            http().get(node.mgmt(&format!("/v1/recording/{rec_id}/storage"))).send().await.ok()?.json().await.ok()?;
        (body["storage"]["segments"] == 4).then_some(())
    })
    .await;
    let (management, vod) = (node.management.clone(), node.vod.clone());
    let signed = |path: String| {
        let (management, vod) = (management.clone(), vod.clone());
        async move {
            let url = format!("{management}/v1/playback-url?path={path}");
            let body: Value = http().get(url).send().await.unwrap().json().await.unwrap();
            format!("{vod}{}", body["url"].as_str().unwrap())
        }
    };
    for path in [
        format!("/v1/vod/recording/{rec_id}/vid.m3u8"),
        format!("/v1/vod/recording/{rec_id}/export.ts"),
        format!("/v1/vod/recording/{rec_id}/export.mp4"),
    ] {
        let reply = http().get(signed(path.clone()).await).send().await.unwrap();
        assert_eq!(reply.status(), 400, "{path}");
        let body: Value = reply.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("time range"), "{path}: {body}");
    }
    for path in [format!("/v1/recording/{rec_id}/manifest"), format!("/v1/recording/{rec_id}/coverage")] {
        assert_eq!(http().get(node.mgmt(&path)).send().await.unwrap().status(), 400, "{path}");
    }
    // Three of the four by time range, signed for the source.
    let (from, to) = (start.timestamp(), (start + chrono::Duration::seconds(3)).timestamp());
    let range = format!("{}&start={from}&end={to}", signed(format!("/v1/vod/source/{sid}/vid.m3u8")).await);
    let text = http().get(&range).send().await.unwrap().text().await.unwrap();
    let playlist = parse_media_playlist(text.as_bytes()).unwrap();
    assert_eq!(playlist.segments.len(), 3, "{text}");
    assert!(playlist.segments.iter().all(|s| s.uri.contains("sig=")), "the signature carried to its segments: {text}");
    let first = format!("{}/v1/vod/source/{sid}/{}", node.vod, playlist.segments[0].uri);
    assert_eq!(http().get(&first).send().await.unwrap().bytes().await.unwrap(), ffmpeg_segments().await[0].1);

    // Below the limit again (a fourth segment is too many only for listings), the manifest is signed.
    let node = {
        let settings = node.stop().await;
        let mut settings = settings;
        settings.archive.max_range_segments = 10;
        ControlNode::start_with(settings).await
    };
    let manifest: Value =
        http().get(node.mgmt(&format!("/v1/recording/{rec_id}/manifest"))).send().await.unwrap().json().await.unwrap();
    let manifest: livemix_common::management_api::Manifest =
        serde_json::from_value(manifest["manifest"].clone()).unwrap();
    assert_eq!(manifest.segments.len(), 4);
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(KEY.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, manifest.signed_text().as_bytes());
    let expected = livemix_common::digest::hex(&hmac::Mac::finalize(mac).into_bytes());
    assert_eq!(manifest.signature.as_deref(), Some(expected.as_str()));
    assert!(manifest.signed_text().lines().nth(2).unwrap().ends_with(&format!("  {}", manifest.segments[0].key)));
}
