//! The API server itself refuses invalid resources and forbidden changes: the CRDs' OpenAPI schema (ranges,
//! patterns, required fields), their CEL rules (immutable fields, no restart of a stopped recording) and strict
//! field validation. No operator runs here: nothing of this reaches it.

use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    core::Status,
};
use livemix_operator::crd::{Recording, VideoSource};
use serde_json::{Value, json};

use crate::support::{TestNamespace, USER, client, install_crds, kubectl_with_input, unique};

/// Asserts the API server refused with 422 Invalid, its message naming each of `words`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, words: &[&str], what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            let Status { code, reason, message, .. } = status.as_ref();
            assert_eq!((*code, reason.as_str()), (422, "Invalid"), "{what}: {message}");
            for word in words {
                assert!(message.contains(word), "{what}: the message {message:?} lacks {word:?}");
            }
        }
        other => panic!("{what}: the API server accepted it or failed otherwise: {other:?}"),
    }
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "livemix.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("object")
}

#[tokio::test]
async fn invalid_resources_are_refused_by_the_api_server() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client).await;
    let sources =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &ApiResource::erase::<VideoSource>(&()));
    let recordings =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &ApiResource::erase::<Recording>(&()));
    let create = PostParams::default();

    for (spec, words, what) in [
        (json!({"segmentLength": 0}), &["spec.segmentLength", "greater than or equal to 1"][..], "segmentLength 0"),
        (
            json!({"segmentLength": 3601}),
            &["spec.segmentLength", "less than or equal to 3600"][..],
            "segmentLength 3601",
        ),
        (json!({"segmentLength": "2"}), &["spec.segmentLength", "integer"][..], "segmentLength as a string"),
        (json!({"streaming": true}), &["spec.segmentLength", "Required value"][..], "no segmentLength"),
        (json!({"segmentLength": 2, "name": "a..b"}), &["name must not contain '..'"][..], "'..' in the name"),
        (json!({"segmentLength": 2, "name": "a/b"}), &["spec.name", "should match"][..], "'/' in the name"),
        (json!({"segmentLength": 2, "name": ""}), &["spec.name", "at least 1 chars long"][..], "empty name"),
        (json!({"segmentLength": 2, "edge": "edge 0"}), &["spec.edge", "should match"][..], "space in the edge id"),
        (json!({"segmentLength": 2, "edge": ""}), &["spec.edge", "at least 1 chars long"][..], "empty edge id"),
        (json!({"segmentLength": 2, "edge": "e".repeat(129)}), &["spec.edge", "Too long"][..], "long edge id"),
        (
            json!({"segmentLength": 2, "description": "x".repeat(4097)}),
            &["spec.description", "Too long"][..],
            "long text",
        ),
        // 2100 characters, but 4200 bytes: more than the control node takes.
        (
            json!({"segmentLength": 2, "description": "é".repeat(2100)}),
            &["description must be at most 4096 bytes of UTF-8"][..],
            "long text in bytes",
        ),
    ] {
        assert_invalid(sources.create(&create, &object("VideoSource", &unique("bad"), spec)).await, words, what);
    }
    let no_spec: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": unique("bad")},
    }))
    .unwrap();
    assert_invalid(sources.create(&create, &no_spec).await, &["spec", "Required value"], "no spec");

    for (spec, words, what) in [
        (json!({"description": "x"}), &["spec.source", "Required value"][..], "no source"),
        (json!({"source": ""}), &["spec.source", "at least 1 chars long"][..], "empty source"),
        (json!({"source": "Camera_0"}), &["spec.source", "should match"][..], "source not a resource name"),
        (
            json!({"source": "cam", "description": "é".repeat(2100)}),
            &["description must be at most 4096 bytes of UTF-8"][..],
            "long recording description",
        ),
        (json!({"source": "cam", "alias": "a..b"}), &["alias must not contain '..'"][..], "'..' in the alias"),
        (json!({"source": "cam", "alias": "a b"}), &["spec.alias", "should match"][..], "space in the alias"),
        (json!({"source": "cam", "startTime": "yesterday"}), &["spec.startTime"][..], "startTime not a date"),
    ] {
        assert_invalid(recordings.create(&create, &object("Recording", &unique("bad"), spec)).await, words, what);
    }

    // Changes the CEL transition rules forbid; the allowed ones pass.
    let cam = unique("cam");
    sources.create(&create, &object("VideoSource", &cam, json!({"segmentLength": 2}))).await.expect("valid");
    let merge = |spec: Value| Patch::Merge(json!({"spec": spec}));
    let params = PatchParams::default();
    assert_invalid(
        sources.patch(&cam, &params, &merge(json!({"segmentLength": 4}))).await,
        &["segmentLength cannot change once the source is registered"],
        "changing segmentLength",
    );
    sources
        .patch(&cam, &params, &merge(json!({"streaming": true, "description": "changed", "name": "renamed"})))
        .await
        .expect("streaming, description and name may change");

    let rec = unique("rec");
    let spec = json!({"source": cam, "alias": unique("alias"), "startTime": "2026-11-25T09:55:00Z"});
    recordings.create(&create, &object("Recording", &rec, spec)).await.expect("valid");
    for (change, message, what) in [
        (json!({"source": "other"}), "source is immutable", "changing the source"),
        (json!({"alias": "other"}), "alias is immutable", "changing the alias"),
        (json!({"alias": null}), "alias cannot be added or removed once the recording exists", "removing the alias"),
        (json!({"startTime": "2026-11-25T10:00:00Z"}), "startTime is immutable", "changing startTime"),
        (json!({"startTime": null}), "startTime cannot be added or removed", "removing startTime"),
    ] {
        assert_invalid(recordings.patch(&rec, &params, &merge(change)).await, &[message], what);
    }
    let plain = unique("rec");
    recordings.create(&create, &object("Recording", &plain, json!({"source": cam}))).await.expect("valid");
    assert_invalid(
        recordings.patch(&plain, &params, &merge(json!({"alias": "late"}))).await,
        &["alias cannot be added or removed once the recording exists"],
        "adding an alias",
    );
    recordings.patch(&plain, &params, &merge(json!({"stopped": true, "description": "done"}))).await.expect("stop");
    assert_invalid(
        recordings.patch(&plain, &params, &merge(json!({"stopped": false}))).await,
        &["a stopped recording cannot be restarted; create a new Recording"],
        "restarting a stopped recording",
    );
    // The same rules hold for server-side apply.
    let apply = json!({
        "apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": cam},
        "spec": {"segmentLength": 6},
    });
    assert_invalid(
        sources.patch(&cam, &PatchParams::apply(USER).force(), &Patch::Apply(&apply)).await,
        &["segmentLength cannot change once the source is registered"],
        "applying another segmentLength",
    );

    // Unknown fields: kubectl's strict validation makes the API server refuse them.
    let typo = format!(
        "apiVersion: livemix.io/v1alpha1\nkind: VideoSource\nmetadata:\n  name: {}\nspec:\n  segmentLenght: 2\n  \
         segmentLength: 2\n",
        unique("typo")
    );
    for (mode, refusal) in [
        // Server-side apply builds a typed patch from the schema.
        ("--server-side", ".spec.segmentLenght: field not declared in schema"),
        // A client-side apply creates the object with fieldValidation=Strict.
        ("--server-side=false", r#"unknown field "spec.segmentLenght""#),
    ] {
        let (ok, stdout, stderr) =
            kubectl_with_input(&["apply", mode, "--validate=strict", "-n", &ns.name, "-f", "-"], &typo).await;
        assert!(!ok, "kubectl apply {mode} accepted an unknown field: {stdout}");
        assert!(stderr.contains(refusal), "kubectl apply {mode}: {stderr}");
    }
    let bad = format!(
        "apiVersion: livemix.io/v1alpha1\nkind: VideoSource\nmetadata:\n  name: {}\nspec:\n  segmentLength: 0\n",
        unique("zero")
    );
    let (ok, _, stderr) = kubectl_with_input(&["apply", "-n", &ns.name, "-f", "-"], &bad).await;
    assert!(!ok && stderr.contains("Invalid value") && stderr.contains("spec.segmentLength"), "{stderr}");

    // The examples pass the API server's validation, CEL rules included (scripts/check-crds.sh cannot run those).
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/examples");
    let (ok, stdout, stderr) =
        kubectl_with_input(&["apply", "--dry-run=server", "--validate=strict", "-n", &ns.name, "-f", examples], "")
            .await;
    assert!(ok, "crds/examples: {stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");

    ns.delete().await;
}

/// The lifecycle fields: retention limits with units, the deletion policy's values, `purgeOnDelete` against
/// `deletionPolicy`, and `hold`'s type; what people write is accepted.
#[tokio::test]
async fn invalid_lifecycle_fields_are_refused_by_the_api_server() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client).await;
    let sources =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &ApiResource::erase::<VideoSource>(&()));
    let recordings =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &ApiResource::erase::<Recording>(&()));
    let create = PostParams::default();
    let retention = |r: Value| json!({"segmentLength": 2, "retention": r});

    for (spec, words, what) in [
        (retention(json!({"maxAge": "0d"})), &["maxAge must be at least 1s"][..], "maxAge 0"),
        (retention(json!({"maxAge": "0"})), &["maxAge must be at least 1s"][..], "maxAge 0 without unit"),
        (retention(json!({"maxAge": "1.5h"})), &["spec.retention.maxAge", "should match"][..], "fractional maxAge"),
        (retention(json!({"maxAge": "30y"})), &["spec.retention.maxAge", "should match"][..], "unknown unit"),
        (retention(json!({"maxAge": "-5d"})), &["spec.retention.maxAge", "should match"][..], "negative maxAge"),
        (retention(json!({"maxAge": ""})), &["spec.retention.maxAge"][..], "empty maxAge"),
        (
            retention(json!({"maxAge": "999999999999w"})),
            &["maxAge must be at most 100 years"][..],
            "maxAge beyond 100 years",
        ),
        (retention(json!({"maxAge": 30})), &["spec.retention.maxAge", "string"][..], "maxAge as a number"),
        (retention(json!({"maxBytes": "0"})), &["maxBytes must be at least 1 byte"][..], "maxBytes 0"),
        (retention(json!({"maxBytes": "0Gi"})), &["maxBytes must be at least 1 byte"][..], "maxBytes 0Gi"),
        (retention(json!({"maxBytes": "-1"})), &["spec.retention.maxBytes", "should match"][..], "negative"),
        (retention(json!({"maxBytes": "5X"})), &["spec.retention.maxBytes", "should match"][..], "unknown unit"),
        (retention(json!({"maxBytes": "1.5Gi"})), &["spec.retention.maxBytes", "should match"][..], "fraction"),
        (
            json!({"segmentLength": 2, "deletionPolicy": "Destroy"}),
            &["spec.deletionPolicy", "Unsupported value"][..],
            "unknown deletionPolicy",
        ),
    ] {
        assert_invalid(sources.create(&create, &object("VideoSource", &unique("bad"), spec)).await, words, what);
    }
    for (spec, words, what) in [
        (
            json!({"source": "cam", "purgeOnDelete": true, "deletionPolicy": "Retain"}),
            &["purgeOnDelete: true contradicts deletionPolicy: Retain"][..],
            "purgeOnDelete against Retain",
        ),
        (json!({"source": "cam", "deletionPolicy": "retain"}), &["Unsupported value"][..], "lowercase policy"),
        (json!({"source": "cam", "hold": "yes"}), &["spec.hold", "boolean"][..], "hold not a boolean"),
    ] {
        assert_invalid(recordings.create(&create, &object("Recording", &unique("bad"), spec)).await, words, what);
    }

    // What people write passes.
    for retention_spec in [
        json!({"maxAge": "30d", "maxBytes": "500Gi"}),
        json!({"maxAge": "3600"}),
        json!({"maxAge": "2w", "maxBytes": "2TB"}),
        json!({"maxBytes": "750M"}),
        json!({"maxAge": "36600d"}),
    ] {
        let spec = json!({"segmentLength": 2, "deletionPolicy": "Delete", "retention": retention_spec});
        sources.create(&create, &object("VideoSource", &unique("ok"), spec.clone())).await.unwrap_or_else(|err| {
            panic!("{spec} refused: {err}");
        });
    }
    for spec in [
        json!({"source": "cam", "deletionPolicy": "Retain", "hold": true}),
        json!({"source": "cam", "purgeOnDelete": true}),
        json!({"source": "cam", "purgeOnDelete": true, "deletionPolicy": "Delete"}),
    ] {
        recordings.create(&create, &object("Recording", &unique("ok"), spec.clone())).await.unwrap_or_else(|err| {
            panic!("{spec} refused: {err}");
        });
    }
    // The policy and the hold may change at any time; a contradiction may not be introduced later either.
    let rec = unique("rec");
    recordings.create(&create, &object("Recording", &rec, json!({"source": "cam"}))).await.expect("valid");
    let merge = |spec: Value| Patch::Merge(json!({"spec": spec}));
    recordings
        .patch(&rec, &PatchParams::default(), &merge(json!({"deletionPolicy": "Delete", "hold": true})))
        .await
        .expect("policy and hold change");
    recordings
        .patch(&rec, &PatchParams::default(), &merge(json!({"deletionPolicy": "Retain", "hold": false})))
        .await
        .expect("and back");
    assert_invalid(
        recordings.patch(&rec, &PatchParams::default(), &merge(json!({"purgeOnDelete": true}))).await,
        &["purgeOnDelete: true contradicts deletionPolicy: Retain"],
        "purgeOnDelete added against Retain",
    );

    ns.delete().await;
}
