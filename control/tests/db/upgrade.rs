//! Upgrades with data: a database at the schema before recordings had a lifecycle, holding a source, a recording
//! and its segments, is migrated by the current control node; nothing recorded is lost, the accounting starts
//! from what was there, and a delete now asks what to do with the recordings.

use std::{path::Path, time::Duration};

use chrono::{TimeDelta, Utc};
use livemix_common::management_api::RecordingsPolicy;
use livemix_control::db::{Db, DbError};
use livemix_testkit::{env, unique};
use sqlx::{Executor, migrate::Migrator};
use uuid::Uuid;

/// Applies the first `count` migrations of `dir` (a copy of the files, as an older release shipped them).
async fn migrate_first<'a, A>(dir: &str, count: usize, pool: A)
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let to = std::env::temp_dir().join(unique("livemix-migrations"));
    std::fs::create_dir_all(&to).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&from).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().take(count) {
        std::fs::copy(file, to.join(file.file_name().unwrap())).unwrap();
    }
    Migrator::new(to.as_path()).await.unwrap().run(pool).await.unwrap();
}

/// The rows an older control node wrote: a source, a stopped recording with three segments.
const OLD_ROWS: &str = "
    INSERT INTO sources (id, name, segment_length) VALUES ($1, 'old-camera', 2);
    INSERT INTO recordings (id, source, start_ts, end_ts, active) VALUES ($2, $1, $3, $3, false);
";

async fn check_upgraded(db: &Db, source: Uuid, recording: &str) {
    let kept = db.get_recording(recording).await.unwrap();
    assert_eq!((kept.source_name.as_deref(), kept.hold), (Some("old-camera"), false));
    let segments = db.recording_segments(recording).await.unwrap();
    assert_eq!(segments.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(db.source_usage(source).await.unwrap(), (300, 3), "accounting starts from what was stored");
    assert!(matches!(db.delete_source(source, None).await, Err(DbError::Conflict(_))));
    db.delete_source(source, Some(RecordingsPolicy::Retain)).await.unwrap();
    assert_eq!(db.recording_segments(recording).await.unwrap().len(), 3, "kept after the source");
}

fn segment_rows(source: Uuid) -> Vec<(String, i64)> {
    (0..3).map(|seq| (format!("recordings/{source}/old{seq}.ts"), seq)).collect()
}

#[tokio::test]
async fn postgres_recordings_survive_the_upgrade() {
    let admin = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let name = unique("lm_upgrade").replace('-', "_").to_lowercase();
    let create = format!("CREATE DATABASE {name}");
    admin.execute(sqlx::AssertSqlSafe(create)).await.unwrap();
    let url = format!("{}/{name}", env("DATABASE_URL").rsplit_once('/').unwrap().0);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    migrate_first("migrations", 3, &pool).await;
    let (source, recording, start) = (Uuid::new_v4(), ulid::Ulid::new().to_string(), Utc::now() - TimeDelta::hours(1));
    for statement in OLD_ROWS.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement).bind(source).bind(&recording).bind(start).execute(&pool).await.unwrap();
    }
    for (uri, seq) in segment_rows(source) {
        sqlx::query(
            "WITH s AS (INSERT INTO segments (source, name, seq, start_ts, end_ts, length_ms, size, uri) \
             VALUES ($1, $2, $3, $4, $4, 2000, 100, $2) RETURNING id) \
             INSERT INTO recording_segments (recording, segment) SELECT $5, id FROM s",
        )
        .bind(source)
        .bind(&uri)
        .bind(seq)
        .bind(start + TimeDelta::seconds(2 * seq))
        .bind(&recording)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let db = Db::connect(&url, 2, Duration::from_secs(30)).await.expect("the current migrations apply");
    check_upgraded(&db, source, &recording).await;
    drop(db);
    let drop_db = format!("DROP DATABASE {name} WITH (FORCE)");
    admin.execute(sqlx::AssertSqlSafe(drop_db)).await.unwrap();
}

#[tokio::test]
async fn sqlite_recordings_survive_the_upgrade() {
    let dir = std::env::temp_dir().join(unique("livemix-upgrade"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("livemix.db").display());
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let pool = sqlx::SqlitePool::connect_with(options.foreign_keys(true)).await.unwrap();
    migrate_first("migrations-sqlite", 1, &pool).await;
    let (source, recording, start) = (Uuid::new_v4(), ulid::Ulid::new().to_string(), Utc::now() - TimeDelta::hours(1));
    for statement in OLD_ROWS.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement).bind(source).bind(&recording).bind(start).execute(&pool).await.unwrap();
    }
    for (uri, seq) in segment_rows(source) {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO segments (source, name, seq, start_ts, end_ts, length_ms, size, uri) \
             VALUES ($1, $2, $3, $4, $4, 2000, 100, $2) RETURNING id",
        )
        .bind(source)
        .bind(&uri)
        .bind(seq)
        .bind(start + TimeDelta::seconds(2 * seq))
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO recording_segments (recording, segment) VALUES ($1, $2)")
            .bind(&recording)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let db = Db::connect(&url, 2, Duration::from_secs(30)).await.expect("the current migrations apply");
    check_upgraded(&db, source, &recording).await;
}
