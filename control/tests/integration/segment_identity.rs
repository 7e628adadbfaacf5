//! Issue 10 on the control side, on the real services: a segment is identified by its object key (source,
//! encoder run, sequence number), so an encoder that restarts and counts from `index0.ts` again adds segments
//! instead of reusing old ones; a report the bus delivers twice is linked once; reports that can never be
//! stored are acknowledged (not redelivered forever); hostile times are refused at the door.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use livemix_common::{
    hls::parse_media_playlist,
    messages::Message,
    model::SegmentInfo,
    segment_id::SegmentId,
    store::{ObjectStore, segment_key},
};
use serde_json::Value;
use ulid::Ulid;
use uuid::Uuid;

use crate::support::{
    ControlNode, EDGE_TOKEN, eventually, ffmpeg_segments, ffprobe, forward_segment, http, publish_to_control, unique,
};

/// Uploads `data` at `key` and reports it for `recording`, as an edge does (twice: redelivery is normal).
#[allow(clippy::too_many_arguments)]
async fn record(
    node: &ControlNode,
    recording: &str,
    source: Uuid,
    run: Option<Ulid>,
    seq: u64,
    name: &str,
    start: DateTime<Utc>,
    key: String,
    data: &Bytes,
) {
    node.store.put(&key, data.clone()).await.unwrap();
    let info = SegmentInfo {
        name: name.into(),
        source,
        run,
        seq: seq as i64,
        discontinuity: run.is_some() && seq == 0,
        start_ts: start,
        end_ts: start + chrono::Duration::seconds(1),
        length_ms: 1000,
        size: data.len() as i64,
        uri: key,
        sha256: None,
    };
    let msg = Message::NewVideoRecordingSegment { recording_ids: vec![recording.to_owned()], segment: info };
    publish_to_control(node, msg.clone()).await;
    publish_to_control(node, msg).await;
}

async fn start_recording(node: &ControlNode, source: Uuid) -> String {
    let rec: Value =
        http().post(node.mgmt(&format!("/v1/source/{source}/recording"))).send().await.unwrap().json().await.unwrap();
    rec["recording"]["id"].as_str().unwrap().to_owned()
}

async fn segments_of(node: &ControlNode, recording: &str) -> Vec<Value> {
    let body: Value = http()
        .get(node.mgmt(&format!("/v1/recording/{recording}/segment")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["segments"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_segments(node: &ControlNode, recording: &str, count: usize) -> Vec<Value> {
    eventually(&format!("{count} segments in recording {recording}"), || async {
        let segments = segments_of(node, recording).await;
        (segments.len() >= count).then_some(segments)
    })
    .await
}

#[tokio::test]
async fn restarted_encoders_add_segments_and_old_recordings_keep_theirs() {
    let node = ControlNode::start(&["--prime-segments=1"]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid: Uuid = source["id"].as_str().unwrap().parse().unwrap();
    let media = &ffmpeg_segments().await[..6];
    let t0 = Utc::now() - chrono::Duration::seconds(60);
    let at = |i: i64| t0 + chrono::Duration::seconds(i);

    // An older recording from an edge before segment ids: legacy keys, no run.
    let old = start_recording(&node, sid).await;
    for (i, (_, data)) in media[..2].iter().enumerate() {
        let (seq, name) = (i as u64, format!("index{i}.ts"));
        record(&node, &old, sid, None, seq, &name, at(i as i64), segment_key("recordings", sid, &name), data).await;
    }
    wait_for_segments(&node, &old, 2).await;
    http().post(node.mgmt(&format!("/v1/recording/{old}/stop"))).send().await.unwrap();

    // A new recording across three encoder runs, each counting from index0.ts.
    let new = start_recording(&node, sid).await;
    let runs: Vec<Ulid> = (0..3).map(|i| Ulid::from_parts(t0.timestamp_millis() as u64 + i, 0)).collect();
    let mut expected = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        for seq in 0..2u64 {
            let i = r * 2 + seq as usize;
            let data = &media[i].1;
            let key = SegmentId { source: sid, run: *run, seq }.object_key("recordings");
            record(&node, &new, sid, Some(*run), seq, &format!("index{seq}.ts"), at(10 + i as i64), key, data).await;
            expected.push((format!("{run}-{seq}.ts"), data.clone()));
        }
    }
    let listed = wait_for_segments(&node, &new, 6).await;
    assert_eq!(listed.len(), 6, "each segment once, though every report came twice");
    for (segment, run) in listed.iter().zip(runs.iter().flat_map(|r| [r, r])) {
        assert_eq!(segment["run"], run.to_string());
    }
    http().post(node.mgmt(&format!("/v1/recording/{new}/stop"))).send().await.unwrap();

    // The new recording plays all runs in order, with a discontinuity where each new run starts.
    let url = format!("{}/v1/vod/recording/{new}/vid.m3u8", node.vod);
    let text = http().get(&url).send().await.unwrap().text().await.unwrap();
    let playlist = parse_media_playlist(text.as_bytes()).unwrap();
    let names: Vec<&str> = playlist.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(names, expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), "{text}");
    let breaks: Vec<bool> = playlist.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(breaks, [false, false, true, false, true, false], "{text}");
    for (name, data) in &expected {
        let body = http().get(format!("{}/v1/vod/recording/{new}/{name}", node.vod)).send().await.unwrap();
        assert_eq!(body.status(), 200, "{name}");
        assert_eq!(&body.bytes().await.unwrap(), data, "{name} has its own bytes");
    }
    // Names of the encoder are ambiguous in this recording; they do not resolve to some segment.
    let ambiguous = http().get(format!("{}/v1/vod/recording/{new}/index0.ts", node.vod)).send().await.unwrap();
    assert_eq!(ambiguous.status(), 404);

    // The older recording still has its own two segments, names and bytes.
    let old_segments = segments_of(&node, &old).await;
    assert_eq!(old_segments.len(), 2);
    assert!(old_segments.iter().all(|s| s.get("run").is_none()), "{old_segments:?}");
    let text = http().get(format!("{}/v1/vod/recording/{old}/vid.m3u8", node.vod)).send().await.unwrap();
    let text = text.text().await.unwrap();
    let names: Vec<String> =
        parse_media_playlist(text.as_bytes()).unwrap().segments.into_iter().map(|s| s.uri).collect();
    assert_eq!(names, ["index0.ts", "index1.ts"]);
    for (i, (_, data)) in media[..2].iter().enumerate() {
        let body = http().get(format!("{}/v1/vod/recording/{old}/index{i}.ts", node.vod)).send().await.unwrap();
        assert_eq!(&body.bytes().await.unwrap(), data);
    }

    // A player decodes the new recording across its discontinuities.
    let (frames, _) = ffprobe(&url).await;
    assert!(frames >= 120, "decoded {frames} frames");
}

async fn dropped(node: &ControlNode, reason: &str) -> u64 {
    let text = http().get(format!("{}/metrics", node.vod)).send().await.unwrap().text().await.unwrap();
    let needle = format!("livemix_control_inbox_dropped_total{{reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(needle.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn reports_that_can_never_be_stored_are_acknowledged_once() {
    let node = ControlNode::start(&[]).await;
    let gone = node.create_source(&unique("cam"), 1).await;
    let gone_id: Uuid = gone["id"].as_str().unwrap().parse().unwrap();
    let gone_rec = start_recording(&node, gone_id).await;
    let resp = http().delete(node.mgmt(&format!("/v1/source/{gone_id}?recordings=delete"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A segment of the deleted source (its recording went with it), once.
    let now = Utc::now();
    let data = Bytes::from_static(b"\x47late");
    let run = Ulid::new();
    let key = SegmentId { source: gone_id, run, seq: 0 }.object_key("recordings");
    let info = |source: Uuid, uri: String| SegmentInfo {
        name: "index0.ts".into(),
        source,
        run: Some(run),
        seq: 0,
        discontinuity: true,
        start_ts: now,
        end_ts: now,
        length_ms: 1000,
        size: data.len() as i64,
        uri,
        sha256: None,
    };
    let msg = Message::NewVideoRecordingSegment { recording_ids: vec![gone_rec.clone()], segment: info(gone_id, key) };
    publish_to_control(&node, msg).await;
    // Its recording is gone (deleted with the source): nothing to link the segment to.
    eventually("the report for a deleted source to be dropped", || async {
        (dropped(&node, "unknown_recording").await == 1).then_some(())
    })
    .await;

    // Then a good report: once it is stored, the dropped one has had every chance to come back.
    let alive = node.create_source(&unique("cam"), 1).await;
    let alive_id: Uuid = alive["id"].as_str().unwrap().parse().unwrap();
    let rec = start_recording(&node, alive_id).await;
    let key = SegmentId { source: alive_id, run, seq: 0 }.object_key("recordings");
    let msg =
        Message::NewVideoRecordingSegment { recording_ids: vec![rec.clone()], segment: info(alive_id, key.clone()) };
    // And one for a recording that does not exist (nothing of it is kept).
    let next_key = SegmentId { source: alive_id, run, seq: 1 }.object_key("recordings");
    let unknown = Message::NewVideoRecordingSegment {
        recording_ids: vec![Ulid::new().to_string()],
        segment: SegmentInfo { seq: 1, ..info(alive_id, next_key.clone()) },
    };
    // And one naming an object that is not its own (another source's): linking it would let deleting this
    // recording delete that object.
    let foreign = Message::NewVideoRecordingSegment {
        recording_ids: vec![rec.clone()],
        segment: SegmentInfo { seq: 2, ..info(alive_id, key.replace(&alive_id.to_string(), &gone_id.to_string())) },
    };
    publish_to_control(&node, unknown).await;
    publish_to_control(&node, foreign).await;
    publish_to_control(&node, msg).await;
    wait_for_segments(&node, &rec, 1).await;
    eventually("the report for an unknown recording to be dropped", || async {
        (dropped(&node, "unknown_recording").await == 2).then_some(())
    })
    .await;
    assert_eq!(dropped(&node, "unknown_recording").await, 2, "acknowledged, not redelivered");
    eventually("the report naming another source's object to be dropped", || async {
        (dropped(&node, "invalid_segment").await == 1).then_some(())
    })
    .await;
    assert_eq!(segments_of(&node, &rec).await.len(), 1, "the foreign object is not linked");
}

#[tokio::test]
async fn hostile_times_are_refused_and_the_source_keeps_serving() {
    let node = ControlNode::start(&[]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap();
    http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    let data = Bytes::from_static(b"\x47segment");
    assert_eq!(forward_segment(&node, sid, "a-0.ts", 0, data.clone()).await.status(), 200);

    let hostile = [
        ("Segment-Start-TS", "1e300"),
        ("Segment-Start-TS", "inf"),
        ("Segment-Start-TS", "+262142-01-01T00:00:00Z"),
        ("Segment-Start-TS", "8210298412800"),
        ("Segment-Length-MSec", "100000000000000"),
        ("Segment-Seq", "18446744073709551615"),
    ];
    for (header, value) in hostile {
        let now = Utc::now().timestamp().to_string();
        let good = [
            ("Source-ID", sid),
            ("Segment-Name", "evil.ts"),
            ("Segment-Seq", "1"),
            ("Segment-Start-TS", now.as_str()),
            ("Segment-Length-MSec", "1000"),
        ];
        let mut req = http().post(format!("{}/v1/new-segment", node.edge_api)).bearer_auth(EDGE_TOKEN);
        for (name, good_value) in good {
            req = req.header(name, if name == header { value } else { good_value });
        }
        let resp = req.body(data.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{header}: {value}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(header), "{body}");
    }
    let resp = http()
        .post(format!("{}/v1/source/{sid}/status", node.edge_api))
        .bearer_auth(EDGE_TOKEN)
        .json(&serde_json::json!({"rr_target_id": "edge-x", "local_timestamp": "9999-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The source still serves: the next segment gets the next media sequence number, no discontinuity.
    assert_eq!(forward_segment(&node, sid, "a-1.ts", 1, data.clone()).await.status(), 200);
    let text =
        http().get(format!("{}/v1/vod/live/{sid}/vid.m3u8", node.vod)).send().await.unwrap().text().await.unwrap();
    let playlist = parse_media_playlist(text.as_bytes()).unwrap();
    let names: Vec<&str> = playlist.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(names, ["a-0.ts", "a-1.ts"], "{text}");
    assert!(!text.contains("evil"), "{text}");
    assert!(playlist.segments.iter().all(|s| !s.discontinuity), "{text}");
    assert_eq!(edge_report_status(&node, sid).await, 200);
}

async fn edge_report_status(node: &ControlNode, sid: &str) -> u16 {
    node.edge_report(sid, &unique("edge")).await.status().as_u16()
}
