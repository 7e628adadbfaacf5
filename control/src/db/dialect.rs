//! SQL written once for both databases: `on_tx!` and `on_pool!` expand a body for PostgreSQL and for SQLite, and
//! the few places where their SQL really differs (time comparisons, JSON arrays as sets, row locks, bytewise
//! order) go through [`Dialect`]. Declared first in `db`, so every module after it can use the macros.

/// A time as seconds since the epoch, the parameter [`Dialect::time`], [`Dialect::cmp_time`] and comparisons with
/// [`Dialect::secs`] take.
pub fn epoch(time: chrono::DateTime<chrono::Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1e6
}

/// Where the two databases' SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// A stored time column, as seconds since the epoch.
    pub fn secs(self, column: &str) -> String {
        match self {
            Self::Postgres => format!("CAST(extract(epoch FROM {column}) AS DOUBLE PRECISION)"),
            Self::Sqlite => format!("unixepoch({column}, 'subsec')"),
        }
    }

    /// A time to store, from a parameter holding seconds since the epoch.
    pub fn time(self, param: &str) -> String {
        match self {
            Self::Postgres => format!("to_timestamp({param})"),
            Self::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', {param}, 'unixepoch')"),
        }
    }

    /// `expr` is one of the texts of a parameter holding a JSON array. On PostgreSQL an array compared with
    /// `= ANY`, which its planner serves from an index (an `IN (SELECT ...)` of a set-returning function is
    /// estimated badly and scans the table).
    pub fn in_texts(self, expr: &str, param: &str) -> String {
        match self {
            Self::Postgres => format!("{expr} = ANY(ARRAY(SELECT jsonb_array_elements_text({param}::jsonb)))"),
            Self::Sqlite => format!("{expr} IN (SELECT value FROM json_each({param}))"),
        }
    }

    /// `expr` is one of the integers of a parameter holding a JSON array.
    pub fn in_ints(self, expr: &str, param: &str) -> String {
        match self {
            Self::Postgres => format!("{expr} = ANY(ARRAY(SELECT jsonb_array_elements_text({param}::jsonb)::bigint))"),
            Self::Sqlite => format!("{expr} IN (SELECT value FROM json_each({param}))"),
        }
    }

    /// A stored time `column` compared (`op`: `>`, `<=`...) with the moment `param` seconds ago, by the
    /// database's clock. PostgreSQL compares times (an index on `column` may serve it), SQLite epoch seconds.
    pub fn ago(self, column: &str, op: &str, param: &str) -> String {
        match self {
            Self::Postgres => format!("{column} {op} now() - make_interval(secs => {param})"),
            Self::Sqlite => format!("unixepoch({column}, 'subsec') {op} unixepoch('now', 'subsec') - {param}"),
        }
    }

    /// A stored time `column` compared (`op`) with `param`, seconds since the epoch. PostgreSQL compares times
    /// (an index on `column` may serve it), SQLite epoch seconds.
    pub fn cmp_time(self, column: &str, op: &str, param: &str) -> String {
        match self {
            Self::Postgres => format!("{column} {op} to_timestamp({param})"),
            Self::Sqlite => format!("unixepoch({column}, 'subsec') {op} {param}"),
        }
    }

    /// The database's clock, as its time columns store it.
    pub fn now(self) -> &'static str {
        match self {
            Self::Postgres => "now()",
            Self::Sqlite => "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
        }
    }

    /// Locks the selected rows of `alias` until the transaction ends (SQLite's write lock covers everything).
    pub fn lock(self, alias: &str) -> String {
        match self {
            Self::Postgres => format!(" FOR UPDATE OF {alias}"),
            Self::Sqlite => String::new(),
        }
    }

    /// A text expression compared byte by byte, the order object stores list keys in.
    pub fn bytewise(self, expr: &str) -> String {
        match self {
            Self::Postgres => format!("{expr} COLLATE \"C\""),
            Self::Sqlite => expr.to_owned(),
        }
    }
}

/// Runs `$body` in a write transaction on whichever database this is, committing when it ends without an error
/// (a `?` or `return` inside rolls back). `$tx` is the transaction, `$d` the [`Dialect`].
macro_rules! on_tx {
    ($db:expr, |$tx:ident, $d:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(db) => {
                let mut $tx = db.pool().begin().await?;
                let $d = $crate::db::dialect::Dialect::Postgres;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::db::Db::Sqlite(db) => {
                let mut $tx = db.write().await?;
                let $d = $crate::db::dialect::Dialect::Sqlite;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Runs `$body` with the pool of whichever database this is (reads and single statements).
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $d:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(db) => {
                let $pool = db.pool();
                let $d = $crate::db::dialect::Dialect::Postgres;
                $body
            }
            $crate::db::Db::Sqlite(db) => {
                let $pool = db.pool();
                let $d = $crate::db::dialect::Dialect::Sqlite;
                $body
            }
        }
    };
}
