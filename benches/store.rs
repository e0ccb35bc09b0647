//! Store speed: reports written per second (10 KB of content, batched) on
//! SQLite and PostgreSQL; what `ReportSink::submit` costs the milter while
//! the database is stuck; and the time to purge expired reports
//! (`OUTSCORE_BENCH_PURGE_ROWS`, 100,000 by default; 1,000,000 for the
//! issue's figure). PostgreSQL parts are skipped, saying so, when it is
//! unreachable.

// Shared with the integration tests; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/support/store.rs"]
mod store_support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use outscore::store::{
    now_ms, spawn_writer_with, ReportStore, Store, StoreOptions, StoredReport, WriterOptions,
};
use sqlx::Connection;
use store_support::*;

const BATCH: usize = 256;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// About 10 KB of mail-like text that compresses like real mail.
fn mail_report(i: usize) -> StoredReport {
    let mut r = report(i, "bench@example.com", now_ms(), 5.0, Some("L-SPAM00"));
    let mut body =
        format!("From: bench@example.com\r\nTo: rcpt@example.org\r\nSubject: offer {i}\r\n\r\n")
            .into_bytes();
    let words = [
        "account", "invoice", "limited", "offer", "click", "here", "free", "payment", "update",
        "password", "customer", "service", "today", "bonus", "secure",
    ];
    let mut x = i as u64 * 2_654_435_761 + 1;
    while body.len() < 10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        body.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    r.content = body;
    r
}

fn batches(n: usize) -> Vec<StoredReport> {
    (0..n).map(mail_report).collect()
}

fn bench_inserts(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_insert_10k");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    let sqlite_db = rt.block_on(sqlite());
    group.bench_function("sqlite", |b| {
        b.iter_batched(
            || batches(BATCH),
            |batch| rt.block_on(sqlite_db.store.insert_reports(&batch)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    match rt.block_on(postgres()) {
        Some(pg) => {
            group.bench_function("postgres", |b| {
                b.iter_batched(
                    || batches(BATCH),
                    |batch| rt.block_on(pg.store.insert_reports(&batch)).unwrap(),
                    BatchSize::PerIteration,
                )
            });
            rt.block_on(pg.drop_schema());
        }
        None => plain_notice("store_insert_10k/postgres did NOT run"),
    }
    group.finish();
}

/// What the milter pays per report while the database is stuck (another
/// connection holds SQLite's write lock): the queue and spool absorb it.
fn bench_submit_while_stuck(c: &mut Criterion) {
    let rt = runtime();
    let db = rt.block_on(sqlite_with(StoreOptions {
        busy_timeout: Duration::from_millis(200),
        ..options()
    }));
    let mut blocker = rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    });
    let spool = tempfile::tempdir().unwrap();
    let _guard = rt.enter();
    let (sink, writer) =
        spawn_writer_with(db.store.clone(), spool.path(), WriterOptions::default()).unwrap();
    let mut group = c.benchmark_group("submit_db_stuck");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("sqlite_locked", |b| {
        b.iter_batched(
            || mail_report(0),
            |mut r| {
                r.id = outscore::store::ReportId::random();
                sink.submit(r)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    rt.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        writer.shutdown().await;
    });
}

/// Fill `rows` expired reports (with recipients and ~2.5 KB of content)
/// straight in SQL, so only the purge is timed.
async fn fill_expired(store: &Store, rows: i64, offset: i64) {
    let at = (chrono::Utc::now() - chrono::Duration::hours(100)).timestamp_millis();
    match store {
        Store::Sqlite(s) => {
            let mut tx = s.pool().begin().await.unwrap();
            for (sql, _) in [
                (
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                  INSERT INTO reports (id, created_at, account, mail_from, rcpt_count, score, \
                  action, total_us, envelope, report) SELECT printf('%016x', i + $2), $3, \
                  'bench@x.org', 'bench@x.org', 1, 1.0, 'accept', 0, '{}', '{}' FROM n",
                    0,
                ),
                (
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                  INSERT INTO report_rcpts (report_id, rcpt, created_at) \
                  SELECT printf('%016x', i + $2), 'r@x.org', $3 FROM n",
                    1,
                ),
                (
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                  INSERT INTO report_content (report_id, created_at, compression, raw_size, data) \
                  SELECT printf('%016x', i + $2), $3, 'none', 2500, randomblob(2500) FROM n",
                    2,
                ),
            ] {
                sqlx::query(sql)
                    .bind(rows)
                    .bind(offset)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        Store::Postgres(s) => {
            for sql in [
                "INSERT INTO reports (id, created_at, account, mail_from, rcpt_count, score, \
                 action, total_us, envelope, report) SELECT lpad(to_hex(i + $2), 16, '0'), $3, \
                 'bench@x.org', 'bench@x.org', 1, 1.0, 'accept', 0, '{}', '{}' \
                 FROM generate_series(1, $1) i",
                "INSERT INTO report_rcpts (report_id, rcpt, created_at) \
                 SELECT lpad(to_hex(i + $2), 16, '0'), 'r@x.org', $3 FROM generate_series(1, $1) i",
                "INSERT INTO report_content (report_id, created_at, compression, raw_size, data) \
                 SELECT lpad(to_hex(i + $2), 16, '0'), $3, 'none', 2560, \
                 convert_to(repeat(md5(i::text), 80), 'UTF8') FROM generate_series(1, $1) i",
            ] {
                sqlx::query(sql)
                    .bind(rows)
                    .bind(offset)
                    .bind(at)
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
        }
    }
}

/// Fill and purge `iters` times; only the purges are timed.
fn purge_timed(rt: &tokio::runtime::Runtime, store: &Store, rows: i64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for it in 0..iters {
        rt.block_on(fill_expired(store, rows, (it as i64 + 1) << 40));
        let cutoff = chrono::Utc::now() - chrono::Duration::hours(72);
        let started = Instant::now();
        let stats = rt
            .block_on(store.purge_reports_before(cutoff, outscore::store::PURGE_BATCH))
            .unwrap();
        total += started.elapsed();
        assert_eq!(stats.reports, rows as u64);
    }
    total
}

fn bench_purge(c: &mut Criterion) {
    let rows: i64 = std::env::var("OUTSCORE_BENCH_PURGE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = runtime();
    let mut group = c.benchmark_group(format!("purge_{rows}_expired"));
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    let sqlite_db = rt.block_on(sqlite());
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iters| purge_timed(&rt, &sqlite_db.store, rows, iters))
    });
    match rt.block_on(postgres()) {
        Some(pg) => {
            group.bench_function("postgres", |b| {
                b.iter_custom(|iters| purge_timed(&rt, &pg.store, rows, iters))
            });
            rt.block_on(pg.drop_schema());
        }
        None => plain_notice("purge/postgres did NOT run"),
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_inserts,
    bench_submit_while_stuck,
    bench_purge
);
criterion_main!(benches);
