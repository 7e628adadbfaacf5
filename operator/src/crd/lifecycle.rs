//! What both resources share about their recordings' lifecycle: what deleting a resource does in the control
//! node, retention limits as people write them, and the annotations that override the operator.

use kube::ResourceExt;
use livemix_common::{
    model::Retention,
    units::{parse_bytes, parse_duration_secs},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation that releases a resource whose cleanup cannot run (the control node is gone, the chart was
/// uninstalled): with `"true"`, the operator removes its finalizer without calling the control node.
pub const SKIP_CLEANUP_ANNOTATION: &str = "livemix.io/skip-cleanup";

/// Annotation that lets a VideoSource take over a control-node source registered by someone else (by hand, by
/// another cluster, by a resource that was deleted with `deletionPolicy: Retain`... ).
pub const ADOPT_ANNOTATION: &str = "livemix.io/adopt";

/// Whether the annotation `key` is set to `"true"` on the object.
pub fn annotated<K: ResourceExt>(obj: &K, key: &str) -> bool {
    obj.annotations().get(key).is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// The owner string a resource's control-node objects carry: `k8s/<namespace>/<name>/<uid>`. The uid part
/// tells a deleted and re-created resource of the same name from the original.
pub fn owner_of<K: ResourceExt>(obj: &K) -> String {
    format!("k8s/{}/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any(), obj.uid().unwrap_or_default())
}

// What happens in the control node when the resource is deleted (Crossplane's convention). Not a doc comment:
// it would replace the fields' own descriptions in the CRD schema.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the recordings in the control node, listable and playable (the default).
    #[default]
    Retain,
    /// Delete them from the control node, and their segments from the object store.
    Delete,
}

impl DeletionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// Longest `maxAge` the schema accepts, in seconds: 100 years, as the control node.
const MAX_AGE_SECS: i64 = Retention::MAX_AGE_SECS;

/// How long the source's recorded segments are kept. A limit left out follows the control node's default
/// (`LIVEMIX_RETENTION_MAX_AGE`, `LIVEMIX_RETENTION_MAX_BYTES`); segments of a recording on hold are never
/// deleted automatically.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Age after which recorded segments are deleted: a whole number and a unit, `s`, `m`, `h`, `d` or `w`
    /// (`30d`, `12h`, `2w`; no unit: seconds), from 1 second to 100 years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 13), regex(pattern = r"^[0-9]{1,12}[smhdw]?$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "!self.matches('^0+[smhdw]?$')",
            "message": "maxAge must be at least 1s"
        },
        {
            "rule": "!self.matches('^[0-9]{1,12}[smhdw]?$') || int(self.find('^[0-9]+')) * (self.endsWith('w') ? 604800 : self.endsWith('d') ? 86400 : self.endsWith('h') ? 3600 : self.endsWith('m') ? 60 : 1) <= 3162240000",
            "message": "maxAge must be at most 100 years (3162240000s)"
        }
    ]))]
    pub max_age: Option<String>,
    /// Storage cap of the source: once its recordings hold more, the oldest segments go first. A string: a
    /// whole number of bytes, or with a decimal (`k`, `M`, `G`, `T`) or binary unit (`Ki`, `Mi`, `Gi`, `Ti`),
    /// optionally followed by `B` (`500Gi`, `2T`, `750MB`); at least 1 byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 24), regex(pattern = r"^[0-9]{1,19}(k|K|M|G|T|Ki|Mi|Gi|Ti)?[Bb]?$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "!self.matches('^0+[A-Za-z]*$')", "message": "maxBytes must be at least 1 byte"}
    ]))]
    pub max_bytes: Option<String>,
}

impl RetentionSpec {
    /// The limits as the control node takes them, or why they are not valid (a value the schema let through:
    /// one too large for 64 bits, or an object stored before the schema checked it).
    pub fn to_retention(&self) -> Result<Retention, String> {
        let max_age_secs = match &self.max_age {
            Some(text) => Some(parse_duration_secs(text).map_err(|err| format!("spec.retention.maxAge: {err}"))?),
            None => None,
        };
        if let Some(age) = max_age_secs
            && age > MAX_AGE_SECS
        {
            return Err(format!("spec.retention.maxAge: {age}s is more than 100 years ({MAX_AGE_SECS}s)"));
        }
        let max_bytes = match &self.max_bytes {
            Some(text) => Some(parse_bytes(text).map_err(|err| format!("spec.retention.maxBytes: {err}"))?),
            None => None,
        };
        Ok(Retention { max_age_secs, max_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(age: Option<&str>, bytes: Option<&str>) -> RetentionSpec {
        RetentionSpec { max_age: age.map(str::to_owned), max_bytes: bytes.map(str::to_owned) }
    }

    #[test]
    fn retention_parses_human_values() {
        assert_eq!(spec(None, None).to_retention(), Ok(Retention::default()));
        assert_eq!(
            spec(Some("30d"), Some("500Gi")).to_retention(),
            Ok(Retention { max_age_secs: Some(30 * 86_400), max_bytes: Some(500 << 30) })
        );
        assert_eq!(spec(Some("90"), None).to_retention().unwrap().max_age_secs, Some(90));
        assert_eq!(spec(None, Some("2TB")).to_retention().unwrap().max_bytes, Some(2_000_000_000_000));
    }

    #[test]
    fn bad_retention_says_which_field() {
        for (age, bytes, field) in [
            (Some("0d"), None, "maxAge"),
            (Some("1.5d"), None, "maxAge"),
            (Some("999999999999w"), None, "maxAge"),
            (None, Some("0"), "maxBytes"),
            (None, Some("9999999999999999999Ti"), "maxBytes"),
            (None, Some("5X"), "maxBytes"),
        ] {
            let err = spec(age, bytes).to_retention().unwrap_err();
            assert!(err.contains(field), "{age:?} {bytes:?}: {err}");
        }
    }

    #[test]
    fn deletion_policy_defaults_to_retain() {
        assert_eq!(DeletionPolicy::default(), DeletionPolicy::Retain);
        assert_eq!(serde_json::to_value(DeletionPolicy::Delete).unwrap(), "Delete");
    }
}
