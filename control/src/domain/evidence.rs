//! Proof of what was recorded: a recording's manifest (every segment's key, size and SHA-256, the hashes the
//! edges took when they spooled the bytes, signed with the playback key when one is set) and its verification
//! (every object read back from the store and hashed again).

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use hmac::{KeyInit, Mac};
use livemix_common::{
    digest::{hex, sha256_hex},
    management_api::{Manifest, ManifestEntry, Verification, VerifyProblem},
    model::VerificationSummary,
    store::{SharedStore, StoreError},
};

use super::{
    Result,
    recordings::{bounded_segments, check_id},
};
use crate::{auth::Secret, db::Db, playlist};

/// Objects read back at once by a verification.
const VERIFY_CONCURRENCY: usize = 8;

#[derive(Clone)]
pub struct Evidence {
    db: Db,
    store: SharedStore,
    signing_key: Option<Secret>,
    /// Most segments one manifest or verification covers (see [`super::recordings::bounded_segments`]).
    max_segments: i64,
}

impl Evidence {
    pub fn new(db: Db, store: SharedStore, signing_key: Option<Secret>, max_segments: i64) -> Self {
        Self { db, store, signing_key, max_segments }
    }

    /// The recording's manifest, in playback order (the order of its playlist and its `export.ts`).
    pub async fn manifest(&self, id: &str) -> Result<Manifest> {
        let recording = self.db.get_recording(check_id(id)?).await?;
        let segments = bounded_segments(&self.db, &recording, self.max_segments).await?;
        let mut offset = 0i64;
        let entries = segments
            .iter()
            .map(|s| {
                let entry = ManifestEntry {
                    name: playlist::served_name(s),
                    key: s.uri.clone(),
                    start_ts: s.start_ts,
                    end_ts: s.end_ts,
                    size: s.size,
                    offset,
                    sha256: s.sha256.clone(),
                };
                offset = offset.saturating_add(s.size);
                entry
            })
            .collect();
        let mut manifest = Manifest {
            version: Manifest::VERSION.to_owned(),
            recording: recording.id,
            source: recording.source,
            source_name: recording.source_name,
            generated_at: Utc::now(),
            total_bytes: offset,
            segments: entries,
            signature: None,
        };
        manifest.signature =
            self.signing_key.as_ref().map(|key| sign(key.expose().as_bytes(), &manifest.signed_text()));
        Ok(manifest)
    }

    /// Reads every object of the recording back, compares it with what was recorded, and keeps the outcome
    /// with the recording. A store that fails (not a missing object) fails the verification: nothing is
    /// reported as tampered with that was not read.
    #[tracing::instrument(skip(self))]
    pub async fn verify(&self, id: &str) -> Result<Verification> {
        let recording = self.db.get_recording(check_id(id)?).await?;
        let segments = bounded_segments(&self.db, &recording, self.max_segments).await?;
        let wanted: Vec<Recorded> =
            segments.iter().map(|s| Recorded { key: s.uri.clone(), size: s.size, sha256: s.sha256.clone() }).collect();
        let store = self.store.clone();
        let checks: Vec<Check> = futures::stream::iter(wanted)
            .map(move |recorded| check(store.clone(), recorded))
            .buffered(VERIFY_CONCURRENCY)
            .try_collect()
            .await
            .map_err(|err| crate::segments::LoadError::Store(std::sync::Arc::new(err)))?;
        let mut verification = Verification {
            recording: recording.id.clone(),
            at: Utc::now(),
            checked: segments.len() as u64,
            ok: 0,
            unhashed: segments.iter().filter(|s| s.sha256.is_none()).count() as u64,
            mismatched: Vec::new(),
            missing: Vec::new(),
        };
        for (segment, check) in segments.iter().zip(checks) {
            let problem = |found: Option<(i64, String)>| VerifyProblem {
                name: playlist::served_name(segment),
                key: segment.uri.clone(),
                size: segment.size,
                sha256: segment.sha256.clone(),
                found_size: found.as_ref().map(|(size, _)| *size),
                found_sha256: found.map(|(_, hash)| hash),
            };
            match check {
                Check::Ok => verification.ok += 1,
                Check::Missing => verification.missing.push(problem(None)),
                Check::Mismatch { size, sha256 } => verification.mismatched.push(problem(Some((size, sha256)))),
            }
        }
        let summary = VerificationSummary {
            at: verification.at,
            segments: i64::try_from(verification.checked).unwrap_or(i64::MAX),
            mismatched: verification.mismatched.len() as i64,
            missing: verification.missing.len() as i64,
        };
        self.db.record_verification(&recording.id, &summary).await?;
        if summary.passed() {
            tracing::info!(recording = %recording.id, segments = summary.segments, "recording verified");
        } else {
            tracing::warn!(recording = %recording.id, segments = summary.segments, mismatched = summary.mismatched, missing = summary.missing, "recording verification found problems");
        }
        Ok(verification)
    }
}

/// What the index says an object holds.
struct Recorded {
    key: String,
    size: i64,
    sha256: Option<String>,
}

/// Reads one object back: missing, matching its size and hash (its size only, without a hash), or not.
async fn check(store: SharedStore, recorded: Recorded) -> std::result::Result<Check, StoreError> {
    let data = match store.get(&recorded.key).await {
        Ok(data) => data,
        Err(StoreError::NotFound { .. }) => return Ok(Check::Missing),
        Err(err) => return Err(err),
    };
    let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let sha256 = sha256_hex(&data);
    let matches = size == recorded.size && recorded.sha256.as_ref().is_none_or(|hash| *hash == sha256);
    Ok(if matches { Check::Ok } else { Check::Mismatch { size, sha256 } })
}

enum Check {
    Ok,
    Missing,
    Mismatch { size: i64, sha256: String },
}

/// Lowercase hex HMAC-SHA256 of `text` under `key`.
fn sign(key: &[u8], text: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
