//! Standard `metav1.Condition` handling shared by both resources.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// The resource is in step with the control node (or says why not).
pub const READY: &str = "Ready";
/// The source's edge reports to the control node.
pub const REACHABLE: &str = "Reachable";
/// The resource is being deleted and its cleanup in the control node has not finished: says why it waits.
pub const DELETING: &str = "Deleting";
/// The recording's segments were read back from the object store and matched what was recorded (Recording only;
/// `Unknown` until the control node verified it: `POST /v1/recording/{id}/verify`).
pub const VERIFIED: &str = "Verified";
/// The spec uses a deprecated field (e.g. `purgeOnDelete`); says what to use instead.
pub const DEPRECATED: &str = "Deprecated";

/// Longest condition message kept; control-node errors can quote whole replies.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Kubernetes `Time` now, to the second as the API server stores it, so a round trip compares equal.
pub fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// A message as a condition keeps it: at most [`MAX_MESSAGE_CHARS`] characters.
pub fn truncate(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// Sets one condition. `lastTransitionTime` only moves when the status flips, as the API conventions ask, so
/// setting an unchanged condition leaves the list equal and the status write can be skipped.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    set_status(conditions, type_, if status { "True" } else { "False" }, reason, message, generation);
}

/// [`set`] with the status spelled out: `True`, `False` or `Unknown`.
pub fn set_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let message = truncate(message);
    let last_transition_time = match find(conditions, type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now(),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
}

/// Removes the condition of this type, if any.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set(&mut conditions, READY, false, "Waiting", "first", Some(1));
        let old = Time("2020-01-01T00:00:00Z".parse().unwrap());
        conditions[0].last_transition_time = old.clone();

        set(&mut conditions, READY, false, "StillWaiting", "second", Some(2));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, old);
        assert_eq!(conditions[0].reason, "StillWaiting");
        assert_eq!(conditions[0].observed_generation, Some(2));

        set(&mut conditions, READY, true, "Synced", "", Some(2));
        assert_ne!(conditions[0].last_transition_time, old);
        assert!(is_true(&conditions, READY));
        assert!(!is_true(&conditions, REACHABLE));
    }

    #[test]
    fn long_messages_are_cut() {
        let mut conditions = Vec::new();
        set(&mut conditions, READY, false, "Failed", &"x".repeat(5000), None);
        assert_eq!(conditions[0].message.chars().count(), MAX_MESSAGE_CHARS);
    }
}
