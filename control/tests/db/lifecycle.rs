//! The recordings' lifecycle in the database, on both databases: deletes keep what other recordings share, the
//! deletion queue, retention by age and bytes around held recordings, storage accounting, one worker at a time.

use chrono::{TimeDelta, Utc};
use livemix_common::{
    management_api::{NewSource, RecordingsPolicy},
    model::{Retention, SegmentInfo},
};
use livemix_control::db::{
    Db, DbError,
    lifecycle::{DeletionReason, Work},
};
use livemix_testkit::unique;
use uuid::Uuid;

use crate::info;

on_both!(overlapping_recordings_keep_what_the_other_needs);
on_both!(deleting_a_source_needs_a_policy_and_spares_held_recordings);
on_both!(the_deletion_queue_retries_forgets_and_spares_returning_segments);
on_both!(retention_by_age_deletes_oldest_first_and_never_held);
on_both!(the_cap_deletes_just_enough_oldest_segments);
// The advisory lock is per database: a control node running on the shared one would hold it.
on_both!(one_worker_at_a_time, crate::fresh_postgres());

async fn source(db: &Db, retention: Option<Retention>) -> Uuid {
    let new = NewSource {
        name: unique("cam"),
        segment_len: 2,
        description: None,
        owner: None,
        retention,
        edge: None,
        recording: None,
    };
    db.create_source(&new).await.unwrap().id
}

/// A segment of `size` bytes that ended `age_s` seconds ago.
fn aged(source: Uuid, seq: i64, age_s: i64, size: i64) -> SegmentInfo {
    let mut seg = info(source, Some(ulid::Ulid::new()), seq, &format!("s{seq}.ts"), -age_s - 2);
    seg.size = size;
    seg
}

async fn keys(db: &Db, recording: &str) -> Vec<String> {
    db.recording_segments(recording).await.unwrap().into_iter().map(|s| s.uri).collect()
}

async fn due(db: &Db, prefix: Uuid) -> Vec<(String, DeletionReason)> {
    let mut due: Vec<_> = db
        .due_deletions(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.key.contains(&prefix.to_string()))
        .map(|d| (d.key, d.reason))
        .collect();
    due.sort();
    due
}

async fn overlapping_recordings_keep_what_the_other_needs(db: &Db) {
    let src = source(db, None).await;
    let a = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let b = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    // s0, s1 only in A; s2, s3 in both; s4 only in B.
    let segs: Vec<SegmentInfo> = (0..5).map(|i| aged(src, i, 100 - i, 1000 + i)).collect();
    for (i, seg) in segs.iter().enumerate() {
        let ids: Vec<String> = match i {
            0 | 1 => vec![a.clone()],
            2 | 3 => vec![a.clone(), b.clone()],
            _ => vec![b.clone()],
        };
        db.add_recorded_segment(&ids, seg).await.unwrap();
    }
    assert_eq!(db.source_usage(src).await.unwrap(), (5010, 5), "each object counted once");
    let usage_b = db.recording_usage(&b).await.unwrap();
    assert_eq!((usage_b.bytes, usage_b.segments), (1002 + 1003 + 1004, 3));
    let b_keys = keys(db, &b).await;

    db.stop_recording(&a).await.unwrap();
    assert_eq!(db.delete_recording(&a, DeletionReason::User).await.unwrap(), 2, "only A's own segments");
    let mut only_a = vec![(segs[0].uri.clone(), DeletionReason::User), (segs[1].uri.clone(), DeletionReason::User)];
    only_a.sort();
    assert_eq!(due(db, src).await, only_a);
    assert_eq!(keys(db, &b).await, b_keys, "B keeps every segment");
    assert_eq!(db.source_usage(src).await.unwrap(), (3009, 3));
    assert!(matches!(db.delete_recording(&a, DeletionReason::User).await, Err(DbError::NotFound { .. })));

    db.set_hold(&b, true).await.unwrap();
    assert!(matches!(db.delete_recording(&b, DeletionReason::User).await, Err(DbError::Conflict(_))));
    assert_eq!(keys(db, &b).await, b_keys, "a held recording is untouched");
    db.set_hold(&b, false).await.unwrap();
    assert_eq!(db.delete_recording(&b, DeletionReason::User).await.unwrap(), 3);
    assert_eq!(due(db, src).await.len(), 5, "every object queued once");
    assert_eq!(db.source_usage(src).await.unwrap(), (0, 0));
}

async fn deleting_a_source_needs_a_policy_and_spares_held_recordings(db: &Db) {
    for policy in [RecordingsPolicy::Retain, RecordingsPolicy::Delete] {
        let src = source(db, None).await;
        let kept = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
        let held = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
        for i in 0..3 {
            db.add_recorded_segment(&[kept.clone(), held.clone()], &aged(src, i, 50, 10)).await.unwrap();
        }
        db.set_hold(&held, true).await.unwrap();
        let refused = db.delete_source(src, None).await.unwrap_err().to_string();
        assert!(refused.contains("2 recording(s)") && refused.contains("recordings=retain"), "{refused}");
        if policy == RecordingsPolicy::Delete {
            let refused = db.delete_source(src, Some(policy)).await.unwrap_err().to_string();
            assert!(refused.contains("on hold"), "{refused}");
            assert!(db.get_source(src).await.is_ok(), "nothing deleted");
            db.set_hold(&held, false).await.unwrap();
        }
        let deleted = db.delete_source(src, Some(policy)).await.unwrap();
        assert!(matches!(db.get_source(src).await, Err(DbError::NotFound { .. })));
        match policy {
            RecordingsPolicy::Retain => {
                assert_eq!((deleted.recordings_retained, deleted.objects_queued), (2, 0));
                let recording = db.get_recording(&kept).await.unwrap();
                assert_eq!(recording.source, src);
                assert!(recording.source_name.is_some(), "the name stays with the recording");
                assert_eq!(keys(db, &kept).await.len(), 3);
                assert!(due(db, src).await.is_empty());
            }
            RecordingsPolicy::Delete => {
                assert_eq!((deleted.recordings_deleted, deleted.objects_queued), (2, 3));
                assert!(matches!(db.get_recording(&kept).await, Err(DbError::NotFound { .. })));
                assert_eq!(due(db, src).await.len(), 3);
                assert_eq!(db.source_usage(src).await.unwrap(), (0, 0));
            }
        }
    }
}

async fn the_deletion_queue_retries_forgets_and_spares_returning_segments(db: &Db) {
    let src = source(db, None).await;
    let rec = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let other = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let segs: Vec<SegmentInfo> = (0..3).map(|i| aged(src, i, 30, 10)).collect();
    for seg in &segs {
        db.add_recorded_segment(std::slice::from_ref(&rec), seg).await.unwrap();
    }
    db.delete_recording(&rec, DeletionReason::User).await.unwrap();
    assert_eq!(due(db, src).await.len(), 3);

    // A failure waits: not due until its time.
    db.defer_deletion(&segs[0].uri, "store down", Utc::now() + TimeDelta::hours(1)).await.unwrap();
    assert_eq!(due(db, src).await.len(), 2);
    // The bus redelivers a report naming a recording that still exists: the segment is back, its deletion off.
    db.add_recorded_segment(std::slice::from_ref(&other), &segs[1]).await.unwrap();
    assert_eq!(due(db, src).await, vec![(segs[2].uri.clone(), DeletionReason::User)]);
    assert_eq!(
        db.referenced_keys(&[segs[1].uri.clone(), segs[2].uri.clone()]).await.unwrap(),
        vec![segs[1].uri.clone()]
    );
    assert_eq!(db.finish_deletions(std::slice::from_ref(&segs[2].uri)).await.unwrap(), 1);
    assert!(due(db, src).await.is_empty());
    assert_eq!(
        db.pending_keys(&segs.iter().map(|s| s.uri.clone()).collect::<Vec<_>>()).await.unwrap(),
        vec![segs[0].uri.clone()]
    );

    // Orphans are queued unless a segment refers to them.
    let orphan = format!("recordings/{src}/orphan.ts");
    let queued = db.queue_orphans(&[(orphan.clone(), 7), (segs[1].uri.clone(), 10)]).await.unwrap();
    assert_eq!(queued, 1);
    assert_eq!(due(db, src).await, vec![(orphan.clone(), DeletionReason::Orphan)]);
    // Leave nothing queued in the shared database (a deferred intent would hold other suites' queues open).
    db.finish_deletions(&[orphan, segs[0].uri.clone()]).await.unwrap();
}

async fn retention_by_age_deletes_oldest_first_and_never_held(db: &Db) {
    let src = source(db, Some(Retention { max_age_secs: Some(3600), max_bytes: None })).await;
    let old = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let held = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let live = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    // `old`: 3 segments two hours old; `held`: 2 as old, on hold; `live`: 2 segments, one old and one new.
    let mut seq = 0;
    let mut add = |rec: &str, age: i64| {
        seq += 1;
        (rec.to_owned(), aged(src, seq, age, 100))
    };
    let plan = vec![
        add(&old, 7300),
        add(&old, 7250),
        add(&old, 7200),
        add(&held, 7300),
        add(&held, 7200),
        add(&live, 7100),
        add(&live, 10),
    ];
    for (rec, seg) in &plan {
        db.add_recorded_segment(std::slice::from_ref(rec), seg).await.unwrap();
    }
    db.stop_recording(&old).await.unwrap();
    db.stop_recording(&held).await.unwrap();
    db.set_hold(&held, true).await.unwrap();

    let cutoff = Utc::now() - TimeDelta::seconds(3600);
    let first = db.expire_segments(src, cutoff, 2).await.unwrap();
    assert_eq!((first.segments_deleted, first.bytes_deleted), (2, 200), "a batch at a time, oldest first");
    let expired: Vec<String> = due(db, src).await.into_iter().map(|(key, _)| key).collect();
    let mut oldest = vec![plan[0].1.uri.clone(), plan[1].1.uri.clone()];
    oldest.sort();
    assert_eq!(expired, oldest);
    let rest = db.expire_segments(src, cutoff, 100).await.unwrap();
    assert_eq!((rest.segments_deleted, rest.recordings_deleted), (2, 1), "the finished recording goes with its last");
    assert!(db.expire_segments(src, cutoff, 100).await.unwrap().segments_deleted == 0);
    assert!(matches!(db.get_recording(&old).await, Err(DbError::NotFound { .. })));
    assert_eq!(keys(db, &held).await.len(), 2, "held: untouched");
    assert_eq!(keys(db, &live).await, vec![plan[6].1.uri.clone()], "still recording: kept, minus its old segment");
    assert!(db.get_recording(&live).await.is_ok());
    assert!(due(db, src).await.iter().all(|(_, reason)| *reason == DeletionReason::Retention));
    let stored = db.stored_sources().await.unwrap().into_iter().find(|s| s.source == src).unwrap();
    assert_eq!((stored.bytes, stored.segments, stored.own.max_age_secs, stored.deleted), (300, 3, Some(3600), false));
}

async fn the_cap_deletes_just_enough_oldest_segments(db: &Db) {
    let src = source(db, Some(Retention { max_age_secs: None, max_bytes: Some(1000) })).await;
    let held = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    let rec = db.create_recording(src, None, None, Utc::now()).await.unwrap().id;
    db.add_recorded_segment(std::slice::from_ref(&held), &aged(src, 0, 900, 300)).await.unwrap();
    db.set_hold(&held, true).await.unwrap();
    let segs: Vec<SegmentInfo> = (1..=5).map(|i| aged(src, i, 800 - i * 10, 200)).collect();
    for seg in &segs {
        db.add_recorded_segment(std::slice::from_ref(&rec), seg).await.unwrap();
    }
    // 300 held + 5 x 200 = 1300 bytes over a 1000-byte cap: the two oldest unheld go (1300 - 400 = 900).
    let report = db.cap_segments(src, None, 100).await.unwrap();
    assert_eq!((report.segments_deleted, report.bytes_deleted), (2, 400));
    let mut expect = vec![(segs[0].uri.clone(), DeletionReason::Cap), (segs[1].uri.clone(), DeletionReason::Cap)];
    expect.sort();
    assert_eq!(due(db, src).await, expect);
    assert_eq!(db.source_usage(src).await.unwrap(), (900, 4));
    assert_eq!(db.cap_segments(src, None, 100).await.unwrap().segments_deleted, 0, "within the cap now");
    // The default applies only where the source has no cap of its own.
    let uncapped = source(db, None).await;
    let r = db.create_recording(uncapped, None, None, Utc::now()).await.unwrap().id;
    for i in 0..3 {
        db.add_recorded_segment(std::slice::from_ref(&r), &aged(uncapped, i, 100 - i, 100)).await.unwrap();
    }
    assert_eq!(db.cap_segments(uncapped, None, 100).await.unwrap().segments_deleted, 0);
    assert_eq!(db.cap_segments(uncapped, Some(150), 100).await.unwrap().segments_deleted, 2);
}

async fn one_worker_at_a_time(db: &Db) {
    let first = db.try_lead(Work::Deletions).await.unwrap().expect("nobody holds it");
    assert!(db.try_lead(Work::Deletions).await.unwrap().is_none(), "held");
    let other = db.try_lead(Work::Retention).await.unwrap().expect("another kind of work is separate");
    first.release().await;
    let again = db.try_lead(Work::Deletions).await.unwrap().expect("released");
    again.release().await;
    other.release().await;
}
