//! The identity of a recorded segment, decided once, at the edge.
//!
//! An encoder that restarts counts from `index0.ts` again, so a segment's name says nothing about which bytes it
//! holds. The edge gives every segment it accepts a [`SegmentId`]: the source, the *run* (a ULID the edge draws
//! whenever it sees the encoder start over) and the sequence number within that run. The id names the object in
//! the store (so no upload ever overwrites another segment's bytes) and is the idempotency key of the control
//! node's segment index (a redelivered report links the same row, never a second one).

use std::fmt;

use serde::{Deserialize, Serialize};
use ulid::Ulid;
use uuid::Uuid;

/// Source, encoder run and sequence number: unique for every segment an edge ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentId {
    pub source: Uuid,
    /// Drawn by the edge when the encoder (re)starts; ULIDs sort by creation time, so runs sort in order.
    pub run: Ulid,
    /// The segment's media sequence number within its run.
    pub seq: u64,
}

impl SegmentId {
    /// `{prefix}/{source_id}/{run}/{seq:012}.ts`: unique per segment and listed in recording order.
    ///
    /// Recordings made before segment ids existed keep their `{prefix}/{source_id}/{segment_name}` keys: the
    /// control node stores every segment's key, so those still play.
    pub fn object_key(&self, prefix: &str) -> String {
        object_key(prefix, self.source, &format!("{}/{:012}.ts", self.run, self.seq))
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.run, self.seq)
    }
}

/// `{prefix}/{source_id}/{rest}`, with an empty prefix meaning none.
pub fn object_key(prefix: &str, source_id: Uuid, rest: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { format!("{source_id}/{rest}") } else { format!("{prefix}/{source_id}/{rest}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_per_run_and_sort_in_order() {
        let source = Uuid::nil();
        let run = Ulid::from_parts(1, 7);
        let later = Ulid::from_parts(2, 0);
        let a = SegmentId { source, run, seq: 9 }.object_key("/recordings/");
        let b = SegmentId { source, run, seq: 10 }.object_key("recordings");
        let c = SegmentId { source, run: later, seq: 0 }.object_key("recordings");
        assert_eq!(a, format!("recordings/{source}/{run}/000000000009.ts"));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(SegmentId { source, run, seq: 1 }.object_key(""), format!("{source}/{run}/000000000001.ts"));
    }
}
