//! The SQLite implementation of [`super::Db`]: the embedded database of the standalone `livemix` binary, one
//! file in its data directory.
//!
//! SQLite serialises writers, so what PostgreSQL does in one statement under a row lock is a `BEGIN IMMEDIATE`
//! transaction here: it takes the write lock up front, and nothing another connection writes can slip in
//! between its reads and writes. Only one process may use the file (one control node, no replicas).
//!
//! Times are RFC 3339 text (as sqlx writes them) and always compared through `unixepoch(…, 'subsec')`, never as
//! strings, so times written by sqlx and by SQLite's own clock compare right. The queries are written once for
//! both databases (see [`super::dialect`]); this module opens the file, applies `control/migrations-sqlite/` and
//! reads SQLite's result codes.

use std::{str::FromStr, time::Duration};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{Class, DbResult};

#[derive(Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    /// How recent (seconds) an edge's report must be for its source to count as reachable.
    pub(super) reachable_secs: f64,
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

    /// The pool, for the shared queries and for tests that read the catalog.
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
}

/// Sorts an error SQLite reported by its extended result code, whose low byte is the primary one
/// (<https://sqlite.org/rescode.html>).
pub(super) fn classify(code: i32) -> Class {
    match code & 0xff {
        // BUSY, LOCKED (another writer held on past the busy timeout), IOERR, FULL, CANTOPEN: may pass.
        5 | 6 | 10 | 13 | 14 => Class::Unavailable,
        // TOOBIG, MISMATCH, RANGE: this value never fits.
        18 | 20 | 25 => Class::Rejected("invalid_value"),
        _ => Class::Internal,
    }
}
