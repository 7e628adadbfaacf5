//! A control node restart loses nothing: all state is in PostgreSQL, memcached and S3.

use livemix_common::{messages::Message, model::SegmentInfo, store::segment_key};
use serde_json::Value;

use crate::support::{ControlNode, eventually, http, publish_to_control, unique};

#[tokio::test]
async fn restart_keeps_sources_recordings_and_segments() {
    let node = ControlNode::start(&[]).await;
    let name = unique("cam");
    let source = node.create_source(&name, 2).await;
    let sid: uuid::Uuid = source["id"].as_str().unwrap().parse().unwrap();
    http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    let rec: Value =
        http().post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap().json().await.unwrap();
    let rec_id = rec["recording"]["id"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now();
    let info = SegmentInfo {
        name: "r0.ts".into(),
        source: sid,
        run: None,
        seq: 0,
        discontinuity: false,
        start_ts: now,
        end_ts: now + chrono::Duration::seconds(2),
        length_ms: 2000,
        size: 10,
        uri: segment_key("recordings", sid, "r0.ts"),
        sha256: None,
    };
    publish_to_control(&node, Message::NewVideoRecordingSegment { recording_ids: vec![rec_id.clone()], segment: info })
        .await;
    eventually("the segment to be registered", || async {
        let body: Value =
            http().get(node.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.ok()?.json().await.ok()?;
        (body["segments"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let before_source: Value =
        http().get(node.mgmt(&format!("/v1/source/{sid}"))).send().await.unwrap().json().await.unwrap();
    let settings = node.stop().await;

    let node = ControlNode::start_with(settings).await;
    let after_source: Value =
        http().get(node.mgmt(&format!("/v1/source/{sid}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(after_source["source"], before_source["source"]);
    assert_eq!(after_source["source"]["streaming"], 1);
    let rec_after: Value =
        http().get(node.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(rec_after["recording"], rec["recording"]);
    let segs: Value =
        http().get(node.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(segs["segments"][0]["name"], "r0.ts");
}
