//! The control node's state: sources, recordings, recorded segments and the live segment index.
//!
//! [`Db`] is the one interface the rest of the control node uses. Behind it, PostgreSQL ([`postgres::PgDb`]) is
//! the production database: everything a replica knows lives there (or in the cache and object store), so any
//! number of replicas can serve the same deployment. SQLite ([`sqlite::SqliteDb`]) is the embedded one of the
//! standalone `livemix` binary: one file, one process. Both keep the same tables (`migrations/` and
//! `migrations-sqlite/`, held in step by a test) and answer every method alike; which one runs is chosen by the
//! database URL.

use std::time::Duration;

use sqlx::error::ErrorKind;

#[macro_use]
pub mod dialect;
pub mod bindings;
pub mod lifecycle;
pub mod live_index;
pub mod postgres;
pub mod recordings;
pub mod segments;
pub mod sources;
pub mod sqlite;

pub use live_index::{LiveAdmission, LiveSegment, LiveSummary};
pub use postgres::PgDb;
pub use segments::SegmentRef;
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
/// PostgreSQL's SQLSTATE classes or SQLite's result codes (each database's module reads its own).
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
                sqlite::classify(db.code().and_then(|code| code.parse().ok()).unwrap_or(0))
            }
            _ => postgres::classify(&db.code().unwrap_or_default()),
        },
        _ => Class::Internal,
    }
}

pub type DbResult<T> = Result<T, DbError>;

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|e| e.is_unique_violation())
}

/// How long a repeated live segment name counts as an edge's retry rather than a new segment (the edge's
/// forwarder gives up after 30 s).
const RETRY_WINDOW: Duration = Duration::from_secs(60);

/// The control node's database: PostgreSQL in production, SQLite in the standalone binary. Every method means the
/// same on both (the `db` integration suite runs against each); callers never see which one they have. The
/// methods are written once, by concept, in this module's children (`sources`, `recordings`, `segments`,
/// `live_index`, `bindings`, `lifecycle`), through [`dialect`].
#[derive(Clone)]
pub enum Db {
    Postgres(PgDb),
    Sqlite(SqliteDb),
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
        on_pool!(self, |pool, _d| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// How recent (seconds) an edge's report must be for its source to count as reachable.
    fn reachable_secs(&self) -> f64 {
        match self {
            Self::Postgres(db) => db.reachable_secs,
            Self::Sqlite(db) => db.reachable_secs,
        }
    }
}

/// `values` as one JSON array, the way a list travels to either database as one parameter (see
/// [`dialect::Dialect::in_texts`]).
fn json<T: serde::Serialize>(values: &[T]) -> DbResult<String> {
    serde_json::to_string(values).map_err(|err| DbError::Internal(sqlx::Error::Encode(err.into())))
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
