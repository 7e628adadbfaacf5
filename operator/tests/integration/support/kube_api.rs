//! A mocked Kubernetes API server on kube-rs's `tower-test` mock service, as in kube-rs's controller-rs
//! `fixtures.rs`, with enough memory to behave like the real one across reconciles: it stores objects, applies
//! the finalizer JSON patches and server-side-applied status, deletes an object whose last finalizer went while
//! it was being deleted, and logs every call so tests can assert the exact sequence.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use http::{Method, Request, Response, StatusCode};
use kube::{Client, Resource, ResourceExt, client::Body};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path and query, as sent.
    pub uri: String,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Call {
    /// `"PATCH /apis/..."`, for readable assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    resource_version: u64,
}

#[derive(Clone)]
pub struct MockApi {
    state: Arc<Mutex<State>>,
}

fn path_of<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), Some(namespace)))
}

impl MockApi {
    /// A kube client whose every request is answered by a new mock API server.
    pub fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = Self { state: Arc::default() };
        let server = api.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.handle(request).await;
                respond.send_response(response);
            }
        });
        (Client::new(service, "default"), api)
    }

    /// Stores (or replaces) an object, as if a user applied it.
    pub fn put<K: Resource<DynamicType = ()> + Serialize>(&self, obj: &K) {
        let path = path_of::<K>(&obj.namespace().expect("namespaced"), &obj.name_any());
        let value = serde_json::to_value(obj).expect("object serializes");
        self.state.lock().unwrap().objects.insert(path, value);
    }

    /// The stored object, as a watch would deliver it to the controller.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, namespace: &str, name: &str) -> Option<K> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .get(&path_of::<K>(namespace, name))
            .map(|v| serde_json::from_value(v.clone()).expect("stored object"))
    }

    /// Changes a stored object the way `kubectl edit` would (bumping the generation when the spec changes).
    pub fn edit<K, F>(&self, namespace: &str, name: &str, change: F)
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Serialize,
        F: FnOnce(&mut K),
    {
        let mut obj: K = self.get(namespace, name).expect("object to edit exists");
        change(&mut obj);
        self.put(&obj);
    }

    /// Every call made since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let path = request.uri().path().to_owned();
        let content_type =
            request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call { method: method.clone(), uri, content_type: content_type.clone(), body: body.clone() });

        if path.ends_with("/events") && method == Method::POST {
            return reply(StatusCode::CREATED, &body);
        }
        if path.contains("/events/") && method == Method::PATCH {
            return reply(StatusCode::OK, &body);
        }
        let (object_path, is_status) = match path.strip_suffix("/status") {
            Some(object) => (object.to_owned(), true),
            None => (path.clone(), false),
        };
        let Some(mut object) = state.objects.get(&object_path).cloned() else {
            return not_found(&object_path);
        };
        match (method, is_status) {
            (Method::GET, false) => reply(StatusCode::OK, &object),
            (Method::PATCH, true) => {
                assert_eq!(
                    content_type.as_deref(),
                    Some("application/apply-patch+yaml"),
                    "status is server-side applied"
                );
                object["status"] = body["status"].clone();
                state.store(object_path, object)
            }
            (Method::PATCH, false) => {
                assert_eq!(content_type.as_deref(), Some("application/json-patch+json"), "finalizers use JSON patch");
                let mut patch: json_patch::Patch = serde_json::from_value(body).expect("JSON patch");
                // As the API server (evanphx/json-patch): testing a missing path for null succeeds.
                patch.0.retain(|op| match op {
                    json_patch::PatchOperation::Test(test) => {
                        !(test.value.is_null() && object.pointer(test.path.as_str()).is_none())
                    }
                    _ => true,
                });
                if let Err(err) = json_patch::patch(&mut object, &patch) {
                    return reply(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "message": err.to_string(), "reason": "Invalid", "code": 422}),
                    );
                }
                let finalizers_gone = object["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
                if object["metadata"]["deletionTimestamp"].is_string() && finalizers_gone {
                    state.objects.remove(&object_path);
                    return reply(StatusCode::OK, &object);
                }
                state.store(object_path, object)
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, &json!({"kind": "Status", "code": 405})),
        }
    }
}

impl State {
    fn store(&mut self, path: String, mut object: Value) -> Response<Body> {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(format!("{}", 1000 + self.resource_version));
        self.objects.insert(path, object.clone());
        reply(StatusCode::OK, &object)
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("response")
}

fn not_found(path: &str) -> Response<Body> {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}
