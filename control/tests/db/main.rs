//! The database suite: every test runs against PostgreSQL (the real one from `scripts/services.sh`) and SQLite (a
//! fresh file), through the one `Db` interface the control node uses, and expects the same answers.

use std::{collections::BTreeSet, time::Duration};

use chrono::{TimeDelta, Utc};
use livemix_common::{
    management_api::{Deletion, NewSource, RecordingsPolicy},
    model::SegmentInfo,
    segment::{LegacySegment, NewSegment, SegmentRecord},
    segment_id::SegmentId,
};
use livemix_control::db::{Db, DbError, SegmentRef};
use livemix_testkit::{env, unique};
use uuid::Uuid;

const REACHABLE: Duration = Duration::from_secs(30);

async fn postgres() -> Db {
    Db::connect(&env("DATABASE_URL"), 4, REACHABLE).await.expect("PostgreSQL")
}

/// A PostgreSQL database of the test's own, for what is scoped to a database (advisory locks): other processes
/// on the shared one (a control node another suite started) cannot interfere.
async fn fresh_postgres() -> Db {
    use sqlx::Executor;
    let admin = sqlx::PgPool::connect(&env("DATABASE_URL")).await.expect("PostgreSQL");
    let name = unique("lm_fresh").replace('-', "_").to_lowercase();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("a database");
    let url = format!("{}/{name}", env("DATABASE_URL").rsplit_once('/').expect("a database URL").0);
    Db::connect(&url, 4, REACHABLE).await.expect("PostgreSQL")
}

async fn sqlite() -> Db {
    let dir = std::env::temp_dir().join(unique("livemix-db-test"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.join("livemix.db").display());
    Db::connect(&url, 4, REACHABLE).await.expect("SQLite")
}

fn new_source(name: &str, segment_len: i32, description: &str) -> NewSource {
    NewSource {
        name: name.to_owned(),
        segment_len,
        description: Some(description.to_owned()),
        owner: None,
        retention: None,
        edge: None,
        recording: None,
    }
}

/// Runs `check` on both databases, as two tests.
macro_rules! on_both {
    ($check:ident) => {
        on_both!($check, crate::postgres());
    };
    ($check:ident, $postgres:expr) => {
        mod $check {
            #[tokio::test]
            async fn postgres() {
                super::$check(&$postgres.await).await;
            }
            #[tokio::test]
            async fn sqlite() {
                super::$check(&crate::sqlite().await).await;
            }
        }
    };
}

mod lifecycle;
mod upgrade;

on_both!(sources_are_created_found_renamed_and_deleted);
on_both!(status_reports_make_a_source_reachable);
on_both!(recorded_segments_are_idempotent_and_play_in_order);
on_both!(live_segments_are_numbered_once_and_retries_keep_their_number);
on_both!(a_source_is_bound_to_its_edge_by_an_admin_only);
on_both!(the_live_gate_sees_streaming_and_retries_before_anything_is_stored);
on_both!(live_segments_with_a_run_are_the_edges_record);
on_both!(continuous_recordings_time_ranges_and_hashes);

async fn sources_are_created_found_renamed_and_deleted(db: &Db) {
    let name = unique("cam");
    let source = db.create_source(&new_source(&name, 4, "a camera")).await.unwrap();
    assert_eq!((source.name.as_str(), source.segment_length, source.streaming), (name.as_str(), 4, false));
    assert!(!source.reachable && source.last_seen.is_none() && source.rr_target.is_none());
    assert_eq!(db.get_source(source.id).await.unwrap(), source);
    assert_eq!(db.list_sources(Some(&name)).await.unwrap(), vec![source.clone()]);
    assert!(db.list_sources(None).await.unwrap().contains(&source), "without a name, every source");
    assert!(db.list_sources(Some(&unique("nobody"))).await.unwrap().is_empty());
    assert!(matches!(db.create_source(&new_source(&name, 4, "")).await, Err(DbError::Conflict(_))));

    let other = unique("cam");
    let renamed = db.rename_source(source.id, &other).await.unwrap();
    assert_eq!(renamed.name, other);
    assert!(renamed.updated_at >= source.updated_at);
    let taken = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    assert!(matches!(db.rename_source(taken.id, &other).await, Err(DbError::Conflict(_))));
    assert!(db.set_streaming(source.id, true).await.unwrap().streaming);
    assert_eq!(db.set_description(source.id, "moved").await.unwrap().description, "moved");
    assert_eq!(db.segment_length(source.id).await.unwrap(), 4);

    assert_eq!(db.delete_source(source.id, None).await.unwrap(), Deletion::default(), "no recordings: nothing to say");
    assert!(matches!(db.get_source(source.id).await, Err(DbError::NotFound { .. })));
    assert!(matches!(db.delete_source(source.id, None).await, Err(DbError::NotFound { .. })));
    assert!(matches!(db.set_streaming(Uuid::new_v4(), true).await, Err(DbError::NotFound { .. })));
    // A segment length the schema refuses is a rejection, never retried.
    let bad = db.create_source(&new_source(&unique("cam"), 0, "")).await.unwrap_err();
    assert!(matches!(bad, DbError::Rejected { reason: "check", .. }) && !bad.is_transient(), "{bad:?}");
}

/// Reachability is judged against the delay the node was configured with (`$1` of every source query, seconds
/// with a fraction): a source whose edge stopped reporting stops being reachable.
#[tokio::test]
async fn reachability_follows_the_configured_delay() {
    let dir = std::env::temp_dir().join(unique("livemix-db-test"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("livemix.db").display());
    for url in [env("DATABASE_URL"), sqlite] {
        let db = Db::connect(&url, 2, Duration::from_millis(500)).await.expect("a database");
        let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
        assert!(db.record_status(source.id, "edge-a", None).await.unwrap().reachable, "{url}");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!db.get_source(source.id).await.unwrap().reachable, "{url}: no report for longer than the delay");
        assert!(!db.list_sources(Some(&source.name)).await.unwrap()[0].reachable, "{url}");
    }
}

async fn status_reports_make_a_source_reachable(db: &Db) {
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let edge_time = Utc::now() - TimeDelta::seconds(3);
    let seen = db.record_status(source.id, "edge-a", Some(edge_time)).await.unwrap();
    assert!(seen.reachable);
    assert_eq!(seen.rr_target.as_deref(), Some("edge-a"));
    let stored = seen.local_time.unwrap();
    assert!((stored - edge_time).num_milliseconds().abs() < 1, "{stored} vs {edge_time}");
    let last_seen = seen.last_seen.unwrap();
    assert!((Utc::now() - last_seen).num_seconds().abs() < 5, "the database clock is this machine's: {last_seen}");
    assert!(db.get_source(source.id).await.unwrap().reachable);
}

pub(crate) fn info(source: Uuid, run: Option<ulid::Ulid>, seq: i64, name: &str, start_offset_s: i64) -> SegmentInfo {
    let start = Utc::now() + TimeDelta::seconds(start_offset_s);
    SegmentInfo {
        name: name.to_owned(),
        source,
        run,
        seq,
        discontinuity: false,
        start_ts: start,
        end_ts: start + TimeDelta::seconds(2),
        length_ms: 2000,
        size: 100,
        uri: match run {
            Some(run) => format!("recordings/{source}/{run}/{seq:012}.ts"),
            None => format!("recordings/{source}/{name}"),
        },
        sha256: None,
    }
}

async fn recorded_segments_are_idempotent_and_play_in_order(db: &Db) {
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let alias = unique("alias");
    let rec = db.create_recording(source.id, Some(&alias), None, Utc::now()).await.unwrap();
    assert!(rec.active && rec.end_ts.is_none());
    assert!(matches!(db.create_recording(source.id, Some(&alias), None, Utc::now()).await, Err(DbError::Conflict(_))));
    let ids = vec![rec.id.clone(), "01UNKNOWNRECORDING000000000".to_owned()];
    // Two runs, the later one reported first, and a legacy segment (no run), which plays first.
    // Runs drawn a second apart (two drawn within one millisecond need not sort in drawing order).
    let now_ms = Utc::now().timestamp_millis() as u64;
    let (run_a, run_b) = (ulid::Ulid::from_parts(now_ms, 1), ulid::Ulid::from_parts(now_ms + 1000, 1));
    for seg in [info(source.id, Some(run_b), 0, "index0.ts", 10), info(source.id, Some(run_a), 1, "index1.ts", 2)] {
        assert_eq!(db.add_recorded_segment(&ids, &seg).await.unwrap(), vec![rec.id.clone()]);
    }
    let first = info(source.id, Some(run_a), 0, "index0.ts", 0);
    db.add_recorded_segment(&ids, &first).await.unwrap();
    db.add_recorded_segment(&ids, &first).await.unwrap(); // the bus delivered it twice
    db.add_recorded_segment(&ids, &info(source.id, None, 7, "legacy.ts", -100)).await.unwrap();
    // Legacy segments play in time order, whatever their sequence numbers.
    db.add_recorded_segment(&ids, &info(source.id, None, 9, "older.ts", -200)).await.unwrap();

    let played: Vec<(Option<String>, i64)> =
        db.recording_segments(&rec.id).await.unwrap().into_iter().map(|s| (s.run, s.seq)).collect();
    let (a, b) = (Some(run_a.to_string()), Some(run_b.to_string()));
    assert_eq!(played, vec![(None, 9), (None, 7), (a.clone(), 0), (a.clone(), 1), (b.clone(), 0)]);

    let next = db.recording_segment_and_next(&rec.id, SegmentRef::Run { run: run_a, seq: 1 }, 5).await.unwrap();
    assert_eq!(next.iter().map(|s| (s.run.clone(), s.seq)).collect::<Vec<_>>(), vec![(a.clone(), 1), (b, 0)]);
    let legacy = db.recording_segment_and_next(&rec.id, SegmentRef::Legacy("legacy.ts"), 1).await.unwrap();
    assert_eq!(legacy.len(), 2);
    assert_eq!(legacy[0].name, "legacy.ts");
    let older = db.recording_segment_and_next(&rec.id, SegmentRef::Legacy("older.ts"), 2).await.unwrap();
    let older: Vec<(Option<String>, i64)> = older.into_iter().map(|s| (s.run, s.seq)).collect();
    assert_eq!(older, vec![(None, 9), (None, 7), (a.clone(), 0)], "from a legacy segment on into the runs");
    let missing = db.recording_segment_and_next(&rec.id, SegmentRef::Legacy("nope.ts"), 3).await.unwrap();
    assert!(missing.is_empty());

    // A report for recordings that are all gone keeps nothing.
    let orphan = info(source.id, Some(ulid::Ulid::new()), 0, "index0.ts", 20);
    assert!(matches!(
        db.add_recorded_segment(&["01GONE0000000000000000000".to_owned()], &orphan).await,
        Err(DbError::NotFound { .. })
    ));
    assert_eq!(db.recording_segments(&rec.id).await.unwrap().len(), 5);

    // Only recordings of the segment's own source are linked.
    let elsewhere = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let foreign = db.create_recording(elsewhere.id, None, None, Utc::now()).await.unwrap();
    let both = [rec.id.clone(), foreign.id.clone()];
    let shared = info(source.id, Some(run_a), 2, "index2.ts", 4);
    assert_eq!(db.add_recorded_segment(&both, &shared).await.unwrap(), vec![rec.id.clone()]);
    assert!(db.recording_segments(&foreign.id).await.unwrap().is_empty());
    assert_eq!(db.recording_segments(&rec.id).await.unwrap().len(), 6);
    let all = db.list_recordings(None, false).await.unwrap();
    assert!(all.iter().any(|r| r.id == rec.id) && all.iter().any(|r| r.id == foreign.id), "every source's");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(db.list_recordings(None, true).await.unwrap().iter().any(|r| r.id == foreign.id));
    db.stop_recording(&foreign.id).await.unwrap();

    let stopped = db.stop_recording(&rec.id).await.unwrap();
    assert!(!stopped.active);
    let end = stopped.end_ts.unwrap();
    let stopped = db.stop_recording(&rec.id).await.unwrap();
    assert_eq!(stopped.end_ts, Some(end), "the first end time stays");
    assert_eq!(db.list_recordings(Some(source.id), false).await.unwrap(), vec![stopped.clone()]);
    assert!(db.list_recordings(Some(source.id), true).await.unwrap().is_empty());
    assert_eq!(db.get_recording(&rec.id).await.unwrap(), stopped);
    assert!(matches!(db.delete_source(source.id, None).await, Err(DbError::Conflict(_))), "recordings need a policy");
    let kept = db.delete_source(source.id, Some(RecordingsPolicy::Retain)).await.unwrap();
    assert_eq!(kept.recordings_retained, 1);
    assert_eq!(db.get_recording(&rec.id).await.unwrap(), stopped, "kept after its source");
    assert_eq!(db.recording_segments(&rec.id).await.unwrap().len(), 6);
}

/// LEGACY: a segment forwarded without a run (an edge that predates `Segment-Run`).
fn live(source: Uuid, name: &str, start: chrono::DateTime<Utc>) -> NewSegment {
    NewSegment::Legacy(LegacySegment {
        source,
        seq: 0,
        name: name.to_owned(),
        length_ms: 2000,
        start_ts: start,
        discontinuity: false,
    })
}

/// A segment forwarded with its run: the edge's record.
fn record(source: Uuid, run: ulid::Ulid, seq: u64, start: chrono::DateTime<Utc>, discontinuity: bool) -> NewSegment {
    NewSegment::Record(SegmentRecord {
        id: SegmentId { source, run, seq },
        name: format!("index{seq}.ts"),
        length_ms: 2000,
        start_ts: start,
        discontinuity,
    })
}

/// Makes every live index entry of `source` look received `secs` seconds ago.
async fn age_live_segments(db: &Db, source: Uuid, secs: i64) {
    match db {
        Db::Postgres(pg) => {
            sqlx::query("UPDATE live_segments SET received_at = now() - make_interval(secs => $2) WHERE source = $1")
                .bind(source)
                .bind(secs as f64)
                .execute(pg.pool())
                .await
                .unwrap();
        }
        Db::Sqlite(lite) => {
            sqlx::query(
                "UPDATE live_segments SET received_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', $2) \
                 WHERE source = $1",
            )
            .bind(source)
            .bind(format!("-{secs} seconds"))
            .execute(lite.pool())
            .await
            .unwrap();
        }
    }
}

/// The edge decided identity and discontinuity: a retry is the same (run, seq) however late it comes, a reused
/// name of another run replaces the old entry at once, and the edge's flag is the discontinuity (no gap is
/// judged here). The legacy path (no run) keeps recognising retries by name within the window.
async fn live_segments_with_a_run_are_the_edges_record(db: &Db) {
    let gap = Duration::from_secs(3);
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    db.set_streaming(source.id, true).await.unwrap();
    let (run, t0) = (ulid::Ulid::new(), Utc::now());
    let at = |seq: i64| t0 + TimeDelta::seconds(2 * seq);
    let add = |seg: NewSegment| async move { db.add_live_segment(&seg, gap).await.unwrap().segment.unwrap() };

    let first = add(record(source.id, run, 0, at(0), true)).await;
    assert_eq!((first.media_seq, first.discontinuity, first.disc_seq), (0, true, 1), "the edge's flag, as is");
    let second = add(record(source.id, run, 1, at(1), false)).await;
    assert_eq!((second.media_seq, second.discontinuity), (1, false));
    // Times that jump by a minute: the edge did not flag it, so the index does not either.
    let jump = add(record(source.id, run, 2, at(30), false)).await;
    assert_eq!((jump.media_seq, jump.discontinuity, jump.disc_seq), (2, false, 1), "no gap judged here");
    // Flagged by the edge although the times continue.
    let flagged = add(record(source.id, run, 3, at(31), true)).await;
    assert_eq!((flagged.discontinuity, flagged.disc_seq), (true, 2));

    // The edge's retry, long after the name-based retry window: recognised by (run, seq), keeping its number.
    age_live_segments(db, source.id, 600).await;
    let gate = db.live_gate(&record(source.id, run, 1, at(1), false)).await.unwrap();
    assert!(gate.streaming && gate.retried, "a retry, ten minutes on");
    let retried = add(record(source.id, run, 1, at(1), false)).await;
    assert_eq!((retried.media_seq, retried.name.as_str()), (1, "index1.ts"), "the same entry");
    assert!(!db.live_gate(&record(source.id, run, 4, at(32), false)).await.unwrap().retried);

    // The encoder restarted at once: its new run reuses index0.ts, and that is a new segment, not a retry.
    let restarted = ulid::Ulid::new();
    assert!(!db.live_gate(&record(source.id, restarted, 0, at(40), true)).await.unwrap().retried);
    let again = add(record(source.id, restarted, 0, at(40), true)).await;
    assert_eq!((again.media_seq, again.name.as_str(), again.discontinuity), (4, "index0.ts", true));
    age_live_segments(db, source.id, 0).await;
    let listed = db.newest_live_segments(source.id, 100, Duration::from_secs(60)).await.unwrap();
    let names: Vec<(i64, &str)> = listed.iter().map(|s| (s.media_seq, s.name.as_str())).collect();
    assert_eq!(names, [(1, "index1.ts"), (2, "index2.ts"), (3, "index3.ts"), (4, "index0.ts")], "one entry a name");
    assert!(db.live_gate(&record(source.id, restarted, 0, at(40), true)).await.unwrap().retried);
    assert!(!db.live_gate(&record(source.id, run, 0, at(0), true)).await.unwrap().retried, "replaced");

    // LEGACY, during a rolling upgrade: a forward without a run, retried by name within the window only.
    let legacy = add(live(source.id, "old-edge-7.ts", at(50))).await;
    assert_eq!(legacy.media_seq, 5);
    assert_eq!(add(live(source.id, "old-edge-7.ts", at(50))).await.media_seq, 5, "a retry within the window");
    age_live_segments(db, source.id, 120).await;
    assert!(!db.live_gate(&live(source.id, "old-edge-7.ts", at(50))).await.unwrap().retried);
    let late = add(live(source.id, "old-edge-7.ts", at(50))).await;
    assert_eq!(late.media_seq, 6, "after the window, the same name is a new segment (an encoder restart)");
}

async fn live_segments_are_numbered_once_and_retries_keep_their_number(db: &Db) {
    let gap = Duration::from_secs(2);
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let t0 = Utc::now();
    let quiet = db.add_live_segment(&live(source.id, "s0.ts", t0), gap).await.unwrap();
    assert!(!quiet.streaming && quiet.segment.is_none(), "a source that does not stream indexes nothing");
    db.set_streaming(source.id, true).await.unwrap();

    let first = db.add_live_segment(&live(source.id, "s0.ts", t0), gap).await.unwrap();
    assert_eq!(first.source_name, source.name);
    assert_eq!(first.segment_length, 2);
    let first = first.segment.unwrap();
    assert_eq!((first.media_seq, first.disc_seq, first.discontinuity), (0, 0, false));
    let second = db.add_live_segment(&live(source.id, "s1.ts", t0 + TimeDelta::seconds(2)), gap).await.unwrap();
    assert_eq!(second.segment.unwrap().media_seq, 1);
    let retried = db.add_live_segment(&live(source.id, "s1.ts", t0 + TimeDelta::seconds(2)), gap).await.unwrap();
    assert_eq!(retried.segment.unwrap().media_seq, 1, "a retry keeps its number");
    let jump = db.add_live_segment(&live(source.id, "s2.ts", t0 + TimeDelta::seconds(60)), gap).await.unwrap();
    let jump = jump.segment.unwrap();
    assert_eq!((jump.media_seq, jump.discontinuity, jump.disc_seq), (2, true, 1), "a gap is a discontinuity");

    // Concurrent writers each get a number of their own.
    let writes = (3..13).map(|i| {
        let seg = live(source.id, &format!("s{i}.ts"), t0 + TimeDelta::seconds(60 + 2 * (i - 2)));
        async move { db.add_live_segment(&seg, gap).await.unwrap().segment.unwrap().media_seq }
    });
    let numbers: BTreeSet<i64> = futures::future::join_all(writes).await.into_iter().collect();
    assert_eq!(numbers, (3..13).collect());

    let newest = db.newest_live_segments(source.id, 3, Duration::from_secs(60)).await.unwrap();
    assert_eq!(newest.iter().map(|s| s.media_seq).collect::<Vec<_>>(), vec![10, 11, 12]);
    let summary = db.live_summary(source.id, 5, Duration::from_secs(60)).await.unwrap();
    assert_eq!(summary.segments, 5);
    assert!(summary.last_segment_at.is_some_and(|at| (Utc::now() - at).num_seconds().abs() < 5));
    assert!(matches!(db.add_live_segment(&live(Uuid::new_v4(), "x.ts", t0), gap).await, Err(DbError::NotFound { .. })));
    // Nothing is old enough to prune yet.
    db.prune_live_segments(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(db.newest_live_segments(source.id, 100, Duration::from_secs(60)).await.unwrap().len(), 13);
}

async fn a_source_is_bound_to_its_edge_by_an_admin_only(db: &Db) {
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    assert_eq!(source.edge, None);
    assert_eq!(db.source_owner(source.id).await.unwrap(), None);
    db.bind_source(source.id, "edge-a").await.unwrap();
    assert_eq!(db.source_owner(source.id).await.unwrap().as_deref(), Some("edge-a"));
    assert_eq!(db.get_source(source.id).await.unwrap().edge.as_deref(), Some("edge-a"));
    db.bind_source(source.id, "edge-b").await.unwrap();
    assert_eq!(db.source_owner(source.id).await.unwrap().as_deref(), Some("edge-b"), "moved");
    assert!(matches!(db.bind_source(Uuid::new_v4(), "edge-a").await, Err(DbError::NotFound { .. })));
    assert!(db.release_source(source.id).await.unwrap());
    assert!(!db.release_source(source.id).await.unwrap());

    let bound = NewSource { edge: Some("edge-c".into()), ..new_source(&unique("cam"), 2, "") };
    let bound = db.create_source(&bound).await.unwrap();
    assert_eq!(bound.edge.as_deref(), Some("edge-c"), "bound at registration");
    assert_eq!(db.list_sources(Some(&bound.name)).await.unwrap()[0].edge.as_deref(), Some("edge-c"));
    assert!(db.bind_unbound("edge-d").await.unwrap() >= 1);
    assert_eq!(db.source_owner(source.id).await.unwrap().as_deref(), Some("edge-d"), "the unbound one adopted");
    assert_eq!(db.source_owner(bound.id).await.unwrap().as_deref(), Some("edge-c"), "a bound one kept");
}

async fn the_live_gate_sees_streaming_and_retries_before_anything_is_stored(db: &Db) {
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let gate = db.live_gate(&live(source.id, "s0.ts", Utc::now())).await.unwrap();
    assert!(!gate.streaming && !gate.retried);
    assert_eq!(gate.source_name, source.name);
    db.set_streaming(source.id, true).await.unwrap();
    assert!(db.live_gate(&live(source.id, "s0.ts", Utc::now())).await.unwrap().streaming);
    assert!(!db.is_live_listed(source.id, "s0.ts").await.unwrap());
    db.add_live_segment(&live(source.id, "s0.ts", Utc::now()), Duration::from_secs(2)).await.unwrap();
    assert!(db.live_gate(&live(source.id, "s0.ts", Utc::now())).await.unwrap().retried, "listed within the window");
    assert!(!db.live_gate(&live(source.id, "s1.ts", Utc::now())).await.unwrap().retried);
    assert!(db.is_live_listed(source.id, "s0.ts").await.unwrap());
    assert!(!db.is_live_listed(source.id, "s1.ts").await.unwrap());
    let unknown = live(Uuid::new_v4(), "s0.ts", Utc::now());
    assert!(matches!(db.live_gate(&unknown).await, Err(DbError::NotFound { .. })));
}

/// Both migration directories end at the same tables and columns (with the same nullability), read from each
/// database's own catalog: a migration added to one and not the other fails here.
#[tokio::test]
async fn migrations_keep_both_schemas_in_step() {
    let Db::Postgres(pg) = postgres().await else { unreachable!("a postgres:// URL") };
    let Db::Sqlite(lite) = sqlite().await else { unreachable!("a sqlite:// URL") };
    let pg_columns: BTreeSet<(String, String, bool)> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT table_name::text, column_name::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|(table, column, nullable)| (table, column, nullable == "YES"))
    .collect();
    let lite_columns: BTreeSet<(String, String, bool)> = sqlx::query_as::<_, (String, String, bool)>(
        "SELECT m.name, c.name, NOT c.\"notnull\" FROM sqlite_master m, pragma_table_info(m.name) c \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.name <> 'sqlite_sequence'",
    )
    .fetch_all(lite.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(pg_columns.len() > 40, "{pg_columns:?}");
    assert_eq!(pg_columns, lite_columns, "control/migrations and control/migrations-sqlite differ");
}

/// One continuous recording per source whoever asks; a source's recorded segments read back by time range
/// (from any of its recordings, each once) and by served name; hashes and verifications kept.
async fn continuous_recordings_time_ranges_and_hashes(db: &Db) {
    let source = db.create_source(&new_source(&unique("cam"), 2, "")).await.unwrap();
    let continuous = db.continuous_recording(source.id).await.unwrap();
    assert!(continuous.continuous && continuous.active);
    let (again, concurrent) = tokio::join!(db.continuous_recording(source.id), db.continuous_recording(source.id));
    assert_eq!((again.unwrap().id, concurrent.unwrap().id), (continuous.id.clone(), continuous.id.clone()));
    assert!(matches!(db.continuous_recording(Uuid::new_v4()).await, Err(DbError::NotFound { .. })));
    let on_demand = db.create_recording(source.id, None, None, Utc::now()).await.unwrap();

    let run = ulid::Ulid::new();
    let hash = "ab".repeat(32);
    for seq in 0..10 {
        let mut segment = info(source.id, Some(run), seq, &format!("index{seq}.ts"), seq * 2 - 100);
        segment.sha256 = Some(hash.clone());
        // Both recordings cover the middle: one row, linked twice.
        let ids = if (3..6).contains(&seq) {
            vec![continuous.id.clone(), on_demand.id.clone()]
        } else {
            vec![continuous.id.clone()]
        };
        db.add_recorded_segment(&ids, &segment).await.unwrap();
    }
    let all = db.recording_segments(&continuous.id).await.unwrap();
    assert!(all.iter().all(|s| s.sha256.as_deref() == Some(hash.as_str())));
    let (first, last) = (all[0].start_ts, all[9].end_ts);
    let every = db.source_segments_between(source.id, first, last, 100).await.unwrap();
    assert_eq!(every.iter().map(|s| s.seq).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>(), "each segment once");
    // A range starting inside a segment includes it; the limit holds.
    let inside = first + TimeDelta::milliseconds(4500);
    let from_third = db.source_segments_between(source.id, inside, last, 100).await.unwrap();
    assert_eq!(from_third.first().map(|s| s.seq), Some(2));
    assert_eq!(db.source_segments_between(source.id, first, last, 3).await.unwrap().len(), 3);
    // SQLite compares times to the millisecond.
    let after = last + TimeDelta::milliseconds(1);
    assert!(db.source_segments_between(source.id, after, after + TimeDelta::hours(1), 10).await.unwrap().is_empty());
    assert!(db.source_segments_between(Uuid::new_v4(), first, last, 10).await.unwrap().is_empty());

    let window = db.source_segment_and_next(source.id, SegmentRef::Run { run, seq: 4 }, 2).await.unwrap();
    assert_eq!(window.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
    assert!(db.source_segment_and_next(source.id, SegmentRef::Run { run, seq: 99 }, 2).await.unwrap().is_empty());

    let state = db.fleet_state().await.unwrap();
    assert!(state.sources >= 1 && state.recordings_active >= 2, "{state:?}");
    assert!(state.newest_recorded_end.is_some_and(|end| end >= last - TimeDelta::milliseconds(1)), "{state:?}");

    let summary =
        livemix_common::model::VerificationSummary { at: Utc::now(), segments: 10, mismatched: 1, missing: 0 };
    db.record_verification(&continuous.id, &summary).await.unwrap();
    let kept = db.get_recording(&continuous.id).await.unwrap().verification.unwrap();
    assert_eq!((kept.segments, kept.mismatched, kept.missing), (10, 1, 0));
    assert!(db.get_recording(&on_demand.id).await.unwrap().verification.is_none());

    let stopped = db.stop_continuous_recording(source.id).await.unwrap().unwrap();
    assert_eq!(stopped.id, continuous.id);
    assert!(!stopped.active && stopped.end_ts.is_some());
    assert!(db.stop_continuous_recording(source.id).await.unwrap().is_none());
    let next = db.continuous_recording(source.id).await.unwrap();
    assert_ne!(next.id, continuous.id, "a new one once the old one stopped");
}
