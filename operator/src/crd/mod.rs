//! The custom resources users apply: `VideoSource` and `Recording` in `livemix.io/v1alpha1`.
//!
//! The Rust types are the source of truth; `crdgen` renders them into `crds/*.yaml`.

pub mod condition;
pub mod lifecycle;
mod recording;
mod video_source;

pub use lifecycle::{DeletionPolicy, RetentionSpec};
pub use recording::{Recording, RecordingCoverage, RecordingSpec, RecordingStatus};
pub use video_source::{RecordingMode, VideoSource, VideoSourceSpec, VideoSourceStatus};

/// API group of every LiveMix custom resource.
pub const GROUP: &str = "livemix.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of LiveMix custom resources.
pub const API_VERSION: &str = "livemix.io/v1alpha1";

/// Schema of a list of standard conditions: a list-map keyed by `type`, so server-side apply merges entries
/// per condition type instead of replacing the whole list.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), "map".into());
    object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    object.insert(
        "description".into(),
        "Standard conditions; `Ready` tells whether the resource is in step with the control node.".into(),
    );
    schema
}
