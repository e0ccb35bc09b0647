//! Nothing is lost: reports keep flowing while the database stops answering
//! (PostgreSQL stopped for a few seconds; the SQLite file locked by another
//! writer), and once it is back every report is stored exactly once.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::support::store::*;
use outscore::store::{
    now_ms, spawn_writer_with, ReportFilter, ReportStore, SinkStats, Spool, Store, StoreOptions,
    WriterOptions,
};
use sqlx::Connection;

const REPORTS: usize = 300;

fn writer_options() -> WriterOptions {
    WriterOptions {
        batch_size: 32,
        write_timeout: Duration::from_secs(2),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        spool_rotate_bytes: 128 * 1024,
        ..WriterOptions::default()
    }
}

async fn table_count(store: &Store, table: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
    }
}

/// Submit `REPORTS` reports, one every `gap`, running `outage` once
/// `REPORTS / 5` have gone; then wait for the store to hold them all and
/// check each arrived exactly once.
async fn flow_through_outage<F, Fut>(store: &Store, gap: Duration, outage: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let spool_dir = tempfile::tempdir().unwrap();
    let (sink, writer) =
        spawn_writer_with(store.clone(), spool_dir.path(), writer_options()).unwrap();
    let mut want = BTreeSet::new();
    let mut outage_task = None;
    let mut outage = Some(outage);
    for i in 0..REPORTS {
        if i == REPORTS / 5 {
            let run = outage.take().expect("outage runs once");
            outage_task = Some(tokio::spawn(run()));
        }
        let r = report(i, "flow@example.com", now_ms(), 4.0, None);
        want.insert(r.id.to_string());
        let started = std::time::Instant::now();
        sink.submit(r);
        // The milter side never waits on the database.
        assert!(started.elapsed() < Duration::from_millis(200));
        tokio::time::sleep(gap).await;
    }
    outage_task.expect("outage started").await.unwrap();
    // Bounded wait for the replay to finish.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = store.count_reports().await.unwrap_or(0);
        if n as usize >= REPORTS || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.shutdown().await;
    let stats = sink.stats();
    let spooled = SinkStats::get(&stats.spooled) + SinkStats::get(&stats.overflowed);
    assert!(
        spooled > 0 && SinkStats::get(&stats.write_failures) > 0,
        "the outage must have been noticed and reports spooled: {stats:?}"
    );
    assert_eq!(SinkStats::get(&stats.lost), 0, "{stats:?}");
    // An outage is nobody's fault: nothing may be set aside as refused.
    assert_eq!(SinkStats::get(&stats.rejected), 0, "{stats:?}");
    assert!(SinkStats::get(&stats.replayed) > 0, "{stats:?}");

    let page = store
        .list_reports(&ReportFilter::default(), 10_000, None)
        .await
        .unwrap();
    let got: BTreeSet<String> = page.reports.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(page.reports.len(), REPORTS, "no duplicates in the list");
    assert_eq!(got, want, "every report arrived");
    assert_eq!(table_count(store, "reports").await, REPORTS as i64);
    assert_eq!(table_count(store, "report_content").await, REPORTS as i64);
    assert_eq!(table_count(store, "report_rcpts").await, 2 * REPORTS as i64);
    assert!(
        !Spool::open(spool_dir.path(), 1)
            .unwrap()
            .has_pending()
            .unwrap(),
        "spool drained"
    );
}

/// Another connection holds SQLite's write lock (root ignores file modes,
/// a lock it cannot ignore): writes fail after the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_outage_loses_nothing() {
    let db = sqlite_with(StoreOptions {
        busy_timeout: Duration::from_millis(100),
        ..options()
    })
    .await;
    let url = db.url.clone();
    flow_through_outage(&db.store, Duration::from_millis(5), move || async move {
        let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut blocker)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        blocker.close().await.unwrap();
    })
    .await;
}

/// Restarts the local PostgreSQL cluster when dropped, even on panic.
struct PgCluster {
    version: String,
}

impl PgCluster {
    fn find() -> Option<PgCluster> {
        let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        versions.sort();
        let version = versions.pop()?;
        let ok = Command::new("pg_ctlcluster").arg("--help").output().is_ok();
        ok.then_some(PgCluster { version })
    }

    fn ctl(&self, action: &str) -> bool {
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.args(["--skip-systemctl-redirect", &self.version, "main", action]);
        if action == "stop" {
            cmd.args(["-m", "fast"]);
        }
        cmd.output().is_ok_and(|out| out.status.success())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Already running in the normal case; this is the panic path.
        self.ctl("start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_loses_nothing() {
    let Some(cluster) = PgCluster::find() else {
        plain_notice("NOTE: pg_ctlcluster not found: the PostgreSQL outage test did NOT run.");
        return;
    };
    let Some(db) = postgres_with(StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..options()
    })
    .await
    else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    flow_through_outage(&db.store, Duration::from_millis(10), move || async move {
        tokio::task::spawn_blocking(move || {
            assert!(c.ctl("stop"), "pg_ctlcluster stop failed");
            std::thread::sleep(Duration::from_millis(1500));
            assert!(c.ctl("start"), "pg_ctlcluster start failed");
        })
        .await
        .unwrap();
    })
    .await;
    drop(cluster);
    db.drop_schema().await;
}
