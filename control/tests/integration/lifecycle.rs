//! Recordings with a lifecycle, through the management and VOD APIs on the real services: no routine delete
//! destroys a recording, deletes remove exactly the objects no recording needs (from the real S3), retention and
//! holds, garbage collection, and two replicas deleting each object once.

use std::{collections::HashSet, time::Duration};

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use livemix_common::{
    hls::parse_media_playlist,
    messages::Message,
    model::SegmentInfo,
    store::{ObjectStore, StoreError},
};
use livemix_testkit::{control::s3, eventually_within};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{ControlNode, eventually, http, publish_to_control, unique};

/// How long the deletion worker may take to empty the queue on a loaded machine.
const DRAIN: Duration = Duration::from_secs(120);

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn new_source(node: &ControlNode) -> Uuid {
    node.create_source(&unique("cam"), 1).await["id"].as_str().unwrap().parse().unwrap()
}

async fn new_recording(node: &ControlNode, sid: Uuid) -> String {
    let (status, body) =
        json_of(http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["recording"]["id"].as_str().unwrap().to_owned()
}

/// Uploads segment `seq` of `run` (distinct bytes) to S3 as an edge would and reports it for `recordings`.
async fn report(node: &ControlNode, sid: Uuid, recordings: &[&str], run: ulid::Ulid, seq: i64) -> SegmentInfo {
    let data = Bytes::from(format!("segment {seq} of run {run} of source {sid}").repeat(20));
    let key = format!("recordings/{sid}/{run}/{seq:012}.ts");
    node.store.put(&key, data.clone()).await.unwrap();
    let start_ts = Utc::now() - TimeDelta::seconds(600) + TimeDelta::seconds(seq);
    let info = SegmentInfo {
        name: format!("index{seq}.ts"),
        source: sid,
        run: Some(run),
        seq,
        discontinuity: false,
        start_ts,
        end_ts: start_ts + TimeDelta::seconds(1),
        length_ms: 1000,
        size: data.len() as i64,
        uri: key,
        sha256: None,
    };
    let ids = recordings.iter().map(|r| (*r).to_owned()).collect();
    publish_to_control(node, Message::NewVideoRecordingSegment { recording_ids: ids, segment: info.clone() }).await;
    info
}

/// Uploads and reports `count` segments, and waits until every recording lists them.
async fn record(node: &ControlNode, sid: Uuid, recordings: &[&str], first_seq: i64, count: i64) -> Vec<SegmentInfo> {
    let run = ulid::Ulid::new();
    let mut infos = Vec::new();
    for seq in first_seq..first_seq + count {
        infos.push(report(node, sid, recordings, run, seq).await);
    }
    for rec in recordings {
        eventually("the recorded segments to be indexed", || async {
            let body: Value =
                http().get(node.mgmt(&format!("/v1/recording/{rec}/segment"))).send().await.ok()?.json().await.ok()?;
            let listed: HashSet<&str> = body["segments"].as_array()?.iter().filter_map(|s| s["uri"].as_str()).collect();
            infos.iter().all(|i| listed.contains(i.uri.as_str())).then_some(())
        })
        .await;
    }
    infos
}

/// Every segment of a recording as a player gets it: the playlist, then each segment's bytes.
async fn replay(node: &ControlNode, rec: &str) -> Vec<Bytes> {
    let playlist = http().get(format!("{}/v1/vod/recording/{rec}/vid.m3u8", node.vod)).send().await.unwrap();
    assert_eq!(playlist.status(), 200);
    let playlist = parse_media_playlist(&playlist.bytes().await.unwrap()).expect("a media playlist");
    let mut played = Vec::new();
    for segment in &playlist.segments {
        let resp = http().get(format!("{}/v1/vod/recording/{rec}/{}", node.vod, segment.uri)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "segment {}", segment.uri);
        played.push(resp.bytes().await.unwrap());
    }
    played
}

async fn stored(key: &str) -> Option<Bytes> {
    match s3().await.get(key).await {
        Ok(data) => Some(data),
        Err(StoreError::NotFound { .. }) => None,
        Err(err) => panic!("reading {key}: {err}"),
    }
}

/// Waits until the deletion worker (this node's or another's: they share the database) removed `keys`.
async fn gone(keys: impl IntoIterator<Item = &str>) {
    let keys: Vec<&str> = keys.into_iter().collect();
    eventually_within("the object deletions to be carried out", DRAIN, || async {
        for key in &keys {
            if stored(key).await.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn keys(infos: &[SegmentInfo]) -> impl Iterator<Item = &str> {
    infos.iter().map(|i| i.uri.as_str())
}

async fn objects_of(infos: &[SegmentInfo]) -> Vec<Option<Bytes>> {
    let mut found = Vec::new();
    for info in infos {
        found.push(stored(&info.uri).await);
    }
    found
}

#[tokio::test]
async fn deleting_a_source_keeps_or_deletes_its_recordings_only_when_told() {
    let node = ControlNode::start(&[]).await;
    let sid = new_source(&node).await;
    let rec = new_recording(&node, sid).await;
    let infos = record(&node, sid, &[&rec], 0, 4).await;
    let before = replay(&node, &rec).await;
    assert_eq!(before.len(), 4);

    let (status, body) = json_of(http().delete(node.mgmt(&format!("/v1/source/{sid}"))).send().await.unwrap()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["reason"], "has_recordings");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1 recording(s)") && message.contains("recordings=retain"), "{message}");
    let (status, body) =
        json_of(http().delete(node.mgmt(&format!("/v1/source/{sid}?recordings=maybe"))).send().await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
    assert!(body["request_id"].is_string());
    let (_, source) = json_of(http().get(node.mgmt(&format!("/v1/source/{sid}"))).send().await.unwrap()).await;
    assert_eq!(source["source"]["id"], sid.to_string(), "refused deletes change nothing");

    let (status, body) =
        json_of(http().delete(node.mgmt(&format!("/v1/source/{sid}?recordings=retain"))).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], json!({"recordings_retained": 1, "recordings_deleted": 0, "objects_queued": 0}));
    let (status, _) = json_of(http().get(node.mgmt(&format!("/v1/source/{sid}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    // Retained: listed, stopped, playable byte for byte, and still accounted for.
    let (_, listed) = json_of(http().get(node.mgmt("/v1/recording")).send().await.unwrap()).await;
    let kept =
        listed["recordings"].as_array().unwrap().iter().find(|r| r["id"] == rec.as_str()).expect("listed").clone();
    assert_eq!(kept["active"], -1, "stopped with its source");
    assert!(kept["source_name"].is_string());
    assert_eq!(replay(&node, &rec).await, before);
    let (_, usage) = json_of(http().get(node.mgmt(&format!("/v1/source/{sid}/storage"))).send().await.unwrap()).await;
    assert_eq!(usage["storage"]["segments"], 4);
    assert_eq!(usage["storage"]["bytes"], infos.iter().map(|i| i.size).sum::<i64>());

    // With `delete`, every object of the source leaves the bucket.
    let sid = new_source(&node).await;
    let (a, b) = (new_recording(&node, sid).await, new_recording(&node, sid).await);
    let infos = record(&node, sid, &[&a, &b], 0, 3).await;
    let (status, body) =
        json_of(http().delete(node.mgmt(&format!("/v1/source/{sid}?recordings=delete"))).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], json!({"recordings_retained": 0, "recordings_deleted": 2, "objects_queued": 3}));
    gone(keys(&infos)).await;
    let (status, _) = json_of(http().get(node.mgmt(&format!("/v1/recording/{a}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn overlapping_recordings_share_segments_until_the_last_one_goes() {
    let node = ControlNode::start(&[]).await;
    let sid = new_source(&node).await;
    let (a, b) = (new_recording(&node, sid).await, new_recording(&node, sid).await);
    let only_a = record(&node, sid, &[&a], 0, 3).await;
    let shared = record(&node, sid, &[&a, &b], 3, 3).await;
    let only_b = record(&node, sid, &[&b], 6, 2).await;
    let b_before = replay(&node, &b).await;
    assert_eq!(b_before.len(), 5);

    let (status, body) = json_of(http().delete(node.mgmt(&format!("/v1/recording/{a}"))).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"]["objects_queued"], 3);
    gone(keys(&only_a)).await;
    assert!(objects_of(&shared).await.iter().all(Option::is_some), "shared objects stay");
    assert_eq!(replay(&node, &b).await, b_before, "B plays byte for byte");
    let (status, _) = json_of(http().delete(node.mgmt(&format!("/v1/recording/{a}"))).send().await.unwrap()).await;
    assert_eq!(status, 404, "deleting twice");

    // A recording on hold cannot be deleted, and lifting the hold allows it.
    let hold = |on: bool| http().put(node.mgmt(&format!("/v1/recording/{b}/hold"))).json(&json!({"hold": on}));
    let (status, body) = json_of(hold(true).send().await.unwrap()).await;
    assert_eq!((status, body["recording"]["hold"].clone()), (200, json!(true)));
    let (status, body) = json_of(http().delete(node.mgmt(&format!("/v1/recording/{b}"))).send().await.unwrap()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["reason"], "on_hold");
    assert!(body["error"]["message"].as_str().unwrap().contains("on hold"));
    assert_eq!(replay(&node, &b).await, b_before, "nothing deleted");
    assert_eq!(json_of(hold(false).send().await.unwrap()).await.0, 200);
    let (status, body) = json_of(http().delete(node.mgmt(&format!("/v1/recording/{b}"))).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    gone(keys(&shared).chain(keys(&only_b))).await;
    let (_, usage) = json_of(http().get(node.mgmt(&format!("/v1/source/{sid}/storage"))).send().await.unwrap()).await;
    assert_eq!(usage["storage"], json!({"bytes": 0, "segments": 0}));
}

#[tokio::test]
async fn retention_and_holds_refuse_nonsense_and_delete_oldest_first() {
    let node = ControlNode::start(&[]).await;
    let sid = new_source(&node).await;
    let put = |body: Value| http().put(node.mgmt(&format!("/v1/source/{sid}/retention"))).json(&body);
    for bad in [
        json!({"max_age_secs": 0}),
        json!({"max_age_secs": -5}),
        json!({"max_bytes": 0}),
        json!({"max_age_secs": "30d"}),
        json!({"max_age_secs": 1e300}),
        json!({"max_age_secs": i64::MAX}),
        json!({"max_days": 3}),
    ] {
        let (status, body) = json_of(put(bad.clone()).send().await.unwrap()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["success"], false, "{bad}");
        assert!(body["error"]["reason"].is_string(), "{bad}");
    }
    let (status, body) = json_of(
        http()
            .put(node.mgmt(&format!("/v1/recording/{}/hold", ulid::Ulid::new())))
            .json(&json!({"hold": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = json_of(
        http().put(node.mgmt("/v1/recording/not-a-ulid/hold")).json(&json!({"hold": "yes"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_of(
        http()
            .post(node.mgmt("/v1/source"))
            .json(&json!({"name": unique("cam"), "segment_len": 2, "retention": {"max_bytes": -1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    // Recorded ten minutes ago: a five-minute limit expires the unheld recording, oldest first, and not the held.
    let (expiring, held) = (new_recording(&node, sid).await, new_recording(&node, sid).await);
    let doomed = record(&node, sid, &[&expiring], 0, 3).await;
    let kept = record(&node, sid, &[&held], 3, 2).await;
    for rec in [&expiring, &held] {
        http().post(node.mgmt(&format!("/v1/recording/{rec}/stop"))).send().await.unwrap();
    }
    let (status, _) = json_of(
        http().put(node.mgmt(&format!("/v1/recording/{held}/hold"))).json(&json!({"hold": true})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, usage) =
        json_of(http().get(node.mgmt(&format!("/v1/recording/{expiring}/storage"))).send().await.unwrap()).await;
    assert!(usage["storage"].get("expires_at").is_none(), "no limit yet: {usage}");
    let (status, body) = json_of(put(json!({"max_age_secs": 300})).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"]["retention"], json!({"max_age_secs": 300, "max_bytes": null}));
    let (_, usage) =
        json_of(http().get(node.mgmt(&format!("/v1/recording/{expiring}/storage"))).send().await.unwrap()).await;
    let expires: chrono::DateTime<Utc> = usage["storage"]["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires < Utc::now(), "already past its time: {expires}");

    // A pass now (another node of this suite may be running one: then the next call does it).
    eventually("a retention pass to expire the recording", || async {
        let resp = http().post(node.mgmt("/v1/storage/retention")).send().await.ok()?;
        assert_eq!(resp.status(), 200);
        let status = http().get(node.mgmt(&format!("/v1/recording/{expiring}"))).send().await.ok()?.status();
        (status == 404).then_some(())
    })
    .await;
    gone(keys(&doomed)).await;
    assert!(objects_of(&kept).await.iter().all(Option::is_some), "held: kept");
    assert_eq!(replay(&node, &held).await.len(), 2);

    // A storage cap applies as soon as it is set.
    let capped = new_source(&node).await;
    let rec = new_recording(&node, capped).await;
    let infos = record(&node, capped, &[&rec], 0, 4).await;
    let size = infos[0].size;
    let (status, _) = json_of(
        http()
            .put(node.mgmt(&format!("/v1/source/{capped}/retention")))
            .json(&json!({"max_bytes": size * 2}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    gone(keys(&infos[..2])).await;
    let left: Vec<bool> = objects_of(&infos).await.iter().map(Option::is_some).collect();
    assert_eq!(left, vec![false, false, true, true], "the two oldest went");
}

#[tokio::test]
async fn garbage_collection_finds_orphans_and_missing_objects() {
    let node = ControlNode::start(&[]).await;
    let sid = new_source(&node).await;
    let rec = new_recording(&node, sid).await;
    let infos = record(&node, sid, &[&rec], 0, 3).await;
    // Uploads whose index report was lost, and an indexed segment whose object vanished.
    let orphans: Vec<String> = (0..3).map(|i| format!("recordings/{sid}/lost/{i:012}.ts")).collect();
    for key in &orphans {
        node.store.put(key, Bytes::from_static(b"orphan")).await.unwrap();
    }
    s3().await.delete(&infos[1].uri).await.unwrap();
    let gc = |query: &str| http().post(node.mgmt(&format!("/v1/storage/gc?prefix=recordings/{sid}/&{query}")));

    let (status, body) = json_of(gc("grace_secs=3600").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["gc"]["orphan_count"], 0, "young objects are never orphans");
    let (status, body) = json_of(gc("grace_secs=0").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let report = &body["gc"];
    assert_eq!(report["dry_run"], true, "dry run by default");
    assert_eq!(report["listed"], 5);
    let mut found: Vec<String> = serde_json::from_value(report["orphans"].clone()).unwrap();
    found.sort();
    assert_eq!(found, orphans);
    assert_eq!(report["missing"], json!([infos[1].uri]));
    assert_eq!(report["queued"], 0);
    assert!(objects_of(&infos).await[0].is_some());
    for key in &orphans {
        assert!(stored(key).await.is_some(), "a dry run deletes nothing");
    }

    let (status, body) = json_of(gc("grace_secs=0&dry_run=false").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["gc"]["queued"], 3);
    gone(orphans.iter().map(String::as_str)).await;
    assert!(stored(&infos[0].uri).await.is_some() && stored(&infos[2].uri).await.is_some(), "indexed objects stay");
    let (status, body) = json_of(gc("grace_secs=0").send().await.unwrap()).await;
    assert_eq!(
        (status, body["gc"]["orphan_count"].clone(), body["gc"]["missing_count"].clone()),
        (200, json!(0), json!(1))
    );

    for bad in ["prefix=elsewhere/&grace_secs=0", "dry_run=perhaps", "grace_secs=-1", "grace_secs=soon"] {
        let (status, body) =
            json_of(http().post(node.mgmt(&format!("/v1/storage/gc?{bad}"))).send().await.unwrap()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

async fn usage(node: &ControlNode, sid: Uuid) -> (i64, i64) {
    let (_, body) = json_of(http().get(node.mgmt(&format!("/v1/source/{sid}/storage"))).send().await.unwrap()).await;
    (body["storage"]["bytes"].as_i64().unwrap_or(-1), body["storage"]["segments"].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn a_storage_cap_holds_as_segments_arrive() {
    let node = ControlNode::start(&[]).await;
    let sid = new_source(&node).await;
    let rec = new_recording(&node, sid).await;
    let run = ulid::Ulid::new();
    // Segments 0..=9 all have the same size (one-digit sequence numbers); the cap holds two of them.
    let size = format!("segment 0 of run {run} of source {sid}").repeat(20).len() as i64;
    let (status, _) = json_of(
        http()
            .put(node.mgmt(&format!("/v1/source/{sid}/retention")))
            .json(&json!({"max_bytes": 2 * size}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let mut infos = Vec::new();
    for seq in 0..6 {
        let info = report(&node, sid, &[&rec], run, seq).await;
        let uri = info.uri.clone();
        infos.push(info);
        // Indexed: the newest segment is never the one the cap removes.
        eventually("the segment to be indexed", || async {
            let body: Value =
                http().get(node.mgmt(&format!("/v1/recording/{rec}/segment"))).send().await.ok()?.json().await.ok()?;
            body["segments"].as_array()?.iter().any(|s| s["uri"] == uri.as_str()).then_some(())
        })
        .await;
        let (bytes, _) = usage(&node, sid).await;
        assert!(bytes <= 3 * size, "over the cap by more than one segment after segment {seq}: {bytes} bytes");
    }
    eventually("the source within its cap", || async { (usage(&node, sid).await == (2 * size, 2)).then_some(()) })
        .await;
    gone(keys(&infos[..4])).await;
    assert!(objects_of(&infos[4..]).await.iter().all(Option::is_some), "the two newest stay");
}
