//! The control node's state: sources, recordings, recorded segments and the live segment index.
//!
//! [`Db`] is the one interface the rest of the control node uses. Behind it, PostgreSQL ([`postgres::PgDb`]) is
//! the production database: everything a replica knows lives there (or in the cache and object store), so any
//! number of replicas can serve the same deployment. SQLite ([`sqlite::SqliteDb`]) is the embedded one of the
//! standalone `livemix` binary: one file, one process. Both keep the same tables (`migrations/` and
//! `migrations-sqlite/`, held in step by a test) and answer every method alike; which one runs is chosen by the
//! database URL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use livemix_common::{
    management_api::NewSource,
    model::{Recording, Segment, SegmentInfo, Source},
};
use sqlx::error::ErrorKind;
use uuid::Uuid;

#[macro_use]
pub mod dialect;
pub mod bindings;
pub mod lifecycle;
pub mod live_index;
pub mod postgres;
pub mod sqlite;

pub use postgres::PgDb;
pub use sqlite::SqliteDb;

/// What went wrong in the database, in the terms callers decide on; the API layer turns it into a status once
/// (`crate::api::error`), the inbox into ack-or-retry.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request contradicts existing data (a name already taken); the message is for the client.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or is overloaded (or, for SQLite, busy) right now; the same request may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The data breaks a rule of the schema (a row it refers to was deleted, a check failed): it never will
    /// succeed, however often it is retried. `reason` names the rule for logs and metrics.
    #[error("database rejected the data ({reason}): {source}")]
    Rejected { reason: &'static str, source: sqlx::Error },
    /// Anything else: a bug, or a database in a state this code does not expect.
    #[error("database: {0}")]
    Internal(#[source] sqlx::Error),
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl DbError {
    /// Whether the same operation may succeed later, so a caller that can wait should retry it.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Internal(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        match classify(&err) {
            Class::Unavailable => Self::Unavailable(err),
            Class::Rejected(reason) => Self::Rejected { reason, source: err },
            Class::Internal => Self::Internal(err),
        }
    }
}

enum Class {
    Unavailable,
    Rejected(&'static str),
    Internal,
}

/// Sorts driver errors by what a caller can do about them: constraint kinds alike for both databases, then
/// PostgreSQL's SQLSTATE classes (its manual, appendix A) or SQLite's primary result codes.
fn classify(err: &sqlx::Error) -> Class {
    use sqlx::Error as E;
    match err {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed | E::BeginFailed => {
            Class::Unavailable
        }
        E::Database(db) => match db.kind() {
            ErrorKind::ForeignKeyViolation => Class::Rejected("foreign_key"),
            ErrorKind::CheckViolation => Class::Rejected("check"),
            ErrorKind::NotNullViolation => Class::Rejected("not_null"),
            ErrorKind::UniqueViolation | ErrorKind::ExclusionViolation => Class::Rejected("unique"),
            _ if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                classify_sqlite(db.code().and_then(|code| code.parse().ok()).unwrap_or(0))
            }
            _ => classify_sqlstate(&db.code().unwrap_or_default()),
        },
        _ => Class::Internal,
    }
}

fn classify_sqlstate(code: &str) -> Class {
    match code.get(..2).unwrap_or("") {
        // Data exceptions: a value out of range, a malformed time...
        "22" => Class::Rejected("invalid_value"),
        // Connection exceptions, insufficient resources, operator intervention (shutdown, start-up),
        // serialization failures and deadlocks: all of them pass.
        "08" | "53" | "57" | "40" => Class::Unavailable,
        _ => Class::Internal,
    }
}

/// SQLite reports extended result codes; the low byte is the primary one (<https://sqlite.org/rescode.html>).
fn classify_sqlite(code: i32) -> Class {
    match code & 0xff {
        // BUSY, LOCKED (another writer held on past the busy timeout), IOERR, FULL, CANTOPEN: may pass.
        5 | 6 | 10 | 13 | 14 => Class::Unavailable,
        // TOOBIG, MISMATCH, RANGE: this value never fits.
        18 | 20 | 25 => Class::Rejected("invalid_value"),
        _ => Class::Internal,
    }
}

pub type DbResult<T> = Result<T, DbError>;

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|e| e.is_unique_violation())
}

/// How a recording playlist names one of its segments (see `crate::playlist::RecordedName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRef<'a> {
    /// A segment from before segment ids, by its name (unique per source then).
    Legacy(&'a str),
    /// A segment of an encoder run, by run and sequence number.
    Run { run: ulid::Ulid, seq: i64 },
}

/// A live segment as indexed for the live playlist.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSegment {
    pub media_seq: i64,
    pub name: String,
    pub length_ms: i64,
    pub discontinuity: bool,
    pub disc_seq: i64,
}

/// What a source's live stream looks like now, for people watching over it (the web console).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveSummary {
    /// Segments a player gets in the live playlist now (0: nothing to play).
    pub segments: i64,
    /// When the newest live segment arrived, by the control node's clock; `null` before the first one.
    pub last_segment_at: Option<DateTime<Utc>>,
}

/// How long a repeated live segment name counts as an edge's retry rather than a new segment (the edge's
/// forwarder gives up after 30 s).
const RETRY_WINDOW: Duration = Duration::from_secs(60);

/// A new live segment arriving from an edge.
#[derive(Debug, Clone)]
pub struct NewLiveSegment {
    pub source: Uuid,
    pub name: String,
    pub length_ms: i64,
    pub start_ts: DateTime<Utc>,
    /// The edge saw a discontinuity before this segment.
    pub discontinuity: bool,
}

/// What became of a live segment offered to the index.
#[derive(Debug, Clone)]
pub struct LiveAdmission {
    pub source_name: String,
    pub streaming: bool,
    /// The source's registered segment length, seconds.
    pub segment_length: i32,
    /// The indexed segment (or the one an edge retried); `None` when the source does not stream, or when a
    /// concurrent copy of the same segment was being indexed at that very moment (the edge retries).
    pub segment: Option<LiveSegment>,
}

/// The control node's database: PostgreSQL in production, SQLite in the standalone binary. Every method means the
/// same on both (the `db` integration suite runs against each); callers never see which one they have.
#[derive(Clone)]
pub enum Db {
    Postgres(PgDb),
    Sqlite(SqliteDb),
}

/// Runs the same call on whichever database this is.
macro_rules! on_db {
    ($self:expr, $db:ident => $call:expr) => {
        match $self {
            Db::Postgres($db) => $call,
            Db::Sqlite($db) => $call,
        }
    };
}

impl Db {
    /// Connects to the database `url` names and applies its migrations: `postgres://…` (or `postgresql://`) for
    /// PostgreSQL, `sqlite://path` (`?mode=rwc` creates the file) for SQLite. `reachable_within` is how recent an
    /// edge's report must be for its source to count as reachable.
    pub async fn connect(url: &str, max_connections: u32, reachable_within: Duration) -> DbResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteDb::connect(url, max_connections, reachable_within).await?))
        } else {
            Ok(Self::Postgres(PgDb::connect(url, max_connections, reachable_within).await?))
        }
    }

    /// A handle on a PostgreSQL pool the caller built (e.g. one that connects lazily, for tests of what is
    /// decided before the database). Migrations are not applied.
    pub fn from_pool(pool: sqlx::PgPool, reachable_within: Duration) -> Self {
        Self::Postgres(PgDb::from_pool(pool, reachable_within))
    }

    /// Which database this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }

    pub async fn ping(&self) -> DbResult<()> {
        on_db!(self, db => db.ping().await)
    }

    /// The live segments of `source` received within `window` (capped at `playlist_len`, as the live playlist
    /// is) and when the newest of all arrived.
    pub async fn live_summary(&self, source: Uuid, playlist_len: i64, window: Duration) -> DbResult<LiveSummary> {
        on_db!(self, db => db.live_summary(source, playlist_len, window).await)
    }

    // ---- sources ----

    /// Registers a source, bound to its edge when `new.edge` names one; `segment_len`, name, description and
    /// edge id are validated by the caller.
    pub async fn create_source(&self, new: &NewSource) -> DbResult<Source> {
        let mut source = on_db!(self, db => db.create_source(new).await)?;
        if let Some(edge) = &new.edge {
            if let Err(err) = self.bind_source(source.id, edge).await {
                // Not half-registered: the caller retries the whole registration, which the name would refuse.
                if let Err(undo) = self.delete_source(source.id, None).await {
                    tracing::error!(id = %source.id, %undo, "removing a source whose edge binding failed");
                }
                return Err(err);
            }
            source.edge = Some(edge.clone());
        }
        Ok(source)
    }

    pub async fn list_sources(&self, name: Option<&str>) -> DbResult<Vec<Source>> {
        on_db!(self, db => db.list_sources(name).await)
    }

    pub async fn get_source(&self, id: Uuid) -> DbResult<Source> {
        on_db!(self, db => db.get_source(id).await)
    }

    pub async fn rename_source(&self, id: Uuid, new_name: &str) -> DbResult<Source> {
        on_db!(self, db => db.rename_source(id, new_name).await)
    }

    pub async fn set_description(&self, id: Uuid, description: &str) -> DbResult<Source> {
        on_db!(self, db => db.set_description(id, description).await)
    }

    pub async fn set_streaming(&self, id: Uuid, streaming: bool) -> DbResult<Source> {
        on_db!(self, db => db.set_streaming(id, streaming).await)
    }

    /// Records an edge's status report: which edge serves the source and that it is alive now.
    pub async fn record_status(
        &self,
        id: Uuid,
        rr_target: &str,
        local_time: Option<DateTime<Utc>>,
    ) -> DbResult<Source> {
        on_db!(self, db => db.record_status(id, rr_target, local_time).await)
    }

    // ---- recordings ----

    pub async fn create_recording(
        &self,
        source: Uuid,
        alias: Option<&str>,
        description: Option<&str>,
        start_ts: DateTime<Utc>,
    ) -> DbResult<Recording> {
        on_db!(self, db => db.create_recording(source, alias, description, start_ts).await)
    }

    pub async fn list_recordings(&self, source: Option<Uuid>, only_active: bool) -> DbResult<Vec<Recording>> {
        on_db!(self, db => db.list_recordings(source, only_active).await)
    }

    pub async fn get_recording(&self, id: &str) -> DbResult<Recording> {
        on_db!(self, db => db.get_recording(id).await)
    }

    /// Marks a recording stopped (idempotent: a stopped recording keeps its first end time).
    pub async fn stop_recording(&self, id: &str) -> DbResult<Recording> {
        on_db!(self, db => db.stop_recording(id).await)
    }

    // ---- recorded segments ----

    /// Stores a recorded segment and links it to the recordings of its source among `recording_ids`; returns
    /// those recordings. The object key is the idempotency key: a report the bus delivers again finds the row
    /// it made the first time (and links it once), while a restarted encoder's segment, under a new key, gets a
    /// row of its own. `NotFound` when none of the recordings exists (deleted, or never made): nothing is kept.
    pub async fn add_recorded_segment(&self, recording_ids: &[String], info: &SegmentInfo) -> DbResult<Vec<String>> {
        on_db!(self, db => db.add_recorded_segment(recording_ids, info).await)
    }

    /// The segments of a recording in playback order: segments from before segment ids (no run) first, in time
    /// order; then encoder runs in the order the edge drew them (ULIDs, compared bytewise), each run in sequence
    /// order; the row id makes the order total.
    pub async fn recording_segments(&self, recording: &str) -> DbResult<Vec<Segment>> {
        on_db!(self, db => db.recording_segments(recording).await)
    }

    /// The segment `wanted` of a recording followed by up to `following` next ones in playback order (empty
    /// when the recording has no such segment). A player asks for every segment, so this must not load them all.
    pub async fn recording_segment_and_next(
        &self,
        recording: &str,
        wanted: SegmentRef<'_>,
        following: i64,
    ) -> DbResult<Vec<Segment>> {
        on_db!(self, db => db.recording_segment_and_next(recording, wanted, following).await)
    }

    // ---- live segments ----

    /// Indexes a live segment, giving it the source's next media sequence number, when the source exists and
    /// streams; atomic against every other writer. A segment already indexed (an edge retry) keeps its number; a
    /// name seen long ago is an encoder that restarted and reuses names (ffmpeg starts again at index0.ts), so
    /// the old entry makes way for the new segment. `gap` marks a discontinuity when the previous segment ended
    /// long before this one started. `NotFound` for an unknown source.
    pub async fn add_live_segment(&self, seg: &NewLiveSegment, gap: Duration) -> DbResult<LiveAdmission> {
        on_db!(self, db => db.add_live_segment(seg, gap).await)
    }

    /// The segment length (seconds) sources are registered with, which never changes.
    pub async fn segment_length(&self, source: Uuid) -> DbResult<i32> {
        on_db!(self, db => db.segment_length(source).await)
    }

    /// The newest `count` live segments received within `max_age`, oldest first.
    pub async fn newest_live_segments(
        &self,
        source: Uuid,
        count: i64,
        max_age: Duration,
    ) -> DbResult<Vec<LiveSegment>> {
        on_db!(self, db => db.newest_live_segments(source, count, max_age).await)
    }

    /// Drops live index rows older than `max_age`; their bytes have expired from the cache anyway.
    pub async fn prune_live_segments(&self, max_age: Duration) -> DbResult<u64> {
        on_db!(self, db => db.prune_live_segments(max_age).await)
    }
}

/// The discontinuity rule of `add_live_segment`: PostgreSQL applies it in SQL (this is its specification), SQLite
/// through this function. Whether a segment starting at `next` leaves more than `gap` after (or overlaps by more than `gap`) the one
/// that started at `start` and lasted `length_ms`. Checked throughout: stored times come from edges, and no
/// value may make this panic (a time that cannot be computed counts as a gap).
fn is_gap(start: DateTime<Utc>, length_ms: i64, next: DateTime<Utc>, gap: Duration) -> bool {
    use chrono::TimeDelta;
    let Some(end) = TimeDelta::try_milliseconds(length_ms).and_then(|length| start.checked_add_signed(length)) else {
        return true;
    };
    let gap = TimeDelta::from_std(gap).unwrap_or(TimeDelta::MAX);
    next.signed_duration_since(end).abs() > gap
}

fn not_found(what: &'static str, id: impl ToString) -> DbError {
    DbError::NotFound { what, id: id.to_string() }
}

fn name_conflict(err: sqlx::Error, name: &str) -> DbError {
    if is_unique_violation(&err) { name_taken(name) } else { err.into() }
}

fn name_taken(name: &str) -> DbError {
    DbError::Conflict(format!("a source named {name:?} already exists"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn gaps_are_judged_without_panicking_on_any_time() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let gap = Duration::from_secs(2);
        let after = |ms| start + TimeDelta::milliseconds(ms);
        assert!(!is_gap(start, 1000, after(1000), gap));
        assert!(!is_gap(start, 1000, after(2900), gap));
        assert!(is_gap(start, 1000, after(3100), gap));
        assert!(is_gap(start, 1000, after(-1500), gap), "a jump back is a gap too");
        assert!(is_gap(DateTime::<Utc>::MAX_UTC, i64::MAX, start, gap));
        assert!(is_gap(start, i64::MIN, DateTime::<Utc>::MIN_UTC, Duration::MAX));
        assert!(is_gap(DateTime::<Utc>::MIN_UTC, 0, DateTime::<Utc>::MAX_UTC, gap));
    }
}
