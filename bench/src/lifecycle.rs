//! The recordings' lifecycle at scale, against a running control node on PostgreSQL and S3 (`bench/lifecycle.sh`
//! starts everything): deleting a source with many recorded segments, a retention pass over many more, and a
//! garbage-collection scan of a large bucket. The index rows are written straight into PostgreSQL (what the
//! inbox would write, a hundred thousand times faster); the objects are real S3 objects. Reports wall time, S3
//! requests, the control node's peak RSS and the database's work (transactions, rows touched).

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use bytes::Bytes;
use livemix_common::store::{
    ObjectStore,
    s3::{S3Config, S3Store},
};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::procs;

#[derive(Debug, Clone, clap::Args)]
pub struct LifecycleArgs {
    /// The control node's management API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub management: String,
    /// The control node's process id, for its RSS.
    #[arg(long)]
    pub control_pid: u32,
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "LIVEMIX_BUCKET")]
    pub bucket: String,
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Recorded segments of the source deleted with `recordings=delete` (all real objects).
    #[arg(long, default_value_t = 10_000)]
    pub delete_segments: i64,
    /// Expired segments of the retention pass (index rows; their objects need not exist: deleting a missing key
    /// succeeds on S3, so the worker's requests are the same).
    #[arg(long, default_value_t = 100_000)]
    pub retention_segments: i64,
    /// Objects the GC scan lists (real objects, all indexed, plus 100 orphans).
    #[arg(long, default_value_t = 100_000)]
    pub gc_objects: i64,
    /// Concurrent uploads while seeding the bucket.
    #[arg(long, default_value_t = 16)]
    pub upload_concurrency: usize,
    /// Where the markdown report goes.
    #[arg(long, default_value = "bench/results/lifecycle.md")]
    pub out: PathBuf,
}

pub async fn run(args: LifecycleArgs) -> anyhow::Result<()> {
    let db = PgPool::connect(&args.database_url).await.context("PostgreSQL")?;
    let store = S3Store::connect(S3Config {
        bucket: args.bucket.clone(),
        endpoint: args.s3_endpoint.clone(),
        region: "us-east-1".into(),
        create_bucket: true,
    })
    .await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let bench = Bench { args: &args, db, store, http };
    let mut report = String::from("# Recordings' lifecycle at scale\n\n");
    let _ = writeln!(
        report,
        "Control node: `{}`; PostgreSQL and moto S3 from `scripts/services.sh`, one machine.\n",
        args.management
    );
    report.push_str("| scenario | size | API call | until the bucket is clean | S3 delete requests | control peak RSS | DB transactions | DB rows deleted |\n|---|---|---|---|---|---|---|---|\n");
    report.push_str(&bench.delete_source().await?);
    report.push_str(&bench.retention().await?);
    report.push_str(&bench.gc().await?);
    report.push('\n');
    println!("{report}");
    std::fs::write(&args.out, report).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

struct Bench<'a> {
    args: &'a LifecycleArgs,
    db: PgPool,
    store: S3Store,
    http: reqwest::Client,
}

/// What the database did between two readings of `pg_stat_database`.
#[derive(Clone, Copy)]
struct DbWork {
    xacts: i64,
    deleted: i64,
}

impl Bench<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.args.management)
    }

    async fn db_work(&self) -> anyhow::Result<DbWork> {
        let (xacts, deleted): (i64, i64) = sqlx::query_as(
            "SELECT xact_commit + xact_rollback, tup_deleted FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&self.db)
        .await?;
        Ok(DbWork { xacts, deleted })
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.http.get(self.url("/metrics")).send().await?.text().await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Deletions still queued for this source's objects.
    async fn pending(&self, source: Uuid) -> anyhow::Result<i64> {
        let pattern = format!("recordings/{source}/%");
        Ok(sqlx::query_scalar("SELECT count(*) FROM object_deletions WHERE key LIKE $1")
            .bind(pattern)
            .fetch_one(&self.db)
            .await?)
    }

    /// A source with one finished recording of `count` segments whose `end_ts` lies `age_days` back, keys under
    /// `recordings/<source>/<run>/`.
    async fn seed(&self, count: i64, age_days: i64) -> anyhow::Result<(Uuid, String, Vec<String>)> {
        let (source, recording, run) = (Uuid::new_v4(), ulid::Ulid::new().to_string(), ulid::Ulid::new().to_string());
        let name = format!("bench-lifecycle-{}", &source.to_string()[..8]);
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO sources (id, name, segment_length) VALUES ($1, $2, 2)")
            .bind(source)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO recordings (id, source, source_name, start_ts, end_ts, active) \
             VALUES ($1, $2, $3, now() - make_interval(days => $4::int), now() - make_interval(days => $4::int) \
                 + make_interval(secs => $5::float8 * 2), false)",
        )
        .bind(&recording)
        .bind(source)
        .bind(&name)
        .bind(age_days)
        .bind(count as f64)
        .execute(&mut *tx)
        .await?;
        let prefix = format!("recordings/{source}/{run}/");
        sqlx::query(
            "INSERT INTO segments (source, name, run, seq, start_ts, end_ts, length_ms, size, uri) \
             SELECT $1, 'index' || g || '.ts', $2, g, \
                 now() - make_interval(days => $3::int) + g * interval '2 seconds', \
                 now() - make_interval(days => $3::int) + (g + 1) * interval '2 seconds', 2000, 1000, \
                 $4 || lpad(g::text, 12, '0') || '.ts' \
             FROM generate_series(0, $5 - 1) g",
        )
        .bind(source)
        .bind(&run)
        .bind(age_days)
        .bind(&prefix)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO recording_segments (recording, segment) SELECT $1, id FROM segments WHERE source = $2",
        )
        .bind(&recording)
        .bind(source)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let keys = (0..count).map(|g| format!("{prefix}{g:012}.ts")).collect();
        Ok((source, recording, keys))
    }

    async fn upload(&self, keys: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let body = Bytes::from(vec![0x47u8; 1000]);
        let chunk = keys.len().div_ceil(self.args.upload_concurrency.max(1)).max(1);
        let uploads = keys.chunks(chunk).map(|chunk| {
            let (store, body) = (self.store.clone(), body.clone());
            async move {
                for key in chunk {
                    // moto answers slowly now and then under this load: a put is tried three times.
                    let mut tries = 0;
                    while let Err(err) = store.put(key, body.clone()).await {
                        tries += 1;
                        anyhow::ensure!(tries < 3, "uploading {key}: {err}");
                    }
                }
                anyhow::Ok(())
            }
        });
        for result in futures::future::join_all(uploads).await {
            result?;
        }
        Ok(started.elapsed())
    }

    /// Waits for the deletion queue to empty, sampling the control node's RSS; returns the time and peak RSS.
    async fn drain(&self, source: Uuid, since: Instant) -> anyhow::Result<(Duration, u64)> {
        let mut peak = 0;
        loop {
            if let Some(sample) = procs::sample(self.args.control_pid) {
                peak = peak.max(sample.rss_kib * 1024);
            }
            if self.pending(source).await? == 0 {
                return Ok((since.elapsed(), peak));
            }
            ensure!(since.elapsed() < Duration::from_secs(3600), "the deletion queue did not drain within an hour");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn delete_source(&self) -> anyhow::Result<String> {
        let n = self.args.delete_segments;
        let (source, _, keys) = self.seed(n, 1).await?;
        let upload = self.upload(&keys).await?;
        eprintln!("delete: {n} objects uploaded in {upload:.1?}");
        let (before, requests) =
            (self.db_work().await?, self.metric("livemix_control_object_delete_requests_total").await?);
        let started = Instant::now();
        let resp = self.http.delete(self.url(&format!("/v1/source/{source}?recordings=delete"))).send().await?;
        ensure!(resp.status().is_success(), "DELETE source: {}", resp.text().await?);
        let api = started.elapsed();
        let (total, peak) = self.drain(source, started).await?;
        let after = self.db_work().await?;
        let requests = self.metric("livemix_control_object_delete_requests_total").await? - requests;
        let left = self.store.list(&format!("recordings/{source}/"), None, 10).await?.len();
        ensure!(left == 0, "{left} objects left after the delete");
        Ok(row("delete a source (`recordings=delete`)", n, api, total, requests, peak, before, after))
    }

    async fn retention(&self) -> anyhow::Result<String> {
        let n = self.args.retention_segments;
        let (source, recording, _) = self.seed(n, 60).await?;
        sqlx::query("UPDATE sources SET retention_max_age_secs = 86400 WHERE id = $1")
            .bind(source)
            .execute(&self.db)
            .await?;
        let (before, requests) =
            (self.db_work().await?, self.metric("livemix_control_object_delete_requests_total").await?);
        let started = Instant::now();
        let sampler = self.sample_rss();
        let resp = self.http.post(self.url("/v1/storage/retention")).send().await?;
        let body: Value = resp.json().await?;
        let api = started.elapsed();
        let pass_peak = sampler.stop().await;
        ensure!(body["retention"]["segments_deleted"].as_i64() >= Some(n), "retention pass: {body}");
        let (total, peak) = self.drain(source, started).await?;
        let after = self.db_work().await?;
        let requests = self.metric("livemix_control_object_delete_requests_total").await? - requests;
        let gone: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE id = $1")
            .bind(&recording)
            .fetch_optional(&self.db)
            .await?;
        ensure!(gone == Some(0), "the expired recording is still there");
        Ok(row("retention pass (age), expired segments", n, api, total, requests, peak.max(pass_peak), before, after))
    }

    async fn gc(&self) -> anyhow::Result<String> {
        let n = self.args.gc_objects;
        let (source, _, keys) = self.seed(n, 1).await?;
        let upload = self.upload(&keys).await?;
        let orphans: Vec<String> = (0..100).map(|i| format!("recordings/{source}/lost/{i:012}.ts")).collect();
        self.upload(&orphans).await?;
        eprintln!("gc: {n} objects uploaded in {upload:.1?}");
        let before = self.db_work().await?;
        let started = Instant::now();
        let sampler = self.sample_rss();
        let path = format!("/v1/storage/gc?dry_run=true&grace_secs=0&prefix=recordings/{source}/");
        let body: Value = self.http.post(self.url(&path)).send().await?.json().await?;
        let api = started.elapsed();
        let peak = sampler.stop().await;
        let after = self.db_work().await?;
        ensure!(body["gc"]["listed"].as_i64() == Some(n + 100) && body["gc"]["orphan_count"] == 100, "gc: {body}");
        // Clean up after ourselves: the source and every object.
        let resp = self.http.delete(self.url(&format!("/v1/source/{source}?recordings=delete"))).send().await?;
        ensure!(resp.status().is_success());
        let orphan_path = format!("/v1/storage/gc?dry_run=false&grace_secs=0&prefix=recordings/{source}/lost/");
        self.http.post(self.url(&orphan_path)).send().await?;
        self.drain(source, Instant::now()).await?;
        Ok(row("GC scan (dry run), objects listed", n + 100, api, Duration::ZERO, 0.0, peak, before, after))
    }

    fn sample_rss(&self) -> RssPeak {
        let pid = self.args.control_pid;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                if let Some(sample) = procs::sample(pid) {
                    peak = peak.max(sample.rss_kib * 1024);
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        RssPeak { stop, task }
    }
}

struct RssPeak {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssPeak {
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    what: &str,
    n: i64,
    api: Duration,
    total: Duration,
    requests: f64,
    peak: u64,
    before: DbWork,
    after: DbWork,
) -> String {
    let total = if total.is_zero() { "—".to_owned() } else { format!("{:.1} s", total.as_secs_f64()) };
    let requests = if requests == 0.0 { "—".to_owned() } else { format!("{requests:.0}") };
    format!(
        "| {what} | {n} | {:.2} s | {total} | {requests} | {:.1} MiB | {} | {} |\n",
        api.as_secs_f64(),
        peak as f64 / (1024.0 * 1024.0),
        after.xacts - before.xacts,
        after.deleted - before.deleted,
    )
}
