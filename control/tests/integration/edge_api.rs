//! The edge-facing API and commands to edges over the Pub/Sub emulator.

use std::time::{Duration, Instant};

use bytes::Bytes;
use livemix_common::messages::Message;
use serde_json::Value;

use crate::support::{ControlNode, EDGE_TOKEN, FakeEdge, forward_record, forward_segment, http, unique};

#[tokio::test]
async fn status_reports_make_a_source_reachable_and_return_wanted_state() {
    let node = ControlNode::start(&[]).await;
    let source = node.create_source(&unique("cam"), 2).await;
    let sid = source["id"].as_str().unwrap();
    let edge = FakeEdge::start(&node, true).await;

    // Without or with a wrong token: 401.
    let url = format!("{}/v1/source/{sid}/status", node.edge_api);
    let resp = http().post(&url).json(&serde_json::json!({"rr_target_id": edge.topic})).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http()
        .post(&url)
        .bearer_auth("nope")
        .json(&serde_json::json!({"rr_target_id": edge.topic}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = edge.report(&node, sid).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["source"]["rr_target"], edge.topic.as_str());
    assert_eq!(body["source"]["reachable"], true);
    assert_eq!(body["source"]["streaming"], -1);
    assert_eq!(body["recordings"], serde_json::json!([]));

    // Edges look sources up by the name ffmpeg sends.
    let name = source["name"].as_str().unwrap();
    let lookup = |n: String| {
        http().get(format!("{}/v1/source", node.edge_api)).bearer_auth(EDGE_TOKEN).query(&[("source_name", n)]).send()
    };
    let found: Value = lookup(name.to_owned()).await.unwrap().json().await.unwrap();
    assert_eq!(found["source"]["id"], sid);
    let missing = lookup("nobody-has-this".into()).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("POST /v1/source"), "says how to register");

    // Bad reports.
    let resp = http()
        .post(&url)
        .bearer_auth(EDGE_TOKEN)
        .json(&serde_json::json!({"rr_target_id": "x/y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .post(format!("{}/v1/source/{}/status", node.edge_api, uuid::Uuid::new_v4()))
        .bearer_auth(EDGE_TOKEN)
        .json(&serde_json::json!({"rr_target_id": edge.topic}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Streaming on: the edge gets change_stream_state over Pub/Sub and confirms.
    let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let msg = edge.wait_for(|m| matches!(m, Message::ChangeStreamState { .. })).await;
    assert_eq!(msg, Message::ChangeStreamState { source_id: sid.parse().unwrap(), new_state: true });

    // A recording started now reaches the edge as start_recording and appears in the next status reply.
    let resp = http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let rec: Value = resp.json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();
    edge.wait_for(|m| matches!(m, Message::StartRecording { recording } if recording.id == rec_id)).await;
    let body: Value = edge.report(&node, sid).await.json().await.unwrap();
    assert_eq!(body["source"]["streaming"], 1);
    assert_eq!(body["recordings"][0]["id"], rec_id.as_str());
    let resp = http().post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    edge.wait_for(|m| matches!(m, Message::StopRecording { recording_id, .. } if *recording_id == rec_id)).await;
}

#[tokio::test]
async fn a_silent_edge_gives_a_clear_error_not_a_hang() {
    let node = ControlNode::start(&["--command-timeout-ms=1500"]).await;
    let source = node.create_source(&unique("cam"), 2).await;
    let sid = source["id"].as_str().unwrap();
    let edge = FakeEdge::start(&node, false).await;
    assert_eq!(edge.report(&node, sid).await.status(), 200);

    let started = Instant::now();
    let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no answer to change_stream_state"), "{message}");
    assert!(elapsed >= Duration::from_millis(1500), "it waited for the configured timeout");
    // The command did go out over Pub/Sub.
    edge.wait_for(|m| matches!(m, Message::ChangeStreamState { new_state: true, .. })).await;

    // A recording the edge never confirms is not kept.
    let resp = http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    let list: Value =
        http().get(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["recordings"], serde_json::json!([]));
}

#[tokio::test]
async fn bad_segments_are_refused_and_change_nothing() {
    let node = ControlNode::start(&["--max-segment-bytes=100000"]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap();
    let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let good = Bytes::from_static(b"\x47not-really-ts-but-bytes");
    assert_eq!(forward_segment(&node, sid, "good-0.ts", 0, good.clone()).await.status(), 200);
    let playlist_url = format!("{}/v1/vod/live/{sid}/vid.m3u8", node.vod);
    let before = http().get(&playlist_url).send().await.unwrap().text().await.unwrap();
    assert!(before.contains("good-0.ts"));

    let cases: Vec<(&str, u16)> = vec![("../evil.ts", 400), ("a/b.ts", 400), ("..", 400), ("x y.ts", 400)];
    for (name, expected) in cases {
        let resp = forward_segment(&node, sid, name, 1, good.clone()).await;
        assert_eq!(resp.status(), expected, "segment name {name:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["success"], false);
    }
    let resp = forward_segment(&node, sid, "big.ts", 1, Bytes::from(vec![0x47; 200_000])).await;
    assert_eq!(resp.status(), 413);
    let resp = forward_segment(&node, &uuid::Uuid::new_v4().to_string(), "ok.ts", 1, good.clone()).await;
    assert_eq!(resp.status(), 404);
    let resp = forward_segment(&node, "not-a-uuid", "ok.ts", 1, good.clone()).await;
    assert_eq!(resp.status(), 400);
    let resp = http()
        .post(format!("{}/v1/new-segment", node.edge_api))
        .bearer_auth(EDGE_TOKEN)
        .header("Source-ID", sid)
        .header("Segment-Name", "nolen.ts")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "missing headers");
    let resp = http()
        .post(format!("{}/v1/new-segment", node.edge_api))
        .header("Source-ID", sid)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no token");

    // Streaming off: refused with 409.
    let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=false"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(forward_segment(&node, sid, "late.ts", 2, good.clone()).await.status(), 409);

    let after = http().get(&playlist_url).send().await.unwrap().text().await.unwrap();
    assert_eq!(before, after, "refused input left the live playlist alone");
    let seg = http().get(format!("{}/v1/vod/live/{sid}/good-0.ts", node.vod)).send().await.unwrap();
    assert_eq!(seg.status(), 200);
    assert_eq!(seg.bytes().await.unwrap(), good);
}

/// Bytes become public only once admitted: a segment refused because streaming is off is never served (it used to
/// reach the shared cache first, and the VOD API served any cached name), and an edge's second copy of a listed
/// segment does not replace the bytes players already got.
#[tokio::test]
async fn only_admitted_bytes_are_served_and_listed_bytes_stay() {
    let node = ControlNode::start(&[]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap().to_owned();
    let vod = |name: &str| http().get(format!("{}/v1/vod/live/{sid}/{name}", node.vod)).send();

    let refused = forward_segment(&node, &sid, "early.ts", 0, Bytes::from_static(b"\x47refused")).await;
    assert_eq!(refused.status(), 409, "streaming is off");
    assert_eq!(vod("early.ts").await.unwrap().status(), 404, "a refused segment is not public");

    let url = node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"));
    assert_eq!(http().put(url).send().await.unwrap().status(), 200);
    let first = Bytes::from_static(b"\x47first copy");
    assert_eq!(forward_segment(&node, &sid, "a-1.ts", 1, first.clone()).await.status(), 200);
    let served = vod("a-1.ts").await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap(), first);
    // The same name again within the retry window is the edge's retry: acknowledged, bytes kept.
    let retry = forward_segment(&node, &sid, "a-1.ts", 1, Bytes::from_static(b"\x47other bytes")).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(node.cache.get(&format!("live:{sid}:a-1.ts")).await.unwrap(), Some(first.clone()), "shared cache");
    assert_eq!(vod("a-1.ts").await.unwrap().bytes().await.unwrap(), first);
    // A name never forwarded is not served even when something put bytes under it.
    node.cache
        .put(&format!("live:{sid}:planted.ts"), Bytes::from_static(b"\x47planted"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(vod("planted.ts").await.unwrap().status(), 404);
}

/// An edge that sends `Segment-Run` decides, and the control node renders: discontinuities where the edge flagged
/// them and nowhere else (a time jump it did not flag is not judged again), a retry is its (run, seq), and a new
/// run reusing a listed name is a new segment at once. A forward without a run (LEGACY) still works beside it.
#[tokio::test]
async fn the_edges_record_is_listed_as_it_says() {
    use livemix_common::{hls::parse_media_playlist, segment::SegmentRecord, segment_id::SegmentId};

    let node = ControlNode::start(&[]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap().to_owned();
    let url = node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"));
    assert_eq!(http().put(url).send().await.unwrap().status(), 200);
    let (run, t0) = (ulid::Ulid::new(), chrono::Utc::now());
    let record = |run, seq: u64, secs: i64, discontinuity| SegmentRecord {
        id: SegmentId { source: sid.parse().unwrap(), run, seq },
        name: format!("index{seq}.ts"),
        start_ts: t0 + chrono::TimeDelta::seconds(secs),
        length_ms: 1000,
        discontinuity,
    };
    let bytes = |seq: u64| Bytes::from(format!("\x47segment {seq}"));
    for (seq, secs, flag) in [(0, 0, true), (1, 1, false), (2, 60, false), (3, 61, true)] {
        assert_eq!(forward_record(&node, &record(run, seq, secs, flag), bytes(seq)).await.status(), 200);
    }
    let playlist = || async {
        let text = http().get(format!("{}/v1/vod/live/{sid}/vid.m3u8", node.vod)).send().await.unwrap();
        parse_media_playlist(&text.bytes().await.unwrap()).unwrap()
    };
    let listed = playlist().await;
    let breaks: Vec<(&str, bool)> = listed.segments.iter().map(|s| (s.uri.as_str(), s.discontinuity)).collect();
    assert_eq!(breaks.last().unwrap(), &("index3.ts", true), "flagged by the edge");
    assert!(breaks.contains(&("index2.ts", false)), "a jump the edge did not flag: {breaks:?}");

    // The edge's retry: the same run and sequence number, acknowledged with its number, bytes kept.
    let first = node.cache.get(&format!("live:{sid}:index1.ts")).await.unwrap();
    let retry = forward_record(&node, &record(run, 1, 1, false), Bytes::from_static(b"\x47other")).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.json::<Value>().await.unwrap()["media_seq"], 1);
    assert_eq!(node.cache.get(&format!("live:{sid}:index1.ts")).await.unwrap(), first);

    // The encoder restarted: a new run's index0.ts is a new segment with new bytes, even seconds later.
    let restarted = ulid::Ulid::new();
    let again = forward_record(&node, &record(restarted, 0, 62, true), Bytes::from_static(b"\x47new run")).await;
    assert_eq!(again.json::<Value>().await.unwrap()["media_seq"], 4);
    let served = http().get(format!("{}/v1/vod/live/{sid}/index0.ts", node.vod)).send().await.unwrap();
    assert_eq!(served.bytes().await.unwrap(), Bytes::from_static(b"\x47new run"));

    // LEGACY: an edge of the previous version, without `Segment-Run`, beside it.
    assert_eq!(forward_segment(&node, &sid, "old-edge.ts", 9, bytes(9)).await.status(), 200);
    assert_eq!(playlist().await.segments.last().unwrap().uri, "old-edge.ts");
}
