//! The recordings' lifecycle in the database: deletes that keep shared segments, retention, the durable queue of
//! object deletions, storage accounting, and the lock that lets one replica at a time carry deletions out.
//!
//! Written once for both databases with `on_tx!` and `on_pool!` ([`super::dialect`]). Every time is bound as
//! seconds since the epoch, so no text format is compared.
//!
//! The rule that keeps evidence safe: a segment row lives while a recording refers to it. The transaction that
//! removes its last reference also deletes the row and records the object's deletion in `object_deletions`, so a
//! crash at any point leaves either the reference or the recorded intent, never an object nobody will delete nor
//! a deleted object a recording still lists.

use chrono::{DateTime, Utc};
use livemix_common::{
    management_api::{Deletion, RecordingsPolicy, RetentionReport},
    model::{Recording, Retention, Source},
};
// Dynamic SQL here only ever interpolates this module's constants and dialect fragments, never input.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{
    Db, DbError, DbResult,
    dialect::{Dialect, epoch},
    json, not_found,
};

/// Why an object is deleted: the label of `objects_deleted_total` and of every deletion's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeletionReason {
    /// A user deleted the recording.
    User,
    /// A user deleted the source with `recordings=delete`.
    Source,
    /// Older than the retention age.
    Retention,
    /// The source's storage cap.
    Cap,
    /// No segment refers to the object (found by garbage collection).
    Orphan,
}

impl DeletionReason {
    pub const ALL: [Self; 5] = [Self::User, Self::Source, Self::Retention, Self::Cap, Self::Orphan];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Source => "source",
            Self::Retention => "retention",
            Self::Cap => "cap",
            Self::Orphan => "orphan",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// Segments of recording `$1` that no other recording refers to.
const SOLELY_OF_RECORDING: &str = "SELECT rs.segment FROM recording_segments rs WHERE rs.recording = $1 \
    AND NOT EXISTS (SELECT 1 FROM recording_segments o WHERE o.segment = rs.segment AND o.recording <> $1)";

/// The segment `s` belongs to a recording on hold.
const HELD: &str = "EXISTS (SELECT 1 FROM recording_segments hr JOIN recordings h ON h.id = hr.recording \
    WHERE hr.segment = s.id AND h.hold)";

/// Why deleting source `name` with `recordings` recordings (`held` on hold) under `policy` must be refused, if it
/// must: a source with recordings needs a policy, and `Delete` never deletes a held recording.
pub fn source_delete_refusal(
    name: &str,
    recordings: usize,
    held: usize,
    policy: Option<RecordingsPolicy>,
) -> Option<String> {
    match policy {
        None if recordings > 0 => Some(format!(
            "source {name:?} has {recordings} recording(s); pass ?recordings=retain to keep them (they stay listable \
             and playable) or ?recordings=delete to delete them and their objects"
        )),
        Some(RecordingsPolicy::Delete) if held > 0 => Some(format!(
            "{held} of the {recordings} recording(s) of source {name:?} are on hold; lift the holds or pass \
             ?recordings=retain"
        )),
        _ => None,
    }
}

/// The source's stored bytes and its own cap (`$1` the source), optionally locking its usage row.
fn usage_and_cap(d: Dialect, lock: bool) -> String {
    format!(
        "SELECT u.bytes, s.retention_max_bytes FROM storage_usage u LEFT JOIN sources s ON s.id = u.source \
         WHERE u.source = $1{}",
        if lock { d.lock("u") } else { String::new() }
    )
}

/// Whether a source with `stored` (bytes, own cap) is over its cap (its own, else `default_max`).
fn over_cap(stored: Option<(i64, Option<i64>)>, default_max: Option<i64>) -> bool {
    stored.is_some_and(|(bytes, own)| own.or(default_max).is_some_and(|max| bytes > max))
}

/// Why deleting recording `id` is refused while it is on hold.
pub fn hold_refusal(id: &str) -> String {
    format!("recording {id} is on hold; lift the hold (PUT /v1/recording/{id}/hold) before deleting it")
}

/// A source with recorded segments, and its own retention (none once the source row is gone).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSource {
    pub source: Uuid,
    pub bytes: i64,
    pub segments: i64,
    pub own: Retention,
    /// The source row is gone (recordings retained).
    pub deleted: bool,
}

/// An object deletion that is due.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDeletion {
    pub key: String,
    pub reason: DeletionReason,
    pub attempts: i32,
}

/// Bytes and segments a recording keeps, and when its newest one ended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordingUsage {
    pub bytes: i64,
    pub segments: i64,
    pub newest_end: Option<DateTime<Utc>>,
}

/// What the fleet looks like, for the object-state gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetState {
    pub sources: i64,
    pub streaming: i64,
    pub reachable: i64,
    /// Streaming wanted, but no edge reported lately: nothing of them is live.
    pub streaming_unreachable: i64,
    pub continuous: i64,
    pub recordings_active: i64,
    pub newest_recorded_end: Option<DateTime<Utc>>,
}

/// Work that one replica at a time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Deletions,
    Retention,
}

impl Work {
    /// The PostgreSQL advisory lock key (any fixed number; "LM" and a digit).
    fn lock_key(self) -> i64 {
        match self {
            Self::Deletions => 0x4c4d_0001,
            Self::Retention => 0x4c4d_0002,
        }
    }
}

/// The right to do one [`Work`] until released: a PostgreSQL session advisory lock on a connection of its own (it
/// ends with the connection, so a killed replica's lock is released), or, on SQLite, where one process owns the
/// file, this process's lock.
pub struct Leadership {
    pg: Option<(sqlx::pool::PoolConnection<sqlx::Postgres>, i64)>,
    _local: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Leadership {
    /// Gives the lock back; a connection that cannot unlock is closed, which unlocks too.
    pub async fn release(mut self) {
        if let Some((mut conn, key)) = self.pg.take() {
            let unlocked: Result<bool, _> =
                sqlx::query_scalar("SELECT pg_advisory_unlock($1)").bind(key).fetch_one(&mut *conn).await;
            if !matches!(unlocked, Ok(true)) {
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Dropped without release (a panic, a cancelled task): never hand a locked session back to the pool.
        if let Some((mut conn, _)) = self.pg.take() {
            conn.close_on_drop();
        }
    }
}

/// Deletes the segments `$doomed` (`(id, size)` pairs) in transaction `$tx`: records their objects' deletion
/// with `$reason`, drops the rows (and so their links), and deletes the finished, unheld recordings that this
/// left without a segment. Evaluates to a [`RetentionReport`].
macro_rules! release_segments {
    ($tx:ident, $d:ident, $doomed:expr, $reason:expr) => {{
        let doomed: &[(i64, i64)] = $doomed;
        if doomed.is_empty() {
            RetentionReport::default()
        } else {
            let ids: Vec<i64> = doomed.iter().map(|(id, _)| *id).collect();
            let ids = json(&ids)?;
            let touched =
                format!("SELECT DISTINCT recording FROM recording_segments WHERE {}", $d.in_ints("segment", "$1"));
            let touched: Vec<String> =
                sqlx::query_scalar(AssertSqlSafe(touched)).bind(&ids).fetch_all(&mut *$tx).await?;
            let intents = format!(
                "INSERT INTO object_deletions (key, source, size, reason) \
                 SELECT uri, source, size, $2 FROM segments WHERE {} ON CONFLICT (key) DO NOTHING",
                $d.in_ints("id", "$1")
            );
            sqlx::query(AssertSqlSafe(intents)).bind(&ids).bind($reason.as_str()).execute(&mut *$tx).await?;
            let delete = format!("DELETE FROM segments WHERE {}", $d.in_ints("id", "$1"));
            let segments_deleted =
                sqlx::query(AssertSqlSafe(delete)).bind(&ids).execute(&mut *$tx).await?.rows_affected();
            let emptied = format!(
                "DELETE FROM recordings WHERE {} AND NOT active AND NOT hold \
                 AND NOT EXISTS (SELECT 1 FROM recording_segments rs WHERE rs.recording = recordings.id)",
                $d.in_texts("id", "$1")
            );
            let recordings_deleted =
                sqlx::query(AssertSqlSafe(emptied)).bind(json(&touched)?).execute(&mut *$tx).await?.rows_affected();
            let bytes_deleted = doomed.iter().map(|(_, size)| u64::try_from(*size).unwrap_or(0)).sum();
            RetentionReport { segments_deleted, bytes_deleted, recordings_deleted }
        }
    }};
}

impl Db {
    /// Puts a recording on hold (no automatic deletion, deletes refused) or lifts the hold.
    pub async fn set_hold(&self, id: &str, hold: bool) -> DbResult<Recording> {
        let changed = on_pool!(self, |pool, d| {
            let sql = format!("UPDATE recordings SET hold = $2, updated_at = {} WHERE id = $1", d.now());
            sqlx::query(AssertSqlSafe(sql)).bind(id).bind(hold).execute(pool).await?.rows_affected()
        });
        if changed == 0 {
            return Err(not_found("recording", id));
        }
        self.get_recording(id).await
    }

    /// Sets the source's own retention (validated by the caller); `None` limits follow the default.
    pub async fn set_retention(&self, id: Uuid, retention: Retention) -> DbResult<Source> {
        let changed = on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE sources SET retention_max_age_secs = $2, retention_max_bytes = $3, updated_at = {} \
                 WHERE id = $1",
                d.now()
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(retention.max_age_secs)
                .bind(retention.max_bytes)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            return Err(not_found("source", id));
        }
        self.get_source(id).await
    }

    /// Deletes a recording and records the deletion of every object no other recording needs; returns how many.
    /// A recording on hold is refused (`Conflict`), as is one that is gone (`NotFound`).
    pub async fn delete_recording(&self, id: &str, reason: DeletionReason) -> DbResult<u64> {
        let released = on_tx!(self, |tx, d| {
            let hold: Option<bool> = sqlx::query_scalar("SELECT hold FROM recordings WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match hold {
                None => return Err(not_found("recording", id)),
                Some(true) => return Err(DbError::Conflict(hold_refusal(id))),
                Some(false) => {}
            }
            // Lock the source's usage row, then the recording's segments: deletes of two overlapping recordings
            // are serialised (the second sees that the first no longer refers to the shared ones), and every
            // path that deletes segments locks in this order, so none waits on another in a circle.
            let usage = format!(
                "SELECT u.bytes FROM storage_usage u WHERE u.source = (SELECT source FROM recordings WHERE id = $1){}",
                d.lock("u")
            );
            sqlx::query(AssertSqlSafe(usage)).bind(id).fetch_all(&mut *tx).await?;
            let lock = format!(
                "SELECT s.id FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
                 WHERE rs.recording = $1 ORDER BY s.id{}",
                d.lock("s")
            );
            sqlx::query(AssertSqlSafe(lock)).bind(id).fetch_all(&mut *tx).await?;
            let intents = format!(
                "INSERT INTO object_deletions (key, source, size, reason) \
                 SELECT uri, source, size, $2 FROM segments WHERE id IN ({SOLELY_OF_RECORDING}) \
                 ON CONFLICT (key) DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(intents)).bind(id).bind(reason.as_str()).execute(&mut *tx).await?;
            let delete = format!("DELETE FROM segments WHERE id IN ({SOLELY_OF_RECORDING})");
            let released = sqlx::query(AssertSqlSafe(delete)).bind(id).execute(&mut *tx).await?.rows_affected();
            sqlx::query("DELETE FROM recordings WHERE id = $1").bind(id).execute(&mut *tx).await?;
            released
        });
        Ok(released)
    }

    /// Deletes a source. Its recordings (all stopped by the caller) are kept with `Retain`, deleted with their
    /// objects with `Delete` (refused while one is on hold); without a policy a source that has recordings is
    /// refused (`Conflict`, naming how many).
    pub async fn delete_source(&self, id: Uuid, policy: Option<RecordingsPolicy>) -> DbResult<Deletion> {
        let deletion = on_tx!(self, |tx, d| {
            let lock = format!("SELECT s.name FROM sources s WHERE s.id = $1{}", d.lock("s"));
            let name: Option<String> =
                sqlx::query_scalar(AssertSqlSafe(lock)).bind(id).fetch_optional(&mut *tx).await?;
            let Some(name) = name else { return Err(not_found("source", id)) };
            let usage = format!("SELECT u.bytes FROM storage_usage u WHERE u.source = $1{}", d.lock("u"));
            sqlx::query(AssertSqlSafe(usage)).bind(id).fetch_all(&mut *tx).await?;
            let (recordings, held): (i64, i64) = sqlx::query_as(
                "SELECT count(*), CAST(COALESCE(sum(CASE WHEN hold THEN 1 ELSE 0 END), 0) AS BIGINT) FROM recordings \
                 WHERE source = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let (recordings, held) =
                (usize::try_from(recordings).unwrap_or_default(), usize::try_from(held).unwrap_or_default());
            if let Some(refusal) = source_delete_refusal(&name, recordings, held, policy) {
                return Err(DbError::Conflict(refusal));
            }
            let mut deletion = Deletion::default();
            match policy {
                Some(RecordingsPolicy::Delete) => {
                    // A segment is linked only to recordings of its own source, so all of them go.
                    sqlx::query(
                        "INSERT INTO object_deletions (key, source, size, reason) \
                         SELECT uri, source, size, $2 FROM segments WHERE source = $1 ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(id)
                    .bind(DeletionReason::Source.as_str())
                    .execute(&mut *tx)
                    .await?;
                    deletion.objects_queued = sqlx::query("DELETE FROM segments WHERE source = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    deletion.recordings_deleted = sqlx::query("DELETE FROM recordings WHERE source = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                Some(RecordingsPolicy::Retain) | None => deletion.recordings_retained = recordings as u64,
            }
            sqlx::query("DELETE FROM sources WHERE id = $1").bind(id).execute(&mut *tx).await?;
            deletion
        });
        Ok(deletion)
    }

    /// Sources with recorded segments (deleted sources whose recordings were retained included), with their own
    /// retention.
    pub async fn stored_sources(&self) -> DbResult<Vec<StoredSource>> {
        type Row = (Uuid, i64, i64, Option<i64>, Option<i64>, bool);
        let rows: Vec<Row> = on_pool!(self, |pool, _d| {
            sqlx::query_as(
                "SELECT u.source, u.bytes, u.segments, s.retention_max_age_secs, s.retention_max_bytes, \
                     s.id IS NULL FROM storage_usage u LEFT JOIN sources s ON s.id = u.source \
                 WHERE u.segments > 0 ORDER BY u.source",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(source, bytes, segments, max_age_secs, max_bytes, deleted)| StoredSource {
                source,
                bytes,
                segments,
                own: Retention { max_age_secs, max_bytes },
                deleted,
            })
            .collect())
    }

    /// Deletes up to `limit` of the source's oldest segments that ended before `cutoff` and belong to no held
    /// recording. One batch: callers repeat until it deletes nothing.
    pub async fn expire_segments(&self, source: Uuid, cutoff: DateTime<Utc>, limit: i64) -> DbResult<RetentionReport> {
        let report = on_tx!(self, |tx, d| {
            let usage = format!("SELECT u.bytes FROM storage_usage u WHERE u.source = $1{}", d.lock("u"));
            sqlx::query(AssertSqlSafe(usage)).bind(source).fetch_all(&mut *tx).await?;
            let select = format!(
                "SELECT s.id, s.size FROM segments s WHERE s.source = $1 AND {} < $2 AND NOT {HELD} \
                 ORDER BY s.end_ts, s.id LIMIT $3",
                d.secs("s.end_ts")
            );
            let doomed: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(select))
                .bind(source)
                .bind(epoch(cutoff))
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            release_segments!(tx, d, &doomed, DeletionReason::Retention)
        });
        Ok(report)
    }

    /// Deletes the source's oldest segments (of no held recording) until it stores no more than its cap: its own
    /// `retention_max_bytes`, else `default_max`; at most `limit` of them. One batch: callers repeat until it
    /// deletes nothing.
    pub async fn cap_segments(&self, source: Uuid, default_max: Option<i64>, limit: i64) -> DbResult<RetentionReport> {
        // Most sources are within their cap (or have none): one plain read says so, without a transaction. This
        // runs for every recorded segment the inbox stores.
        let look: Option<(i64, Option<i64>)> = on_pool!(self, |pool, d| {
            sqlx::query_as(AssertSqlSafe(usage_and_cap(d, false))).bind(source).fetch_optional(pool).await?
        });
        if !over_cap(look, default_max) {
            return Ok(RetentionReport::default());
        }
        let report = on_tx!(self, |tx, d| {
            // The usage row serialises everything that deletes the source's segments (see `delete_recording`).
            let stored: Option<(i64, Option<i64>)> =
                sqlx::query_as(AssertSqlSafe(usage_and_cap(d, true))).bind(source).fetch_optional(&mut *tx).await?;
            let Some((bytes, own)) = stored else { return Ok(RetentionReport::default()) };
            let Some(max_bytes) = own.or(default_max) else { return Ok(RetentionReport::default()) };
            let excess = bytes.saturating_sub(max_bytes);
            if excess <= 0 {
                return Ok(RetentionReport::default());
            }
            let select = format!(
                "SELECT s.id, s.size FROM segments s WHERE s.source = $1 AND NOT {HELD} ORDER BY s.end_ts, s.id LIMIT $2"
            );
            let oldest: Vec<(i64, i64)> =
                sqlx::query_as(AssertSqlSafe(select)).bind(source).bind(limit).fetch_all(&mut *tx).await?;
            let mut freed = 0i64;
            let doomed: Vec<(i64, i64)> = oldest
                .into_iter()
                .take_while(|(_, size)| {
                    let more = freed < excess;
                    freed = freed.saturating_add(*size);
                    more
                })
                .collect();
            release_segments!(tx, d, &doomed, DeletionReason::Cap)
        });
        Ok(report)
    }

    /// Object deletions due now, oldest first.
    pub async fn due_deletions(&self, limit: i64) -> DbResult<Vec<DueDeletion>> {
        let rows: Vec<(String, String, i32)> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT key, reason, attempts FROM object_deletions WHERE {} <= $1 ORDER BY not_before, key LIMIT $2",
                d.secs("not_before")
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(epoch(Utc::now())).bind(limit).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(key, reason, attempts)| DueDeletion {
                key,
                reason: DeletionReason::parse(&reason).unwrap_or(DeletionReason::User),
                attempts,
            })
            .collect())
    }

    /// Which of `keys` a segment refers to again (a redelivered report brought it back): never delete those.
    pub async fn referenced_keys(&self, keys: &[String]) -> DbResult<Vec<String>> {
        let keys = json(keys)?;
        Ok(on_pool!(self, |pool, d| {
            // Bytewise, so PostgreSQL's `segments_uri` index (collation "C") serves the lookup.
            let sql = format!("SELECT uri FROM segments WHERE {}", d.in_texts(&d.bytewise("uri"), "$1"));
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(&keys).fetch_all(pool).await?
        }))
    }

    /// Forgets deletions that are done (or cancelled).
    pub async fn finish_deletions(&self, keys: &[String]) -> DbResult<u64> {
        let keys = json(keys)?;
        Ok(on_pool!(self, |pool, d| {
            let sql = format!("DELETE FROM object_deletions WHERE {}", d.in_texts("key", "$1"));
            sqlx::query(AssertSqlSafe(sql)).bind(&keys).execute(pool).await?.rows_affected()
        }))
    }

    /// Tries a deletion again at `not_before`, remembering why it failed.
    pub async fn defer_deletion(&self, key: &str, error: &str, not_before: DateTime<Utc>) -> DbResult<()> {
        on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2, not_before = {} WHERE key = $1",
                d.time("$3")
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(key)
                .bind(error)
                .bind(epoch(not_before))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Records the deletion of objects no segment refers to (garbage collection); returns how many were new.
    pub async fn queue_orphans(&self, objects: &[(String, i64)]) -> DbResult<u64> {
        let queued = on_tx!(self, |tx, d| {
            let mut queued = 0;
            let sql = format!(
                "INSERT INTO object_deletions (key, size, reason) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM segments WHERE {} = $1) ON CONFLICT (key) DO NOTHING",
                d.bytewise("uri")
            );
            for (key, size) in objects {
                queued += sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(key)
                    .bind(size)
                    .bind(DeletionReason::Orphan.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            queued
        });
        Ok(queued)
    }

    /// Which of `keys` already wait for deletion.
    pub async fn pending_keys(&self, keys: &[String]) -> DbResult<Vec<String>> {
        let keys = json(keys)?;
        Ok(on_pool!(self, |pool, d| {
            let sql = format!("SELECT key FROM object_deletions WHERE {}", d.in_texts("key", "$1"));
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(&keys).fetch_all(pool).await?
        }))
    }

    /// Up to `limit` object keys of indexed segments after `after`, in the byte order object stores list keys in.
    pub async fn segment_keys_after(&self, after: &str, limit: i64) -> DbResult<Vec<String>> {
        Ok(on_pool!(self, |pool, d| {
            let uri = d.bytewise("uri");
            let sql = format!("SELECT uri FROM segments WHERE {uri} > $1 ORDER BY {uri} LIMIT $2");
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Bytes and segments stored for a source (also after it was deleted with its recordings retained).
    pub async fn source_usage(&self, source: Uuid) -> DbResult<(i64, i64)> {
        let usage: Option<(i64, i64)> = on_pool!(self, |pool, _d| {
            sqlx::query_as("SELECT bytes, segments FROM storage_usage WHERE source = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?
        });
        Ok(usage.unwrap_or_default())
    }

    /// Bytes and segments a recording refers to (shared segments count for each recording).
    pub async fn recording_usage(&self, id: &str) -> DbResult<RecordingUsage> {
        let (bytes, segments, newest_end): (i64, i64, Option<f64>) = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT CAST(COALESCE(sum(s.size), 0) AS BIGINT), count(s.id), max({}) FROM recording_segments rs \
                 JOIN segments s ON s.id = rs.segment WHERE rs.recording = $1",
                d.secs("s.end_ts")
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_one(pool).await?
        });
        let newest_end = newest_end.and_then(|secs| DateTime::from_timestamp_millis((secs * 1000.0) as i64));
        Ok(RecordingUsage { bytes, segments, newest_end })
    }

    /// Everything indexed, and the deletions not yet carried out.
    pub async fn storage_totals(&self) -> DbResult<(i64, i64, i64)> {
        Ok(on_pool!(self, |pool, _d| {
            sqlx::query_as(
                "SELECT CAST(COALESCE((SELECT sum(bytes) FROM storage_usage), 0) AS BIGINT), \
                     CAST(COALESCE((SELECT sum(segments) FROM storage_usage), 0) AS BIGINT), \
                     (SELECT count(*) FROM object_deletions)",
            )
            .fetch_one(pool)
            .await?
        }))
    }

    /// Counts of sources by state and of active recordings, and the end of the newest recorded segment among the
    /// last thousand indexed, read through the primary key (a `max` over every segment of every source would scan
    /// the table, on every replica, every tick).
    pub async fn fleet_state(&self) -> DbResult<FleetState> {
        type Row = (i64, i64, i64, i64, i64, i64, Option<f64>);
        let reachable_secs = self.reachable_secs();
        let row: Row = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT (SELECT count(*) FROM sources), \
                     (SELECT count(*) FROM sources WHERE streaming), \
                     (SELECT count(*) FROM sources WHERE {reachable}), \
                     (SELECT count(*) FROM sources WHERE streaming AND NOT COALESCE({reachable}, false)), \
                     (SELECT count(*) FROM sources WHERE recording_mode = 'continuous'), \
                     (SELECT count(*) FROM recordings WHERE active), \
                     (SELECT max({newest}) FROM (SELECT end_ts FROM segments ORDER BY id DESC LIMIT 1000) recent)",
                reachable = d.ago("last_seen", ">", "$1"),
                newest = d.secs("end_ts")
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(reachable_secs).fetch_one(pool).await?
        });
        let (sources, streaming, reachable, streaming_unreachable, continuous, recordings_active, newest) = row;
        Ok(FleetState {
            sources,
            streaming,
            reachable,
            streaming_unreachable,
            continuous,
            recordings_active,
            newest_recorded_end: newest.and_then(|secs| DateTime::from_timestamp_millis((secs * 1000.0) as i64)),
        })
    }

    /// Takes the lock of `work` if no other replica holds it.
    pub async fn try_lead(&self, work: Work) -> DbResult<Option<Leadership>> {
        match self {
            Db::Postgres(db) => {
                let mut conn = db.pool().acquire().await?;
                let key = work.lock_key();
                let locked: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *conn).await?;
                Ok(locked.then(|| Leadership { pg: Some((conn, key)), _local: None }))
            }
            Db::Sqlite(db) => {
                let guard = db.local_lock(work).try_lock_owned().ok();
                Ok(guard.map(|guard| Leadership { pg: None, _local: Some(guard) }))
            }
        }
    }
}
