//! The OpenAPI 3.1 documents of the control node's three APIs, generated from the handlers' `#[utoipa::path]`s
//! and the wire types' `ToSchema` (`livemix-common`'s `openapi` feature): served at `/openapi.json` on each
//! listener and committed as `docs/openapi/{management,vod,edge}.json`, which a test keeps identical to what this
//! module generates (`cargo run -p livemix-control --bin livemix-openapi -- docs/openapi` rewrites them).
//!
//! The handlers declare their replies' named objects and their own errors (409, 504...); the conventions every
//! route shares are added here, once: the reply envelope (`success`, `request_id`), the errors any route may
//! answer (400, 401, 404, 413, 503...) and each API's authentication.

use std::{borrow::Cow, collections::BTreeMap, path::Path, sync::OnceLock};

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use livemix_common::{
    ApiError,
    api::{ErrorReply, Success},
};
use serde_json::{Map, Value, json};
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        ObjectBuilder, RefOr,
        schema::{KnownFormat, Schema, SchemaFormat, Type},
    },
};

use crate::api;

/// The three APIs, by the name of their document.
pub const SERVICES: [&str; 3] = ["management", "vod", "edge"];

/// The command that rewrites the committed documents.
pub const WRITE_COMMAND: &str = "cargo run -p livemix-control --bin livemix-openapi -- docs/openapi";

/// Bytes of a body that is not JSON (MPEG-TS, MP4).
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Binary")
    }
}

/// Everything the documents name that no handler reaches by itself.
#[derive(OpenApi)]
#[openapi(components(schemas(Success, ErrorReply)))]
struct Shared;

/// Paths served without credentials on every API: probes, metrics and the console.
fn is_open(path: &str) -> bool {
    path.starts_with("/liveness/") || path == "/metrics" || path == "/ui" || path.starts_with("/ui/")
}

/// The document of `service` (one of [`SERVICES`]) as utoipa builds it from the handlers.
fn operations(service: &str) -> utoipa::openapi::OpenApi {
    let mut doc = match service {
        "management" => {
            let mut doc = api::management::Operations::openapi();
            doc.merge(api::console::Operations::openapi());
            doc
        }
        "vod" => api::vod::Operations::openapi(),
        "edge" => api::edge::Operations::openapi(),
        other => panic!("no API named {other:?}"),
    };
    doc.merge(api::CommonOperations::openapi());
    doc.merge(Shared::openapi());
    doc
}

fn info(service: &str) -> Value {
    let (title, description) = match service {
        "management" => (
            "LiveMix management API",
            "Sources, streaming, recordings, storage (`:8080`), for admins, the operator and the web console. \
             Requests carry `Authorization: Bearer <management token>`; without a configured token the API answers \
             loopback only. State-changing requests send JSON (or no body).",
        ),
        "vod" => (
            "LiveMix VOD API",
            "Live and recording playlists, their segments, time ranges and exports (`:8081`), for any HLS player; \
             CORS enabled. Public, or signed URLs only (`exp` and `sig` query parameters) when the control node has \
             a playback signing key: `GET /v1/playback-url` on the management API mints them.",
        ),
        "edge" => (
            "LiveMix edge-facing API",
            "Status reports and live segments from edges (`:8082`). Each edge presents its own token and acts only \
             for the sources bound to it.",
        ),
        other => panic!("no API named {other:?}"),
    };
    let conventions = "Every JSON reply is `{\"success\": true, \"request_id\": \"<uuid>\", ...}` with the route's named \
                       object; errors are `{\"success\": false, \"request_id\": ..., \"error\": {\"code\", \"reason\", \
                       \"message\"}}`: programs branch on `reason`, `message` is for people. The request id is also \
                       in the `X-Request-ID` header.";
    json!({
        "title": title,
        "description": format!("{description}\n\n{conventions}"),
        "version": env!("CARGO_PKG_VERSION"),
        "license": {"name": "MIT", "identifier": "MIT"},
    })
}

fn servers(service: &str) -> Value {
    let port = match service {
        "management" => 8080,
        "vod" => 8081,
        _ => 8082,
    };
    json!([{"url": format!("http://127.0.0.1:{port}"), "description": "A control node on this machine, default port"}])
}

fn security_schemes(service: &str) -> Value {
    match service {
        "management" => json!({"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The management token (`--management-token`, `LIVEMIX_MANAGEMENT_TOKEN`). Without one \
                            configured, the API answers loopback callers only and takes no token.",
        }}),
        "edge" => json!({"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The edge's own token (`LIVEMIX_EDGE_TOKENS`), or the deprecated shared edge token.",
        }}),
        _ => json!({
            "playback_exp": {
                "type": "apiKey", "in": "query", "name": "exp",
                "description": "Signed playback URLs: expiry in seconds since the Unix epoch.",
            },
            "playback_sig": {
                "type": "apiKey", "in": "query", "name": "sig",
                "description": "Signed playback URLs: lowercase hex HMAC-SHA256 of `\"{exp}\\n{scope}\"` under the \
                                playback signing key, the scope being the path up to its last `/`. Missing: 401; \
                                expired or wrong: 403.",
            },
        }),
    }
}

fn security(service: &str) -> Value {
    match service {
        "vod" => json!([{}, {"playback_exp": [], "playback_sig": []}]),
        _ => json!([{"bearer": []}]),
    }
}

/// The error replies routes share, by component name: status, reason, what it means.
const ERRORS: [(&str, u16, &str, &str); 9] = [
    ("BadRequest", 400, "bad_request", "Bad input: a malformed id, query parameter, header or body."),
    ("Unauthorized", 401, "unauthorized", "Missing or wrong credentials."),
    (
        "Forbidden",
        403,
        "forbidden",
        "Refused: a cross-site request, a host name the API does not answer, or an expired or wrong signature.",
    ),
    ("NotFound", 404, "not_found", "No such object (`not_found`), or no route serves this path (`no_such_route`)."),
    ("RequestTimeout", 408, "client_error", "The request body did not arrive in time."),
    ("PayloadTooLarge", 413, "payload_too_large", "The body is larger than the route takes."),
    ("UnsupportedMediaType", 415, "unsupported_media_type", "The body is not declared as JSON (or left undeclared)."),
    ("Internal", 500, "internal", "A server-side fault; the log has the details under the request id."),
    (
        "Unavailable",
        503,
        "unavailable",
        "A backing service does not answer, or the server is full (`busy`, with `Retry-After`).",
    ),
];

fn error_responses() -> Value {
    let mut responses = Map::new();
    for (name, code, reason, description) in ERRORS {
        responses.insert(
            name.into(),
            json!({
                "description": description,
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorReply"},
                    "example": {
                        "success": false,
                        "request_id": "0195f3c2-8a8e-4d1a-9f0e-5b7c1d2e3f4a",
                        "error": {"code": code, "reason": reason, "message": description},
                    },
                }},
            }),
        );
    }
    Value::Object(responses)
}

/// The shared errors an operation may answer besides its own.
fn shared_errors(service: &str, path: &str, method: &str, has_body: bool) -> Vec<&'static str> {
    let mut errors = vec![];
    if !is_open(path) {
        errors.extend(["BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"]);
        let writes = !matches!(method, "get" | "head" | "options");
        if (service == "management" && writes) || has_body {
            errors.extend(["RequestTimeout", "PayloadTooLarge", "UnsupportedMediaType"]);
        }
    }
    errors.push("Internal");
    errors
}

/// The utoipa document with the shared conventions applied.
fn generate(service: &str) -> Value {
    let doc = serde_json::to_value(operations(service)).expect("an OpenAPI document serializes");
    let Value::Object(mut doc) = doc else { unreachable!("an OpenAPI document is an object") };
    doc.insert("info".into(), info(service));
    doc.insert("servers".into(), servers(service));
    doc.insert("security".into(), security(service));
    let components = doc.entry("components").or_insert_with(|| json!({}));
    components["securitySchemes"] = security_schemes(service);
    components["responses"] = error_responses();
    let success = json!({"$ref": "#/components/schemas/Success"});
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            let Value::Object(item) = item else { continue };
            for (method, operation) in item.iter_mut() {
                let Value::Object(operation) = operation else { continue };
                if is_open(path) {
                    operation.insert("security".into(), json!([]));
                }
                let has_body = operation.contains_key("requestBody");
                // utoipa 5 writes a Link object's fields in snake case; OpenAPI spells them in camel case.
                if let Some(Value::Object(responses)) = operation.get_mut("responses") {
                    for response in responses.values_mut() {
                        let Some(Value::Object(links)) = response.get_mut("links") else { continue };
                        for link in links.values_mut() {
                            let Value::Object(link) = link else { continue };
                            for (snake, camel) in [
                                ("operation_id", "operationId"),
                                ("operation_ref", "operationRef"),
                                ("request_body", "requestBody"),
                            ] {
                                if let Some(value) = link.remove(snake) {
                                    link.insert(camel.into(), value);
                                }
                            }
                        }
                    }
                }
                // An `Option<T>` body (`request_body(content = Option<T>)`) may be left out; it is never `null`.
                if let Some(Value::Object(content)) =
                    operation.get_mut("requestBody").and_then(|b| b.get_mut("content"))
                {
                    for media in content.values_mut() {
                        if let Some(schema) = media.get_mut("schema")
                            && let Some(Value::Array(choices)) = schema.get("oneOf")
                            && choices.len() == 2
                            && choices[0] == json!({"type": "null"})
                        {
                            *schema = choices[1].clone();
                        }
                    }
                }
                let responses = operation.entry("responses").or_insert_with(|| json!({}));
                // The named object of a JSON reply stands beside `success` and `request_id`.
                if let Value::Object(replies) = &mut *responses {
                    for (status, reply) in replies.iter_mut() {
                        if !status.starts_with('2') || path == "/openapi.json" {
                            continue;
                        }
                        if let Some(schema) = reply.pointer_mut("/content/application~1json/schema")
                            && schema.get("$ref").and_then(Value::as_str).is_some_and(|r| {
                                r != "#/components/schemas/Success" && r != "#/components/schemas/ErrorReply"
                            })
                        {
                            *schema = json!({"allOf": [success.clone(), schema.take()]});
                        }
                    }
                }
                for name in shared_errors(service, path, method, has_body) {
                    let code = ERRORS.iter().find(|e| e.0 == name).map(|e| e.1).unwrap_or(500);
                    if responses.get(code.to_string()).is_none() {
                        responses[code.to_string()] = json!({"$ref": format!("#/components/responses/{name}")});
                    }
                }
            }
        }
    }
    canonical(Value::Object(doc))
}

/// Rustdoc's links (``[`Source::owner`]``) read as plain code in a description.
fn plain_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start + 2..].find("`]") else { break };
        let end = start + 2 + len + 2;
        out.push_str(&rest[..start]);
        if rest[end..].starts_with('(') {
            out.push_str(&rest[start..end]);
        } else {
            out.push_str(&rest[start + 1..end - 1]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Keys sorted at every level, whatever map serde_json was built with: the same document on every run. Also
/// turns rustdoc links in descriptions into plain code.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> = map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(text) if k == "description" => (k, Value::String(plain_links(&text))),
                    v => (k, canonical(v)),
                })
                .collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The document of `service` as committed: pretty JSON, sorted keys, a final newline.
pub fn render(service: &str) -> String {
    let mut text = serde_json::to_string_pretty(&generate(service)).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Writes every document to `dir` (`docs/openapi`) as `<service>.json`.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    SERVICES
        .iter()
        .map(|service| {
            let path = dir.join(format!("{service}.json"));
            std::fs::write(&path, render(service))?;
            Ok(path)
        })
        .collect()
}

/// `GET /openapi.json` of `service`, rendered once per process.
pub fn reply(service: &str) -> Response {
    static DOCUMENTS: OnceLock<BTreeMap<&'static str, bytes::Bytes>> = OnceLock::new();
    let documents = DOCUMENTS
        .get_or_init(|| SERVICES.iter().map(|service| (*service, bytes::Bytes::from(render(service)))).collect());
    match documents.get(service) {
        Some(body) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body.clone(),
        )
            .into_response(),
        None => ApiError::not_found(format!("no OpenAPI document for {service:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_links;

    #[test]
    fn rustdoc_links_read_as_code() {
        assert_eq!(plain_links("see [`Source::owner`]."), "see `Source::owner`.");
        assert_eq!(plain_links("[`a`] and [`b`]"), "`a` and `b`");
        assert_eq!(plain_links("a [`link`](https://example.org) stays"), "a [`link`](https://example.org) stays");
        assert_eq!(plain_links("unclosed [`x"), "unclosed [`x");
    }
}
