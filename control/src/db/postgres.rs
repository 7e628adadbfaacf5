//! PostgreSQL, the production database shared by every control replica: its pool, its migrations
//! (`control/migrations/`) and how its errors read. The queries are written once for both databases (see
//! [`super::dialect`]); replicas serialise through row locks and single statements, so any number can write at
//! once.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use super::{Class, DbResult};

#[derive(Clone)]
pub struct PgDb {
    pool: PgPool,
    /// How recent (seconds) an edge's report must be for its source to count as reachable.
    pub(super) reachable_secs: f64,
}

impl PgDb {
    /// Connects and applies the migrations under `control/migrations/`.
    pub async fn connect(url: &str, max_connections: u32, reachable_within: Duration) -> DbResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self::from_pool(pool, reachable_within))
    }

    /// A handle on a pool the caller built (e.g. one that connects lazily, for tests of what is decided
    /// before the database). Migrations are not applied.
    pub fn from_pool(pool: PgPool, reachable_within: Duration) -> Self {
        Self { pool, reachable_secs: reachable_within.as_secs_f64() }
    }

    /// The pool, for the shared queries and for tests that read the catalog.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Sorts an error PostgreSQL reported by its SQLSTATE class (its manual, appendix A).
pub(super) fn classify(code: &str) -> Class {
    match code.get(..2).unwrap_or("") {
        // Data exceptions: a value out of range, a malformed time...
        "22" => Class::Rejected("invalid_value"),
        // Connection exceptions, insufficient resources, operator intervention (shutdown, start-up),
        // serialization failures and deadlocks: all of them pass.
        "08" | "53" | "57" | "40" => Class::Unavailable,
        _ => Class::Internal,
    }
}
