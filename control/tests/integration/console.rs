//! What the web console reads on a real control node: the live summary of a source as segments arrive, and the
//! page pointing the player at the node's own VOD port.

use serde_json::Value;

use crate::support::{ControlNode, FakeEdge, ffmpeg_segments, forward_segment, http};

async fn live_summary(node: &ControlNode, sid: &str) -> Value {
    let resp = http().get(node.mgmt(&format!("/v1/source/{sid}/live"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["live"].clone()
}

#[tokio::test]
async fn the_live_summary_counts_what_the_live_playlist_lists() {
    let node = ControlNode::start(&["--live-segments=3"]).await;
    let (sid, _edge) = FakeEdge::streaming_source(&node).await;
    let sid = sid.as_str();

    let empty = live_summary(&node, sid).await;
    assert_eq!(empty["segments"], 0);
    assert!(empty["last_segment_at"].is_null(), "{empty}");

    let before = chrono::Utc::now();
    for (i, (name, data)) in ffmpeg_segments().await.iter().take(5).enumerate() {
        assert_eq!(forward_segment(&node, sid, name, i as u64, data.clone()).await.status(), 200);
        let live = live_summary(&node, sid).await;
        assert_eq!(live["segments"], (i + 1).min(3), "capped like the live playlist: {live}");
    }
    let live = live_summary(&node, sid).await;
    let last: chrono::DateTime<chrono::Utc> = serde_json::from_value(live["last_segment_at"].clone()).unwrap();
    // The database's clock; allow for a little skew against this process's.
    assert!((last - before).num_seconds().abs() < 30, "{last} vs {before}");

    let unknown = http().get(node.mgmt(&format!("/v1/source/{}/live", uuid::Uuid::new_v4()))).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_console_points_its_player_at_this_nodes_vod_port() {
    let node = ControlNode::start(&[]).await;
    let resp = http().get(node.mgmt("/ui")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    // Loaded from 127.0.0.1:<management port>: the VOD API is on the same host, on its own listener's port.
    assert!(html.contains(&format!(r#"<meta name="livemix-vod-url" content="{}">"#, node.vod)), "{html}");
}
