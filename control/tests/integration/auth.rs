//! Authentication and hostile input on the real services: per-edge credentials bind a source to its edge in
//! PostgreSQL, and segment names at the length limit still reach memcached.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::{ControlNode, EDGE_TOKEN, forward_segment, http, unique};

async fn report(node: &ControlNode, source: &str, token: &str, topic: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/source/{source}/status", node.edge_api))
        .bearer_auth(token)
        .json(&json!({"rr_target_id": topic, "local_timestamp": chrono::Utc::now()}))
        .send()
        .await
        .unwrap()
}

async fn segment_as(node: &ControlNode, source: &str, token: &str, name: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/new-segment", node.edge_api))
        .bearer_auth(token)
        .header("Source-ID", source)
        .header("Segment-Name", name)
        .header("Segment-Seq", "1")
        .header("Segment-Start-TS", format!("{:.3}", chrono::Utc::now().timestamp_millis() as f64 / 1000.0))
        .header("Segment-Length-MSec", "1000")
        .body(Bytes::from_static(b"\x47segment"))
        .send()
        .await
        .unwrap()
}

/// Turns streaming on while no edge has reported (the wanted state is only saved, no command waits).
async fn stream(node: &ControlNode, source: &str) {
    let url = node.mgmt(&format!("/v1/source/{source}/streaming?new_state=true"));
    assert_eq!(http().put(url).send().await.unwrap().status(), 200);
}

/// A source is bound to its edge when it is registered (or by an admin), never by an edge's report: another
/// edge's token, the shared token and first reports get nowhere with it.
#[tokio::test]
async fn a_source_is_served_only_by_the_edge_it_is_bound_to() {
    let node = ControlNode::start(&["--edge-tokens=edge-a:tok-a,edge-b:tok-b"]).await;
    let created = http()
        .post(node.mgmt("/v1/source"))
        .json(&json!({"name": unique("cam"), "segment_len": 1, "edge": "edge-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let source: Value = created.json().await.unwrap();
    assert_eq!(source["source"]["edge"], "edge-a", "bound at registration");
    let sid = source["source"]["id"].as_str().unwrap().to_owned();
    let owner = || async {
        let body: Value =
            http().get(node.mgmt(&format!("/v1/source/{sid}/edge"))).send().await.unwrap().json().await.unwrap();
        body["edge_id"].clone()
    };
    assert_eq!(owner().await, "edge-a");
    stream(&node, &sid).await;

    assert_eq!(report(&node, &sid, "tok-a", "edge-a").await.status(), 200);
    let stolen = report(&node, &sid, "tok-b", "edge-b").await;
    assert_eq!(stolen.status(), 403);
    let body: Value = stolen.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "forbidden");
    assert!(!body.to_string().contains("edge-a"), "the owner is not revealed: {body}");
    assert_eq!(segment_as(&node, &sid, "tok-b", "a-1.ts").await.status(), 403, "another edge cannot inject video");
    assert_eq!(segment_as(&node, &sid, "tok-a", "a-1.ts").await.status(), 200);
    // Commands for edge-a go to edge-a's own topic, whatever a report says.
    assert_eq!(report(&node, &sid, "tok-a", "edge-b").await.status(), 403);
    // The deprecated shared token no longer reaches a bound source.
    assert_eq!(report(&node, &sid, EDGE_TOKEN, &unique("edge")).await.status(), 403);
    assert_eq!(segment_as(&node, &sid, EDGE_TOKEN, "a-2.ts").await.status(), 403);
    for token in ["", "tok-c", "tok-a2"] {
        assert_eq!(report(&node, &sid, token, "edge-a").await.status(), 401, "{token:?}");
    }
    // A source bound to nobody (registered without an edge) is nobody's with a per-edge token: no first report
    // claims it. So is one that does not exist, without saying which it is.
    let unbound = node.create_source(&unique("cam"), 1).await;
    let unbound_id = unbound["id"].as_str().unwrap().to_owned();
    let refused = report(&node, &unbound_id, "tok-b", "edge-b").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("PUT /v1/source/"), "says how to bind it");
    assert_eq!(report(&node, &uuid::Uuid::new_v4().to_string(), "tok-b", "edge-b").await.status(), 403);
    let lookup = |name: &str, token: &str| {
        http().get(format!("{}/v1/source?source_name={name}", node.edge_api)).bearer_auth(token).send()
    };
    assert_eq!(lookup(unbound["name"].as_str().unwrap(), "tok-b").await.unwrap().status(), 404);
    assert_eq!(lookup(source["source"]["name"].as_str().unwrap(), "tok-b").await.unwrap().status(), 404);
    assert_eq!(lookup(source["source"]["name"].as_str().unwrap(), "tok-a").await.unwrap().status(), 200);

    // The camera moved: an admin binds the source to edge-b.
    let resp = http()
        .put(node.mgmt(&format!("/v1/source/{sid}/edge")))
        .json(&json!({"edge_id": "edge-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(report(&node, &sid, "tok-b", "edge-b").await.status(), 200, "this replica forgets at once");
    assert_eq!(owner().await, "edge-b");
    assert_eq!(report(&node, &sid, "tok-a", "edge-a").await.status(), 403);
    // Released, nobody's per-edge token acts for it.
    let resp = http().delete(node.mgmt(&format!("/v1/source/{sid}/edge"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(report(&node, &sid, "tok-b", "edge-b").await.status(), 403);
    let bad = http()
        .put(node.mgmt(&format!("/v1/source/{sid}/edge")))
        .json(&json!({"edge_id": "../edge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn segment_names_at_the_length_limit_are_cached_and_served() {
    let node = ControlNode::start(&[]).await;
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap().to_owned();
    stream(&node, &sid).await;
    assert_eq!(node.edge_report(&sid, &unique("edge")).await.status(), 200);
    // 255 bytes: with the key's prefix, well past memcached's 250-byte key limit.
    let name = format!("{}.ts", "n".repeat(252));
    let data = Bytes::from(vec![0x47; 1880]);
    let resp = forward_segment(&node, &sid, &name, 1, data.clone()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let served = http().get(format!("{}/v1/vod/live/{sid}/{name}", node.vod)).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn hostile_requests_get_4xx_and_the_node_keeps_serving() {
    let node = ControlNode::start(&[]).await;
    let c = http();
    // Wrong content types on state-changing routes: 415.
    for content_type in ["text/plain", "multipart/form-data; boundary=x"] {
        let resp = c
            .post(node.mgmt("/v1/source"))
            .header("content-type", content_type)
            .body(r#"{"name": "x", "segment_len": 2}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{content_type}");
    }
    // A body far over the limit: 413, and the connection does not stay busy.
    let huge = vec![b' '; 8 << 20];
    let resp = c.post(node.mgmt("/v1/source")).header("content-type", "application/json").body(huge).send().await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    // Invented methods: a 4xx, and one bounded metric label.
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let resp = c.request(method, node.mgmt("/v1/source")).send().await.unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let metrics = c.get(node.mgmt("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("method=\"other\"") && !metrics.contains("method=\"X1\""), "{metrics}");
    // Still serving.
    let resp = c.get(node.mgmt("/liveness/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
