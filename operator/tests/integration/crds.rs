//! The CRD YAML in `crds/` is what `crdgen` prints, and the examples fit the types.

use std::{path::PathBuf, process::Command};

use kube::CustomResourceExt;
use livemix_operator::crd::{Recording, VideoSource};
use serde_json::Value;

use crate::support::unique;

fn repo_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(sub)
}

fn yaml_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

const REGENERATE: &str = "regenerate them with `cargo run -p livemix-operator --bin crdgen`";

#[test]
fn crd_files_are_what_crdgen_writes() {
    let out = std::env::temp_dir().join(unique("crdgen"));
    let status = Command::new(env!("CARGO_BIN_EXE_crdgen")).arg("--out-dir").arg(&out).status().expect("run crdgen");
    assert!(status.success(), "crdgen failed");
    let generated = yaml_files(&out);
    let committed = yaml_files(&repo_dir("crds"));
    let names = |files: &[PathBuf]| -> Vec<String> {
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names(&committed), names(&generated), "crds/*.yaml is not the set crdgen writes; {REGENERATE}");
    for file in &generated {
        let name = file.file_name().unwrap().to_string_lossy();
        let want = std::fs::read_to_string(file).expect("generated file");
        let have = std::fs::read_to_string(repo_dir("crds").join(&*name)).expect("committed file");
        assert!(have == want, "crds/{name} differs from what crdgen writes; {REGENERATE}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn crdgen_prints_the_same_crds() {
    let output = Command::new(env!("CARGO_BIN_EXE_crdgen")).arg("--print").output().expect("run crdgen --print");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let files: Vec<String> = ["videosource.yaml", "recording.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(repo_dir("crds").join(f)).expect("CRD file"))
        .collect();
    assert_eq!(printed, files.join("---\n"), "{REGENERATE}");
}

#[test]
fn examples_deserialize_into_the_resource_types() {
    let examples = yaml_files(&repo_dir("crds/examples"));
    assert!(examples.len() >= 2, "examples missing");
    let (mut sources, mut recordings) = (0, 0);
    for path in examples {
        let text = std::fs::read_to_string(&path).expect("example");
        let value: Value = serde_yaml::from_str(&text).expect("YAML");
        let context = |err: serde_json::Error| format!("{}: {err}", path.display());
        match value["kind"].as_str() {
            Some("VideoSource") => {
                let vs: VideoSource = serde_json::from_value(value).map_err(context).unwrap();
                assert!(vs.spec.segment_length >= 1);
                sources += 1;
            }
            Some("Recording") => {
                let rec: Recording = serde_json::from_value(value).map_err(context).unwrap();
                assert!(!rec.spec.source.is_empty());
                recordings += 1;
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    assert!(sources > 0 && recordings > 0, "an example of each kind");
}

fn version_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]
}

#[test]
fn crds_have_what_kubectl_users_rely_on() {
    for (crd, plural, short, columns) in [
        (
            serde_json::to_value(VideoSource::crd()).unwrap(),
            "videosources",
            "vsrc",
            &[
                "Streaming",
                "Reachable",
                "Recording",
                "Ready",
                "Last Seen",
                "ID",
                "Edge",
                "Stored Bytes",
                "Live URL",
                "Age",
            ][..],
        ),
        (
            serde_json::to_value(Recording::crd()).unwrap(),
            "recordings",
            "rec",
            &[
                "Source",
                "Active",
                "Segments",
                "Recorded",
                "Hold",
                "Ready",
                "Start",
                "End",
                "Gaps",
                "Verified",
                "Stored Bytes",
                "Expires",
                "ID",
                "Playlist URL",
                "Age",
            ][..],
        ),
    ] {
        assert_eq!(crd["metadata"]["name"], format!("{plural}.livemix.io"));
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!([short]));
        let version = version_schema(&crd);
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "status subresource");
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, columns);
        let conditions = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
    }
    let vs = serde_json::to_value(VideoSource::crd()).unwrap();
    let segment_length =
        &version_schema(&vs)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["segmentLength"];
    assert_eq!(segment_length["minimum"], 1.0);
    let spec = &version_schema(&vs)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["deletionPolicy"]["enum"], serde_json::json!(["Retain", "Delete"]));
    assert!(spec["deletionPolicy"].get("default").is_none(), "unset means Retain, so purgeOnDelete stays meaningful");
    for limit in ["maxAge", "maxBytes"] {
        let field = &spec["retention"]["properties"][limit];
        assert_eq!(field["type"], "string", "{limit}: a string with a unit");
        assert!(field["pattern"].is_string() && field["x-kubernetes-validations"].is_array(), "{field}");
    }
    // An edge id as the control node takes it (livemix_common::model::validate_edge_id).
    let edge = &spec["edge"];
    assert_eq!(
        (&edge["type"], &edge["minLength"], &edge["maxLength"]),
        (&serde_json::json!("string"), &serde_json::json!(1), &serde_json::json!(128))
    );
    assert_eq!(edge["pattern"], "^[A-Za-z0-9_.-]+$");
    // Optional, so objects stored before it stay valid; unset means onDemand.
    assert_eq!(spec["recording"]["enum"], serde_json::json!(["onDemand", "continuous"]));
    let required = &version_schema(&vs)["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"];
    assert!(!required.as_array().unwrap().iter().any(|r| r == "recording"), "{required}");
    let rec = serde_json::to_value(Recording::crd()).unwrap();
    let status = &version_schema(&rec)["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in ["recordedSeconds", "segments", "gaps"] {
        assert_eq!(status["coverage"]["properties"][field]["type"], "integer", "{field}");
    }
}
