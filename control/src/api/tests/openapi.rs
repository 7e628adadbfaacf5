//! The OpenAPI documents: committed as generated, stable, covering every declared route with its methods, without
//! dangling references, and served behind each API's own door.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::Value;

use super::{EDGE_TOKEN, MGMT_TOKEN, SIGNING_KEY, get, send, state, state_with};
use crate::openapi::{SERVICES, WRITE_COMMAND, render};

fn committed(service: &str) -> String {
    let path = format!("{}/../docs/openapi/{service}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}; write it with `{WRITE_COMMAND}`"))
}

fn document(service: &str) -> Value {
    serde_json::from_str(&render(service)).expect("the document is JSON")
}

#[test]
fn committed_documents_are_what_the_code_generates() {
    for service in SERVICES {
        let generated = render(service);
        assert_eq!(generated, render(service), "{service}: two generations differ");
        assert!(
            committed(service) == generated,
            "docs/openapi/{service}.json differs from what the code generates: run `{WRITE_COMMAND}` and commit it"
        );
    }
}

/// Methods per path of a router's source: `.route("/path", get(a).put(b))`, `.route(PATH, get(page))`.
fn declared_routes(source: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut routes = BTreeMap::<String, BTreeSet<String>>::new();
    for (start, _) in source.match_indices(".route(") {
        let rest = &source[start + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let args = &rest[..end];
        let (first, handlers) = args.split_once(',').expect("a route and its handlers");
        let path = match first.trim() {
            quoted if quoted.starts_with('"') => quoted.trim_matches('"').to_owned(),
            "PATH" => crate::api::console::PATH.to_owned(),
            other => panic!("route path {other:?}: name it here"),
        };
        let methods = routes.entry(path).or_default();
        for method in ["get", "post", "put", "delete", "patch"] {
            let call = format!("{method}(");
            let found = handlers
                .match_indices(&call)
                .any(|(i, _)| i == 0 || !handlers[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
            if found {
                methods.insert(method.to_owned());
            }
        }
    }
    routes
}

fn documented_routes(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()));
            (path.clone(), methods.cloned().collect())
        })
        .collect()
}

#[test]
fn every_declared_route_is_documented_with_its_methods() {
    let common = include_str!("../mod.rs");
    let sources = [
        ("management", vec![include_str!("../management.rs"), include_str!("../console.rs"), common]),
        ("vod", vec![include_str!("../vod.rs"), common]),
        ("edge", vec![include_str!("../edge.rs"), common]),
    ];
    for (service, files) in sources {
        let mut declared = BTreeMap::<String, BTreeSet<String>>::new();
        for file in files {
            for (path, methods) in declared_routes(file) {
                declared.entry(path).or_default().extend(methods);
            }
        }
        assert!(declared.len() >= 6 && declared.values().all(|m| !m.is_empty()), "{service}: {declared:?}");
        assert!(declared.contains_key("/openapi.json"), "{service}");
        let documented = documented_routes(&document(service));
        assert_eq!(
            declared, documented,
            "{service}: the routers (left) and the document (right) differ: give each route's handler a \
             #[utoipa::path] and list it in its module's `Operations`, then run `{WRITE_COMMAND}`"
        );
    }
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                refs.push(target);
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_operation_declares_its_errors() {
    for service in SERVICES {
        let doc = document(service);
        assert_eq!(doc["openapi"], "3.1.0");
        let mut refs = vec![];
        collect_refs(&doc, &mut refs);
        for target in refs {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{service}: {target} resolves to nothing");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.contains_key("500"), "{service} {method} {path}: no 500");
                let open = path.starts_with("/liveness/") || path == "/metrics" || path.starts_with("/ui");
                if !open {
                    for status in ["400", "401", "404", "503"] {
                        assert!(responses.contains_key(status), "{service} {method} {path}: no {status}");
                    }
                }
                assert_eq!(operation.get("security").is_some(), open, "{service} {method} {path}");
            }
        }
    }
}

#[test]
fn the_hand_written_live_summary_schema_matches_its_fields() {
    use utoipa::PartialSchema;
    let summary = crate::db::LiveSummary { segments: 3, last_segment_at: Some(chrono::Utc::now()) };
    let fields: BTreeSet<String> =
        serde_json::to_value(&summary).unwrap().as_object().unwrap().keys().cloned().collect();
    let schema = serde_json::to_value(crate::db::LiveSummary::schema()).unwrap();
    let properties: BTreeSet<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
    let required: BTreeSet<String> =
        schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(fields, properties);
    assert_eq!(fields, required);
}

#[tokio::test]
async fn each_listener_serves_its_document_behind_its_own_door() {
    let state = state();
    let management = super::super::management::app(state.clone());
    let edge = super::super::edge::app(state.clone());
    let vod = super::super::vod::app(state);
    for (service, app, token, other) in
        [("management", &management, MGMT_TOKEN, EDGE_TOKEN), ("edge", &edge, EDGE_TOKEN, MGMT_TOKEN)]
    {
        for refused in [None, Some(other)] {
            let reply = send(app, get("/openapi.json", refused)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{service} with {refused:?}");
        }
        let reply = send(app, get("/openapi.json", Some(token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{service}");
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(reply.body, render(service).as_bytes(), "{service}");
    }
    // Without a signing key the VOD API is public, its document too; with one, the document needs a signature.
    let reply = send(&vod, get("/openapi.json", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, render("vod").as_bytes());
    let signed = super::super::vod::app(state_with(&[&format!("--playback-signing-key={SIGNING_KEY}")]));
    let reply = send(&signed, get("/openapi.json", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
