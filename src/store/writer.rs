//! The report writer: the pipeline hands reports to a [`ReportSink`] (never
//! blocks, never fails); one task batches them into the database. When the
//! database is down or slow, or the queue is full, reports go to the disk
//! spool and are replayed in order once it answers again; the spool is
//! replayed first at start-up. Inserts are idempotent on the report id, so a
//! replay never duplicates. Knows nothing of SQL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::model::StoredReport;
use super::spool::{Spool, SpoolReader, Tail};
use super::{ReportStore, StoreError};
use crate::config::Config;

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Reports waiting in memory; more go straight to the spool.
    pub queue_capacity: usize,
    /// Most reports per database transaction.
    pub batch_size: usize,
    /// A batch slower than this is abandoned and spooled.
    pub write_timeout: Duration,
    /// First wait before retrying the database after a failure; doubles up
    /// to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Spool files are rotated at about this size.
    pub spool_rotate_bytes: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue_capacity: 10_000,
            batch_size: 256,
            write_timeout: Duration::from_secs(5),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            spool_rotate_bytes: 64 * 1024 * 1024,
        }
    }
}

impl WriterOptions {
    pub fn from_config(config: &Config) -> WriterOptions {
        WriterOptions {
            queue_capacity: config.store.queue_capacity,
            write_timeout: config.store.write_timeout,
            ..WriterOptions::default()
        }
    }
}

/// Counters of what happened to submitted reports.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Accepted into the in-memory queue.
    pub queued: AtomicU64,
    /// Queue full: written to the spool by the submitter.
    pub overflowed: AtomicU64,
    /// Written to the spool by the writer (database down or slow).
    pub spooled: AtomicU64,
    /// Inserted directly from the queue.
    pub inserted: AtomicU64,
    /// Inserted from the spool.
    pub replayed: AtomicU64,
    /// Failed batch writes (each leads to spooling).
    pub write_failures: AtomicU64,
    /// Reports the database refused while it answered other writes; kept in
    /// `<spool>/rejected/` for inspection instead of blocking the rest.
    pub rejected: AtomicU64,
    /// Reports that could not be kept anywhere (spool write failed too).
    pub lost: AtomicU64,
}

impl SinkStats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Where a submitted report went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// The queue was full: it is being written to the spool.
    Spooled,
}

/// The pipeline's handle: cheap to clone, `submit` never blocks.
#[derive(Debug, Clone)]
pub struct ReportSink {
    tx: mpsc::Sender<StoredReport>,
    spool: Arc<Spool>,
    stats: Arc<SinkStats>,
    spool_dirty: Arc<AtomicBool>,
    overflow: TaskTracker,
}

impl ReportSink {
    /// Hand a report to the writer. Never blocks: when the queue is full the
    /// report is written to the spool on a blocking thread.
    pub fn submit(&self, report: StoredReport) -> Submitted {
        let report = match self.tx.try_send(report) {
            Ok(()) => {
                SinkStats::add(&self.stats.queued, 1);
                return Submitted::Queued;
            }
            Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => r,
        };
        SinkStats::add(&self.stats.overflowed, 1);
        let spool = self.spool.clone();
        let stats = self.stats.clone();
        let dirty = self.spool_dirty.clone();
        let write = move || match spool.append(std::slice::from_ref(&report)) {
            Ok(()) => dirty.store(true, Ordering::Release),
            Err(e) => {
                SinkStats::add(&stats.lost, 1);
                error!(report = %report.id, error = %e, "report lost: queue full and spool unwritable");
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.overflow.spawn_blocking(write);
        } else {
            write();
        }
        Submitted::Spooled
    }

    pub fn stats(&self) -> &SinkStats {
        &self.stats
    }

    /// Reports waiting in memory for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Owns the writer task; `shutdown` flushes what is queued.
#[derive(Debug)]
pub struct WriterHandle {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    overflow: TaskTracker,
    spool: Arc<Spool>,
    stats: Arc<SinkStats>,
}

impl WriterHandle {
    /// Stop taking reports, write what is queued (to the database, or the
    /// spool if it is down) and wait for spool writes in flight.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            error!(error = %e, "report writer ended abnormally");
        }
        self.overflow.close();
        self.overflow.wait().await;
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn stats(&self) -> &SinkStats {
        &self.stats
    }
}

/// Start the writer for the daemon: spool under the configured directory.
pub fn spawn_writer<S>(store: S, config: &Config) -> Result<(ReportSink, WriterHandle), StoreError>
where
    S: ReportStore + Clone + 'static,
{
    spawn_writer_with(
        store,
        &config.spool_dir(),
        WriterOptions::from_config(config),
    )
}

/// Start the writer with explicit options. The spool is replayed before the
/// first queued report is written.
pub fn spawn_writer_with<S>(
    store: S,
    spool_dir: &Path,
    options: WriterOptions,
) -> Result<(ReportSink, WriterHandle), StoreError>
where
    S: ReportStore + Clone + 'static,
{
    let spool = Arc::new(Spool::open(spool_dir, options.spool_rotate_bytes)?);
    let rejected = Arc::new(Spool::open(
        &spool_dir.join("rejected"),
        options.spool_rotate_bytes,
    )?);
    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    let stats = Arc::new(SinkStats::default());
    let cancel = CancellationToken::new();
    let overflow = TaskTracker::new();
    let spool_dirty = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        store,
        spool: spool.clone(),
        rejected,
        options,
        stats: stats.clone(),
        spool_dirty: spool_dirty.clone(),
    };
    let task = tokio::spawn(writer.run(rx, cancel.clone()));
    Ok((
        ReportSink {
            tx,
            spool: spool.clone(),
            stats: stats.clone(),
            spool_dirty,
            overflow: overflow.clone(),
        },
        WriterHandle {
            cancel,
            task,
            overflow,
            spool,
            stats,
        },
    ))
}

struct Writer<S> {
    store: S,
    spool: Arc<Spool>,
    rejected: Arc<Spool>,
    options: WriterOptions,
    stats: Arc<SinkStats>,
    spool_dirty: Arc<AtomicBool>,
}

/// Why a replay stopped early.
enum ReplayError {
    Store(StoreError),
    Spool(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Store(e) => write!(f, "{e}"),
            ReplayError::Spool(e) => f.write_str(e),
        }
    }
}

impl<S: ReportStore + Clone + 'static> Writer<S> {
    async fn run(self, mut rx: mpsc::Receiver<StoredReport>, cancel: CancellationToken) {
        let mut backoff = self.options.retry_min;
        // Start-up: whatever a previous run spooled goes in first. A store
        // opened lazily (database down at start-up) is migrated here first.
        let mut degraded = self.spool_pending().await || !self.schema_ready().await;
        let mut retry_at = Instant::now();
        if degraded {
            match self.replay().await {
                Ok(()) => degraded = false,
                Err(e) => {
                    warn!(error = %e, "spool replay failed at start-up; will retry");
                    retry_at = Instant::now() + backoff;
                }
            }
        }
        loop {
            if self.spool_dirty.swap(false, Ordering::AcqRel) && !degraded {
                degraded = true;
                retry_at = Instant::now();
            }
            let first = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                item = rx.recv() => match item {
                    Some(r) => Some(r),
                    None => break,
                },
                _ = tokio::time::sleep_until(retry_at), if degraded => None,
                // Notice overflow spooled by submitters while idle.
                _ = tokio::time::sleep(self.options.retry_min), if !degraded => None,
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < self.options.batch_size {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                if degraded {
                    self.to_spool(batch).await;
                } else if let Err(e) = self.write(&batch).await {
                    warn!(reports = batch.len(), error = %e, "database write failed; spooling");
                    self.to_spool(batch).await;
                    degraded = true;
                    retry_at = Instant::now() + backoff;
                }
            }
            if degraded && Instant::now() >= retry_at {
                match self.replay().await {
                    Ok(()) => {
                        info!("database is back; spool replayed");
                        degraded = false;
                        backoff = self.options.retry_min;
                    }
                    Err(e) => {
                        backoff = (backoff * 2).min(self.options.retry_max);
                        retry_at = Instant::now() + backoff;
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "spool replay failed");
                    }
                }
            }
        }
        // Shutdown: nothing more comes in; write or spool what is queued.
        rx.close();
        let mut rest = Vec::new();
        while let Some(r) = rx.recv().await {
            rest.push(r);
        }
        for batch in rest.chunks(self.options.batch_size.max(1)) {
            let batch = batch.to_vec();
            if degraded || self.write(&batch).await.is_err() {
                degraded = true;
                self.to_spool(batch).await;
            }
        }
    }

    /// One batch into the database within the write timeout.
    async fn write(&self, batch: &[StoredReport]) -> Result<(), StoreError> {
        match self.insert_isolating(batch).await {
            Ok(()) => {
                SinkStats::add(&self.stats.inserted, batch.len());
                Ok(())
            }
            Err(e) => {
                SinkStats::add(&self.stats.write_failures, 1);
                Err(e)
            }
        }
    }

    async fn insert_timed(&self, batch: &[StoredReport]) -> Result<u64, StoreError> {
        match tokio::time::timeout(self.options.write_timeout, self.store.insert_reports(batch))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(StoreError::Query {
                what: "insert reports (timed out)",
                source: sqlx::Error::PoolTimedOut,
            }),
        }
    }

    async fn answers(&self) -> bool {
        let ping = tokio::time::timeout(self.options.write_timeout, self.store.ping()).await;
        matches!(ping, Ok(Ok(())))
    }

    /// Insert a batch. When it fails but the database answers, the batch
    /// holds a report the database refuses: insert one by one and set the
    /// refused ones aside, so one bad report never holds up the rest.
    async fn insert_isolating(&self, batch: &[StoredReport]) -> Result<(), StoreError> {
        let err = match self.insert_timed(batch).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !err.is_refusal() || !self.answers().await {
            return Err(err);
        }
        for report in batch {
            let Err(e) = self.insert_timed(std::slice::from_ref(report)).await else {
                continue;
            };
            // A lock, a full disk or an outage is not this report's fault:
            // spool the batch and retry later.
            if !e.is_refusal() || !self.answers().await {
                return Err(e);
            }
            let rejected = self.rejected.clone();
            let copy = report.clone();
            let kept = tokio::task::spawn_blocking(move || rejected.append(&[copy])).await;
            match kept {
                Ok(Ok(())) => {
                    SinkStats::add(&self.stats.rejected, 1);
                    error!(report = %report.id, error = %e, dir = %self.rejected.dir().display(), "database refused a report; set aside");
                }
                _ => {
                    SinkStats::add(&self.stats.lost, 1);
                    error!(report = %report.id, error = %e, "database refused a report and it could not be set aside");
                }
            }
        }
        Ok(())
    }

    async fn to_spool(&self, batch: Vec<StoredReport>) {
        let n = batch.len();
        let spool = self.spool.clone();
        let result = tokio::task::spawn_blocking(move || spool.append(&batch)).await;
        match result {
            Ok(Ok(())) => SinkStats::add(&self.stats.spooled, n),
            Ok(Err(e)) => {
                SinkStats::add(&self.stats.lost, n);
                error!(reports = n, error = %e, "reports lost: database and spool both failed");
            }
            Err(e) => {
                SinkStats::add(&self.stats.lost, n);
                error!(reports = n, error = %e, "reports lost: spool writer panicked");
            }
        }
    }

    async fn schema_ready(&self) -> bool {
        let ready =
            tokio::time::timeout(self.options.write_timeout, self.store.ensure_schema()).await;
        match ready {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(error = %e, "database schema not ready");
                false
            }
            Err(_) => false,
        }
    }

    async fn spool_pending(&self) -> bool {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.has_pending()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the spool directory");
                false
            }
            Err(_) => false,
        }
    }

    /// Replay every spool file in order; a file is deleted once all of it is
    /// in the database. Rounds repeat while new files appear (bounded).
    async fn replay(&self) -> Result<(), ReplayError> {
        match tokio::time::timeout(self.options.write_timeout, self.store.ensure_schema()).await {
            Ok(result) => result.map_err(ReplayError::Store)?,
            Err(_) => {
                return Err(ReplayError::Store(StoreError::Query {
                    what: "migrations (timed out)",
                    source: sqlx::Error::PoolTimedOut,
                }))
            }
        }
        for _round in 0..16 {
            let spool = self.spool.clone();
            let files = tokio::task::spawn_blocking(move || spool.seal())
                .await
                .map_err(|e| ReplayError::Spool(e.to_string()))?
                .map_err(|e| ReplayError::Spool(e.to_string()))?;
            if files.is_empty() {
                return Ok(());
            }
            for path in files {
                self.replay_file(&path).await?;
            }
        }
        Ok(())
    }

    async fn replay_file(&self, path: &Path) -> Result<(), ReplayError> {
        let open_path = path.to_path_buf();
        let mut reader = tokio::task::spawn_blocking(move || SpoolReader::open(&open_path))
            .await
            .map_err(|e| ReplayError::Spool(e.to_string()))?
            .map_err(|e| ReplayError::Spool(e.to_string()))?;
        let batch_size = self.options.batch_size.max(1);
        // Bounded by the file's size: every round consumes frames or ends.
        loop {
            let (r, batch) = tokio::task::spawn_blocking(move || {
                let batch = reader.next_batch(batch_size);
                (reader, batch)
            })
            .await
            .map_err(|e| ReplayError::Spool(e.to_string()))?;
            reader = r;
            let batch = batch.map_err(|e| ReplayError::Spool(e.to_string()))?;
            if batch.is_empty() {
                break;
            }
            self.insert_isolating(&batch)
                .await
                .map_err(ReplayError::Store)?;
            SinkStats::add(&self.stats.replayed, batch.len());
        }
        let spool = self.spool.clone();
        let path = path.to_path_buf();
        let damaged = matches!(reader.tail(), Some(Tail::Damaged { .. }));
        tokio::task::spawn_blocking(move || {
            if damaged {
                spool.set_aside(&path).map(|to| {
                    warn!(kept = %to.display(), "damaged spool file set aside after replaying its whole frames");
                })
            } else {
                spool.remove(&path)
            }
        })
        .await
        .map_err(|e| ReplayError::Spool(e.to_string()))?
        .map_err(|e| ReplayError::Spool(e.to_string()))
    }
}
