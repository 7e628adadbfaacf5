//! The SQLite implementation of [`super::Db`]: the embedded database of the standalone `livemix` binary, one
//! file in its data directory.
//!
//! SQLite serialises writers, so what PostgreSQL does in one statement under a row lock is a `BEGIN IMMEDIATE`
//! transaction here: it takes the write lock up front, and nothing another connection writes can slip in
//! between its reads and writes. Only one process may use the file (one control node, no replicas).
//!
//! Times are RFC 3339 text (as sqlx writes them) and always compared through `unixepoch(…, 'subsec')`, never as
//! strings, so times written by sqlx and by SQLite's own clock compare right.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use livemix_common::{
    management_api::NewSource,
    model::{Recording, Segment, SegmentInfo, Source},
};
use sqlx::{
    AssertSqlSafe, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use uuid::Uuid;

use super::{
    DbError, DbResult, LiveAdmission, LiveSegment, LiveSummary, NewLiveSegment, RETRY_WINDOW, SegmentRef, is_gap,
    is_unique_violation, name_conflict, name_taken, not_found,
};

/// SQLite's clock as the text sqlx decodes as a UTC time (and `unixepoch()` reads).
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

/// The columns of a source plus its reachability; `$1` is the staleness delay in seconds.
const SOURCE_COLUMNS: &str = "id, name, segment_length, description, streaming, rr_target, local_time, \
    last_seen, COALESCE(unixepoch(last_seen, 'subsec') > unixepoch('now', 'subsec') - $1, FALSE) AS reachable, \
    owner, retention_max_age_secs, retention_max_bytes, created_at, updated_at, \
    (SELECT edge_id FROM source_edges se WHERE se.source = sources.id) AS edge";

const RECORDING_COLUMNS: &str =
    "id, alias, description, source, start_ts, end_ts, active, hold, source_name, created_at, updated_at";

const SEGMENT_COLUMNS: &str =
    "s.id, s.name, s.source, s.run, s.seq, s.discontinuity, s.start_ts, s.end_ts, s.length_ms, s.size, s.uri";

/// The playback order of recorded segments (see [`super::Db::recording_segments`]) over the segments table
/// aliased `t`; SQLite compares text bytewise by default, as PostgreSQL's `COLLATE "C"` does.
fn playback_order(t: &str) -> String {
    format!(
        "COALESCE({t}.run, ''), \
         CASE WHEN {t}.run IS NULL THEN unixepoch({t}.start_ts, 'subsec') END, \
         {t}.seq, unixepoch({t}.start_ts, 'subsec'), {t}.id"
    )
}

#[derive(Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    reachable_secs: f64,
    /// One process owns the file: the locks of [`super::lifecycle::Work`] are this process's.
    locks: std::sync::Arc<[std::sync::Arc<tokio::sync::Mutex<()>>; 2]>,
}

impl SqliteDb {
    /// Opens (creating when the URL says `mode=rwc`) the database at `url`, `sqlite://path?mode=rwc`, and
    /// applies the migrations under `control/migrations-sqlite/`.
    pub async fn connect(url: &str, max_connections: u32, reachable_within: Duration) -> DbResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?;
        Self::open(options, max_connections, reachable_within).await
    }

    /// Opens (creating it if missing) the database file at `path`.
    pub async fn open_file(path: &std::path::Path, reachable_within: Duration) -> DbResult<Self> {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        Self::open(options, 4, reachable_within).await
    }

    async fn open(options: SqliteConnectOptions, max_connections: u32, reachable_within: Duration) -> DbResult<Self> {
        // WAL: readers never wait for the writer; writers wait (up to the busy timeout) for each other.
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations-sqlite").run(&pool).await?;
        Ok(Self { pool, reachable_secs: reachable_within.as_secs_f64(), locks: Default::default() })
    }

    /// The pool, for tests that read the catalog.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// This process's lock of one kind of lifecycle work.
    pub(super) fn local_lock(&self, work: super::lifecycle::Work) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.locks[work as usize].clone()
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    pub(super) async fn write(&self) -> DbResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn live_summary(&self, source: Uuid, playlist_len: i64, window: Duration) -> DbResult<LiveSummary> {
        let (recent, last_segment_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE unixepoch(received_at, 'subsec') > unixepoch('now', 'subsec') - $2), \
                 max(received_at) \
             FROM live_segments WHERE source = $1",
        )
        .bind(source)
        .bind(window.as_secs_f64())
        .fetch_one(&self.pool)
        .await?;
        Ok(LiveSummary { segments: recent.min(playlist_len), last_segment_at })
    }

    // ---- sources ----

    pub async fn create_source(&self, new: &NewSource) -> DbResult<Source> {
        let sql = format!(
            "INSERT INTO sources (id, name, segment_length, description, owner, retention_max_age_secs, \
                 retention_max_bytes) VALUES ($2, $3, $4, $5, $6, $7, $8) \
             RETURNING {SOURCE_COLUMNS}"
        );
        let retention = new.retention.unwrap_or_default();
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(Uuid::new_v4())
            .bind(&new.name)
            .bind(new.segment_len)
            .bind(new.description.as_deref().unwrap_or_default())
            .bind(new.owner.as_deref())
            .bind(retention.max_age_secs)
            .bind(retention.max_bytes)
            .fetch_one(&self.pool)
            .await
            .map_err(|err| name_conflict(err, &new.name))
    }

    pub async fn list_sources(&self, name: Option<&str>) -> DbResult<Vec<Source>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE ($2 IS NULL OR name = $2) ORDER BY name");
        Ok(sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(name)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_source(&self, id: Uuid) -> DbResult<Source> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = $2");
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    /// Sets one column; `column` is always a literal of this module, never input.
    async fn update_source<T>(&self, id: Uuid, column: &str, value: T) -> DbResult<Source>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + 'static,
    {
        let sql =
            format!("UPDATE sources SET {column} = $3, updated_at = {NOW} WHERE id = $2 RETURNING {SOURCE_COLUMNS}");
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    pub async fn rename_source(&self, id: Uuid, new_name: &str) -> DbResult<Source> {
        self.update_source(id, "name", new_name.to_owned()).await.map_err(|err| match err {
            DbError::Rejected { reason: "unique", .. } => name_taken(new_name),
            other => other,
        })
    }

    pub async fn set_description(&self, id: Uuid, description: &str) -> DbResult<Source> {
        self.update_source(id, "description", description.to_owned()).await
    }

    pub async fn set_streaming(&self, id: Uuid, streaming: bool) -> DbResult<Source> {
        self.update_source(id, "streaming", streaming).await
    }

    pub async fn record_status(
        &self,
        id: Uuid,
        rr_target: &str,
        local_time: Option<DateTime<Utc>>,
    ) -> DbResult<Source> {
        let sql = format!(
            "UPDATE sources SET rr_target = $3, local_time = $4, last_seen = {NOW}, updated_at = {NOW} \
             WHERE id = $2 RETURNING {SOURCE_COLUMNS}"
        );
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .bind(rr_target)
            .bind(local_time)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    // ---- recordings ----

    pub async fn create_recording(
        &self,
        source: Uuid,
        alias: Option<&str>,
        description: Option<&str>,
        start_ts: DateTime<Utc>,
    ) -> DbResult<Recording> {
        let sql = format!(
            "INSERT INTO recordings (id, alias, description, source, start_ts, source_name) \
             SELECT $1, $2, $3, $4, $5, name FROM sources WHERE id = $4 \
             RETURNING {RECORDING_COLUMNS}"
        );
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(ulid::Ulid::new().to_string())
            .bind(alias)
            .bind(description)
            .bind(source)
            .bind(start_ts)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    DbError::Conflict(format!("a recording with alias {:?} already exists", alias.unwrap_or("")))
                } else {
                    err.into()
                }
            })?
            .ok_or_else(|| not_found("source", source))
    }

    pub async fn list_recordings(&self, source: Option<Uuid>, only_active: bool) -> DbResult<Vec<Recording>> {
        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE ($1 IS NULL OR source = $1) \
             AND (NOT $2 OR active) ORDER BY id"
        );
        Ok(sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(source)
            .bind(only_active)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_recording(&self, id: &str) -> DbResult<Recording> {
        let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1");
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("recording", id))
    }

    pub async fn stop_recording(&self, id: &str) -> DbResult<Recording> {
        let sql = format!(
            "UPDATE recordings SET active = FALSE, end_ts = COALESCE(end_ts, {NOW}), updated_at = {NOW} \
             WHERE id = $1 RETURNING {RECORDING_COLUMNS}"
        );
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("recording", id))
    }

    // ---- recorded segments ----

    pub async fn add_recorded_segment(&self, recording_ids: &[String], info: &SegmentInfo) -> DbResult<Vec<String>> {
        // The ids travel as one JSON array, read back by json_each: one statement whatever their number.
        let ids =
            serde_json::to_string(recording_ids).map_err(|err| DbError::Internal(sqlx::Error::Encode(err.into())))?;
        let mut tx = self.write().await?;
        let segment_id: i64 = sqlx::query_scalar(
            "INSERT INTO segments (source, name, run, seq, discontinuity, start_ts, end_ts, length_ms, size, uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (source, uri) DO UPDATE \
             SET size = CASE WHEN segments.run IS NULL THEN excluded.size ELSE segments.size END \
             RETURNING id",
        )
        .bind(info.source)
        .bind(&info.name)
        .bind(info.run.map(|run| run.to_string()))
        .bind(info.seq)
        .bind(info.discontinuity)
        .bind(info.start_ts)
        .bind(info.end_ts)
        .bind(info.length_ms)
        .bind(info.size)
        .bind(&info.uri)
        .fetch_one(&mut *tx)
        .await?;
        let recordings: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM recordings WHERE id IN (SELECT value FROM json_each($1)) AND source = $2 ORDER BY id",
        )
        .bind(&ids)
        .bind(info.source)
        .fetch_all(&mut *tx)
        .await?;
        if recordings.is_empty() {
            // Dropping the transaction rolls the segment row back.
            return Err(not_found("recording", recording_ids.join(",")));
        }
        sqlx::query(
            "INSERT INTO recording_segments (recording, segment) \
             SELECT id, $2 FROM recordings WHERE id IN (SELECT value FROM json_each($1)) AND source = $3 \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(segment_id)
        .bind(info.source)
        .execute(&mut *tx)
        .await?;
        // A report delivered again after the object's last recording was deleted brings the segment back to a
        // recording that still wants it: its deletion, if not yet carried out, must not happen.
        sqlx::query("DELETE FROM object_deletions WHERE key = $1").bind(&info.uri).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(recordings)
    }

    pub async fn recording_segments(&self, recording: &str) -> DbResult<Vec<Segment>> {
        let order = playback_order("s");
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
             WHERE rs.recording = $1 ORDER BY {order}"
        );
        Ok(sqlx::query_as::<_, Segment>(AssertSqlSafe(sql)).bind(recording).fetch_all(&self.pool).await?)
    }

    pub async fn recording_segment_and_next(
        &self,
        recording: &str,
        wanted: SegmentRef<'_>,
        following: i64,
    ) -> DbResult<Vec<Segment>> {
        // The same row-value comparison as PostgreSQL's, except that NULL (a run's time key) never compares:
        // within a run the key is the sequence number, so it is replaced by a constant there.
        let key = |t: &str| {
            format!(
                "COALESCE({t}.run, ''), \
                 COALESCE(CASE WHEN {t}.run IS NULL THEN unixepoch({t}.start_ts, 'subsec') END, 0), \
                 {t}.seq, unixepoch({t}.start_ts, 'subsec'), {t}.id"
            )
        };
        let (order, key_s, key_t) = (playback_order("s"), key("s"), key("t"));
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
             WHERE rs.recording = $1 AND ({key_s}) >= ( \
                 SELECT {key_t} FROM segments t JOIN recording_segments rt ON rt.segment = t.id \
                 WHERE rt.recording = $1 \
                   AND (($2 IS NULL AND t.run IS NULL AND t.name = $3) OR (t.run = $2 AND t.seq = $4)) \
                 ORDER BY {key_t} LIMIT 1) \
             ORDER BY {order} LIMIT $5"
        );
        let (run, name, seq) = match wanted {
            SegmentRef::Legacy(name) => (None, name, 0),
            SegmentRef::Run { run, seq } => (Some(run.to_string()), "", seq),
        };
        Ok(sqlx::query_as::<_, Segment>(AssertSqlSafe(sql))
            .bind(recording)
            .bind(run)
            .bind(name)
            .bind(seq)
            .bind(following.saturating_add(1))
            .fetch_all(&self.pool)
            .await?)
    }

    // ---- live segments ----

    /// PostgreSQL's one statement as one write transaction: the write lock serialises numbering as the row lock
    /// does there.
    pub async fn add_live_segment(&self, seg: &NewLiveSegment, gap: Duration) -> DbResult<LiveAdmission> {
        let retry_secs = RETRY_WINDOW.as_secs_f64();
        let mut tx = self.write().await?;
        let (source_name, streaming, segment_length): (String, bool, i32) =
            sqlx::query_as("SELECT name, streaming, segment_length FROM sources WHERE id = $1")
                .bind(seg.source)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found("source", seg.source))?;
        let admission = |segment| LiveAdmission { source_name, streaming, segment_length, segment };
        let retry: Option<LiveSegment> = sqlx::query_as(
            "SELECT media_seq, name, length_ms, discontinuity, disc_seq FROM live_segments \
             WHERE source = $1 AND name = $2 \
               AND unixepoch(received_at, 'subsec') > unixepoch('now', 'subsec') - $3",
        )
        .bind(seg.source)
        .bind(&seg.name)
        .bind(retry_secs)
        .fetch_optional(&mut *tx)
        .await?;
        if retry.is_some() || !streaming {
            // Nothing written: dropping the transaction ends it.
            return Ok(admission(retry));
        }
        let previous: Option<(DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT start_ts, length_ms FROM live_segments WHERE source = $1 AND name <> $2 \
             ORDER BY media_seq DESC LIMIT 1",
        )
        .bind(seg.source)
        .bind(&seg.name)
        .fetch_optional(&mut *tx)
        .await?;
        let discontinuity =
            seg.discontinuity || previous.is_some_and(|(start, length)| is_gap(start, length, seg.start_ts, gap));
        let (media_seq, disc_seq): (i64, i64) = sqlx::query_as(
            "UPDATE sources SET live_media_seq = live_media_seq + 1, live_disc_seq = live_disc_seq + $2 \
             WHERE id = $1 RETURNING live_media_seq, live_disc_seq",
        )
        .bind(seg.source)
        .bind(i64::from(discontinuity))
        .fetch_one(&mut *tx)
        .await?;
        // No retry was found, so a row of the same name is old: an encoder that restarted and reuses names.
        let sql = format!(
            "INSERT INTO live_segments (source, media_seq, name, length_ms, discontinuity, disc_seq, start_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (source, name) DO UPDATE SET media_seq = excluded.media_seq, \
                 length_ms = excluded.length_ms, discontinuity = excluded.discontinuity, \
                 disc_seq = excluded.disc_seq, start_ts = excluded.start_ts, received_at = {NOW} \
             RETURNING media_seq, name, length_ms, discontinuity, disc_seq"
        );
        let segment: LiveSegment = sqlx::query_as(AssertSqlSafe(sql))
            .bind(seg.source)
            .bind(media_seq)
            .bind(&seg.name)
            .bind(seg.length_ms)
            .bind(discontinuity)
            .bind(disc_seq)
            .bind(seg.start_ts)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(admission(Some(segment)))
    }

    pub async fn segment_length(&self, source: Uuid) -> DbResult<i32> {
        sqlx::query_scalar("SELECT segment_length FROM sources WHERE id = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", source))
    }

    pub async fn newest_live_segments(
        &self,
        source: Uuid,
        count: i64,
        max_age: Duration,
    ) -> DbResult<Vec<LiveSegment>> {
        let mut rows = sqlx::query_as::<_, LiveSegment>(
            "SELECT media_seq, name, length_ms, discontinuity, disc_seq FROM live_segments \
             WHERE source = $1 AND unixepoch(received_at, 'subsec') > unixepoch('now', 'subsec') - $3 \
             ORDER BY media_seq DESC LIMIT $2",
        )
        .bind(source)
        .bind(count)
        .bind(max_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    pub async fn prune_live_segments(&self, max_age: Duration) -> DbResult<u64> {
        let done = sqlx::query(
            "DELETE FROM live_segments WHERE unixepoch(received_at, 'subsec') < unixepoch('now', 'subsec') - $1",
        )
        .bind(max_age.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
