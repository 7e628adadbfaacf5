//! The management API: happy paths, bad input, unknown ids, duplicates.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ControlNode, http, unique};

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let header_id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.expect("every reply is JSON");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "X-Request-ID matches the body");
    assert_eq!(body["success"], status.is_success());
    if !status.is_success() {
        assert_eq!(body["error"]["code"], status.as_u16());
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    (status, body)
}

#[tokio::test]
async fn sources_crud_with_errors() {
    let node = ControlNode::start(&[]).await;
    let c = http();
    let name = unique("cam");

    // Create, with the seed's field names.
    let (status, body) = json_of(
        c.post(node.mgmt("/v1/source"))
            .json(&json!({"name": name, "segment_len": 4, "description": "Test video source"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let source = &body["source"];
    for field in [
        "id",
        "name",
        "segment_length",
        "description",
        "streaming",
        "rr_target",
        "local_time",
        "created_at",
        "updated_at",
    ] {
        assert!(source.get(field).is_some(), "source has {field}: {source}");
    }
    assert_eq!(source["segment_length"], 4);
    assert_eq!(source["streaming"], -1);
    assert_eq!(source["reachable"], false);
    let id = source["id"].as_str().unwrap().to_owned();

    // Duplicate name: 409.
    let (status, _) =
        json_of(c.post(node.mgmt("/v1/source")).json(&json!({"name": name, "segment_len": 4})).send().await.unwrap())
            .await;
    assert_eq!(status, 409);

    // Bad JSON, missing fields, wrong types, bad names: 400 or 415.
    let (status, _) = json_of(
        c.post(node.mgmt("/v1/source"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    for bad in [
        json!({"name": "x"}),
        json!({"name": "a/b", "segment_len": 4}),
        json!({"name": "ok", "segment_len": 0}),
        json!({"name": "ok", "segment_len": "4"}),
    ] {
        let (status, _) = json_of(c.post(node.mgmt("/v1/source")).json(&bad).send().await.unwrap()).await;
        assert_eq!(status, 400, "{bad}");
    }
    // JSON without a content type is read as JSON (issue 13: `curl -d` as the seed documents it), so `{}` is
    // missing its fields; a type that is clearly not JSON is still 415.
    let (status, _) = json_of(c.post(node.mgmt("/v1/source")).body("{}").send().await.unwrap()).await;
    assert_eq!(status, 400, "JSON without a content type");
    let (status, _) =
        json_of(c.post(node.mgmt("/v1/source")).header("content-type", "text/plain").body("{}").send().await.unwrap())
            .await;
    assert_eq!(status, 415, "text/plain");

    // Get and list.
    let (status, body) = json_of(c.get(node.mgmt(&format!("/v1/source/{id}"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["source"]["name"], name.as_str());
    let (_, body) = json_of(c.get(node.mgmt(&format!("/v1/source?source_name={name}"))).send().await.unwrap()).await;
    assert_eq!(body["sources"].as_array().unwrap().len(), 1);
    let (_, body) =
        json_of(c.get(node.mgmt("/v1/source?source_name=nobody-has-this-name")).send().await.unwrap()).await;
    assert_eq!(body["sources"].as_array().unwrap().len(), 0);
    let unknown = uuid::Uuid::new_v4();
    let (status, _) = json_of(c.get(node.mgmt(&format!("/v1/source/{unknown}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(c.get(node.mgmt("/v1/source/not-a-uuid")).send().await.unwrap()).await;
    assert_eq!(status, 400);

    // Rename, to a free name and to a taken one.
    let other = unique("cam");
    node.create_source(&other, 2).await;
    let new_name = unique("renamed");
    let (status, body) =
        json_of(c.put(node.mgmt(&format!("/v1/source/{id}/name?new_name={new_name}"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["source"]["name"], new_name.as_str());
    let (status, _) =
        json_of(c.put(node.mgmt(&format!("/v1/source/{id}/name?new_name={other}"))).send().await.unwrap()).await;
    assert_eq!(status, 409);
    let (status, _) = json_of(c.put(node.mgmt(&format!("/v1/source/{id}/name"))).send().await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) =
        json_of(c.put(node.mgmt(&format!("/v1/source/{unknown}/name?new_name=zzz-free"))).send().await.unwrap()).await;
    assert_eq!(status, 404);

    // Description.
    let (status, body) = json_of(
        c.put(node.mgmt(&format!("/v1/source/{id}/description")))
            .json(&json!({"description": "Gate 2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["source"]["description"], "Gate 2");
    let (status, _) = json_of(
        c.put(node.mgmt(&format!("/v1/source/{id}/description"))).json(&json!({"text": 1})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_of(
        c.put(node.mgmt(&format!("/v1/source/{unknown}/description")))
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    // Streaming: only true/false; with no edge yet the wanted state is saved.
    for bad in ["", "yes", "1", "TRUE"] {
        let (status, _) =
            json_of(c.put(node.mgmt(&format!("/v1/source/{id}/streaming?new_state={bad}"))).send().await.unwrap())
                .await;
        assert_eq!(status, 400, "new_state={bad}");
    }
    let (status, body) =
        json_of(c.put(node.mgmt(&format!("/v1/source/{id}/streaming?new_state=true"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["source"]["streaming"], 1);
    let (status, _) =
        json_of(c.put(node.mgmt(&format!("/v1/source/{unknown}/streaming?new_state=true"))).send().await.unwrap())
            .await;
    assert_eq!(status, 404);

    // Delete: then it is gone, and deleting again is 404.
    let (status, _) = json_of(c.delete(node.mgmt(&format!("/v1/source/{id}"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = json_of(c.get(node.mgmt(&format!("/v1/source/{id}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(c.delete(node.mgmt(&format!("/v1/source/{id}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);

    // Unknown routes and methods are JSON errors too.
    let (status, _) = json_of(c.get(node.mgmt("/v1/nothing-here")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(c.patch(node.mgmt("/v1/source")).send().await.unwrap()).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn recordings_crud_with_errors() {
    let node = ControlNode::start(&[]).await;
    let c = http();
    let source = node.create_source(&unique("cam"), 2).await;
    let sid = source["id"].as_str().unwrap();

    // No body: starts now (never epoch 0).
    let (status, body) = json_of(c.post(node.mgmt(&format!("/v1/source/{sid}/recording"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let rec = &body["recording"];
    for field in ["id", "alias", "description", "source", "start_ts", "end_ts", "active", "created_at", "updated_at"] {
        assert!(rec.get(field).is_some(), "recording has {field}: {rec}");
    }
    assert_eq!(rec["active"], 1);
    assert_eq!(rec["source"], sid);
    let start: chrono::DateTime<chrono::Utc> = rec["start_ts"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - start).num_seconds().abs() < 60, "start is now, not epoch 0");
    let rec_id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(rec_id.len(), 26, "a ULID");

    // With alias and start time; a duplicate alias is 409.
    let alias = unique("snippet");
    let epoch = chrono::Utc::now().timestamp() - 30;
    let (status, body) = json_of(
        c.post(node.mgmt(&format!("/v1/source/{sid}/recording")))
            .json(&json!({"alias": alias, "description": "d", "start_time_epoch": epoch}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["recording"]["alias"], alias.as_str());
    let start: chrono::DateTime<chrono::Utc> = body["recording"]["start_ts"].as_str().unwrap().parse().unwrap();
    assert_eq!(start.timestamp(), epoch);
    let (status, _) = json_of(
        c.post(node.mgmt(&format!("/v1/source/{sid}/recording"))).json(&json!({"alias": alias})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 409);

    // Bad input and unknown source.
    for bad in [r#"{"start_time_epoch": 0}"#, r#"{"start_time_epoch": "soon"}"#, r#"{"colour": 1}"#, "{oops"] {
        let (status, _) =
            json_of(c.post(node.mgmt(&format!("/v1/source/{sid}/recording"))).body(bad).send().await.unwrap()).await;
        assert_eq!(status, 400, "{bad}");
    }
    let unknown = uuid::Uuid::new_v4();
    let (status, _) =
        json_of(c.post(node.mgmt(&format!("/v1/source/{unknown}/recording"))).send().await.unwrap()).await;
    assert_eq!(status, 404);

    // Listing.
    let (_, body) =
        json_of(c.get(node.mgmt(&format!("/v1/source/{sid}/recording?only_active=true"))).send().await.unwrap()).await;
    assert_eq!(body["recordings"].as_array().unwrap().len(), 2);
    let (status, _) =
        json_of(c.get(node.mgmt(&format!("/v1/source/{sid}/recording?only_active=maybe"))).send().await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = json_of(c.get(node.mgmt(&format!("/v1/source/{unknown}/recording"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (_, body) = json_of(c.get(node.mgmt("/v1/recording")).send().await.unwrap()).await;
    assert!(body["recordings"].as_array().unwrap().iter().any(|r| r["id"] == rec_id.as_str()));

    // Get, stop (idempotent), segments, delete.
    let (status, body) = json_of(c.get(node.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["recording"]["end_ts"], Value::Null);
    let (status, body) =
        json_of(c.post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["recording"]["active"], -1);
    let end = body["recording"]["end_ts"].clone();
    assert!(end.is_string());
    let (_, body) = json_of(c.post(node.mgmt(&format!("/v1/recording/{rec_id}/stop"))).send().await.unwrap()).await;
    assert_eq!(body["recording"]["end_ts"], end, "a second stop keeps the first end time");
    let (_, body) =
        json_of(c.get(node.mgmt(&format!("/v1/source/{sid}/recording?only_active=true"))).send().await.unwrap()).await;
    assert_eq!(body["recordings"].as_array().unwrap().len(), 1);
    let (status, body) =
        json_of(c.get(node.mgmt(&format!("/v1/recording/{rec_id}/segment"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["segments"], json!([]));
    let missing = ulid::Ulid::new();
    for path in [format!("/v1/recording/{missing}"), format!("/v1/recording/{missing}/segment")] {
        let (status, _) = json_of(c.get(node.mgmt(&path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = json_of(c.post(node.mgmt(&format!("/v1/recording/{missing}/stop"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(c.get(node.mgmt("/v1/recording/not-a-ulid")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = json_of(c.delete(node.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = json_of(c.delete(node.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(c.get(node.mgmt(&format!("/v1/recording/{rec_id}"))).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn management_token_is_enforced_when_set() {
    let node = ControlNode::start(&["--management-token=s3cret"]).await;
    let c = http();
    let (status, _) = json_of(c.get(node.mgmt("/v1/source")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = json_of(c.get(node.mgmt("/v1/source")).bearer_auth("wrong").send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = json_of(c.get(node.mgmt("/v1/source")).bearer_auth("s3cret").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = json_of(c.get(node.mgmt("/liveness/ready")).send().await.unwrap()).await;
    assert_eq!(status, 200, "probes need no token");
    let metrics = c.get(node.mgmt("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("livemix_control_http_requests"), "{metrics}");
}
