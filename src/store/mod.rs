//! Storage of reports, message content, account state, the audit log, the
//! notification outbox, volume counters and the verdicts the classifier
//! learned, behind traits, with SQLite (default) and PostgreSQL backends, a
//! disk spool and retention purging.
//! Knows nothing of the milter protocol, rules or scoring beyond the report
//! type it keeps.
//!
//! # Using it from the daemon
//!
//! ```no_run
//! # async fn demo(config: &outscore::config::Config) -> Result<(), outscore::store::StoreError> {
//! use outscore::store::{self, StoredReport};
//! // Never fails because the database is down (only on a bad URL): the
//! // writer spools until it answers, then migrates and replays.
//! let store = store::open_for_daemon(config).await?;
//! let (sink, writer) = store::spawn_writer(store.clone(), config)?; // replays the spool first
//! let _purger = store::spawn_purger(store.clone(), config);
//! // In the pipeline, once the verdict is known (never blocks, never fails;
//! // `Pipeline` can hold a `ReportSink` clone):
//! # let (envelope, report, raw) = Default::default();
//! let stored = StoredReport::new(envelope, report, None, "accept", raw);
//! let id = stored.id.clone();                       // quote it in the SMTP reply
//! sink.submit(stored);
//! // On shutdown, after the milter has drained:
//! writer.shutdown().await;
//! # let _ = id; Ok(()) }
//! ```

mod backend;
pub mod model;
mod postgres;
mod retention;
mod spool;
mod sqlite;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;

pub use model::*;
pub use postgres::PgStore;
pub use retention::{
    purge_once, spawn_purger, spawn_purger_every, PurgeReport, Purger, PURGE_BATCH,
};
pub use spool::{Spool, SpoolError, SpoolReader, Tail};
pub use sqlite::SqliteStore;
pub use writer::{
    spawn_writer, spawn_writer_with, ReportSink, SinkStats, Submitted, WriterHandle, WriterOptions,
};

/// Why the store could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?} (want sqlite:… or postgres://…)")]
    Url(String),
    #[error("cannot open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed ({what}): {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("account {account}: changed concurrently, try again")]
    Conflict { account: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl StoreError {
    /// Whether the database answered and refused this data (a constraint, a
    /// value it cannot hold, a trigger), as opposed to being down, locked,
    /// full or slow. Only a refusal justifies setting a report aside.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } => true,
            StoreError::Query { source, .. } => match source {
                sqlx::Error::Encode(_) => true,
                sqlx::Error::Database(db) => {
                    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                        // SQLSTATE classes: 22 data exception, 23 integrity
                        // constraint, 54 program limit, P0 raised by PL/pgSQL.
                        let code = pg.code();
                        ["22", "23", "54", "P0"].iter().any(|c| code.starts_with(c))
                    } else {
                        // SQLite extended result code; the primary code is
                        // the low byte: 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH,
                        // 25 RANGE.
                        let primary = db
                            .code()
                            .and_then(|c| c.parse::<i64>().ok())
                            .map(|c| c & 0xff);
                        matches!(primary, Some(18 | 19 | 20 | 25))
                    }
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// Map a sqlx error to [`StoreError::Query`] naming the operation.
pub(crate) fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Tuning shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Reports and content older than this are never served and are purged.
    pub retention: Duration,
    /// Audit log and unblock history are kept this long.
    pub audit_retention: Duration,
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// SQLite: how long a write waits for a lock before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(72 * 3600),
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreOptions {
    pub fn from_config(config: &Config) -> StoreOptions {
        StoreOptions {
            retention: config.store.retention,
            audit_retention: config.store.audit_retention,
            // Waiting longer for a connection than for a whole write is moot.
            acquire_timeout: config.store.write_timeout,
            ..StoreOptions::default()
        }
    }
}

/// Reports and their content.
pub trait ReportStore: Send + Sync {
    /// Insert reports; ones whose id is already stored are skipped, so a
    /// replay never duplicates. Returns how many were new.
    fn insert_reports(
        &self,
        reports: &[StoredReport],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// A report within retention.
    fn report(
        &self,
        id: &ReportId,
    ) -> impl Future<Output = Result<Option<ReportRecord>, StoreError>> + Send;
    /// Reports within retention matching `filter`, newest first, `limit` per
    /// page, continuing after `after`.
    fn list_reports(
        &self,
        filter: &ReportFilter,
        limit: u32,
        after: Option<&Cursor>,
    ) -> impl Future<Output = Result<ReportPage, StoreError>> + Send;
    /// The raw message; [`Content::Expired`] once past retention even if not
    /// yet purged.
    fn content(&self, id: &ReportId) -> impl Future<Output = Result<Content, StoreError>> + Send;
    /// Delete reports, recipients and content created before `cutoff`, `batch`
    /// rows per statement so writers are never held up for long.
    fn purge_reports_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<PurgeStats, StoreError>> + Send;
    /// How many reports are stored (expired ones included).
    fn count_reports(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Whether the database answers at all (tells "down" from "refused this row").
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Run the migrations (a no-op when the schema is current).
    fn ensure_schema(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A request to unblock an account.
#[derive(Debug, Clone, PartialEq)]
pub struct UnblockRequest {
    pub account: String,
    pub at: DateTime<Utc>,
    pub by: String,
    pub self_service: bool,
    pub reason: Option<String>,
}

/// Account state and unblock history.
pub trait AccountStore: Send + Sync {
    /// `None` for an account never blocked (it is active).
    fn account_state(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<Option<AccountState>, StoreError>> + Send;
    /// Set an account's status. `since` only moves when the status changes.
    fn set_account_state(
        &self,
        change: &AccountChange,
    ) -> impl Future<Output = Result<AccountState, StoreError>> + Send;
    /// Make a blocked account active and record the unblock. `None` when the
    /// account was not blocked (nothing recorded).
    fn unblock(
        &self,
        request: &UnblockRequest,
    ) -> impl Future<Output = Result<Option<AccountState>, StoreError>> + Send;
    /// Unblocks of an account, newest first.
    fn unblock_history(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<Vec<Unblock>, StoreError>> + Send;
    /// Blocked accounts, most recently blocked first.
    fn blocked_accounts(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AccountState>, StoreError>> + Send;
}

/// The audit log: who did what to which account.
pub trait AuditLog: Send + Sync {
    fn audit(&self, entry: &AuditEntry) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Newest first; all accounts when `account` is `None`.
    fn audit_entries(
        &self,
        account: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
    /// Delete audit entries and unblock history older than `cutoff`.
    fn purge_audit_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Verdicts taught to the content classifier, one per report, so a report
/// is never counted twice and a changed verdict can be reversed. Rows are
/// purged with the reports.
pub trait LearnedVerdicts: Send + Sync {
    /// The verdict a report was learned with, if any.
    fn learned(
        &self,
        id: &ReportId,
    ) -> impl Future<Output = Result<Option<LearnedVerdict>, StoreError>> + Send;
    /// Record a report's verdict, replacing an earlier one.
    fn record_learned(
        &self,
        verdict: &LearnedVerdict,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Notifications waiting for delivery, claimed with a lease so two relays
/// never deliver the same item at once.
pub trait Outbox: Send + Sync {
    fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Claim up to `limit` due items for `lease`; each claim counts an attempt.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxItem>, StoreError>> + Send;
    fn mark_delivered(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Release a claimed item for another try at `next_attempt`.
    fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Items not yet delivered.
    fn outbox_pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Volume counters: atomic across relays sharing one database. A window is
/// identified by its start (epoch milliseconds, chosen by the caller).
pub trait Counters: Send + Sync {
    /// Add `n` and return the new total.
    fn add_count(
        &self,
        key: &str,
        window_start: i64,
        n: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn count(
        &self,
        key: &str,
        window_start: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Add a member to a distinct set (e.g. external recipients of the day);
    /// returns whether it was new and the set's size.
    fn add_member(
        &self,
        key: &str,
        window_start: i64,
        member: &str,
    ) -> impl Future<Output = Result<(bool, i64), StoreError>> + Send;
    /// Drop counters and sets whose window started before `window_start`.
    fn purge_counters_before(
        &self,
        window_start: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The store in force: SQLite or PostgreSQL, picked from the URL. Cheap to
/// clone (a pool handle).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Open the store the configuration names, creating the SQLite file (and
/// data dir) if missing, and run the migrations. For commands; the daemon
/// uses [`open_for_daemon`].
pub async fn open(config: &Config) -> Result<Store, StoreError> {
    Store::connect(&config.database_url(), StoreOptions::from_config(config)).await
}

/// Open the store for `outscore serve`: a database that is down at start-up
/// must not stop the daemon. If it cannot be reached within `write_timeout`,
/// the store connects lazily and the writer spools reports (and runs the
/// migrations) until the database answers. Fails only on a bad URL.
pub async fn open_for_daemon(config: &Config) -> Result<Store, StoreError> {
    let url = config.database_url();
    let options = StoreOptions::from_config(config);
    let opened = tokio::time::timeout(
        config.store.write_timeout,
        Store::connect(&url, options.clone()),
    )
    .await;
    match opened {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(StoreError::Url(u))) => Err(StoreError::Url(u)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "database unavailable at start-up; reports will be spooled until it answers");
            Store::connect_lazy(&url, options)
        }
        Err(_) => {
            tracing::warn!("database slow at start-up; reports will be spooled until it answers");
            Store::connect_lazy(&url, options)
        }
    }
}

impl Store {
    /// Open `sqlite:…` or `postgres://…` and run the migrations.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::open(url, options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::open(url, options).await?))
        } else {
            Err(StoreError::Url(url.to_string()))
        }
    }

    /// A store whose connections are made on first use; no migrations run
    /// (the writer runs them via [`ReportStore::ensure_schema`]).
    pub fn connect_lazy(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::open_lazy(url, options)?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::open_lazy(url, options)?))
        } else {
            Err(StoreError::Url(url.to_string()))
        }
    }

    pub fn options(&self) -> &StoreOptions {
        match self {
            Store::Sqlite(s) => s.options(),
            Store::Postgres(s) => s.options(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Close the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.pool().close().await,
            Store::Postgres(s) => s.pool().close().await,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl ReportStore for Store {
    async fn insert_reports(&self, reports: &[StoredReport]) -> Result<u64, StoreError> {
        delegate!(self, s => s.insert_reports(reports))
    }
    async fn report(&self, id: &ReportId) -> Result<Option<ReportRecord>, StoreError> {
        delegate!(self, s => s.report(id))
    }
    async fn list_reports(
        &self,
        filter: &ReportFilter,
        limit: u32,
        after: Option<&Cursor>,
    ) -> Result<ReportPage, StoreError> {
        delegate!(self, s => s.list_reports(filter, limit, after))
    }
    async fn content(&self, id: &ReportId) -> Result<Content, StoreError> {
        delegate!(self, s => s.content(id))
    }
    async fn purge_reports_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<PurgeStats, StoreError> {
        delegate!(self, s => s.purge_reports_before(cutoff, batch))
    }
    async fn count_reports(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.count_reports())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ping())
    }
    async fn ensure_schema(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ensure_schema())
    }
}

impl AccountStore for Store {
    async fn account_state(&self, account: &str) -> Result<Option<AccountState>, StoreError> {
        delegate!(self, s => s.account_state(account))
    }
    async fn set_account_state(&self, change: &AccountChange) -> Result<AccountState, StoreError> {
        delegate!(self, s => s.set_account_state(change))
    }
    async fn unblock(&self, request: &UnblockRequest) -> Result<Option<AccountState>, StoreError> {
        delegate!(self, s => s.unblock(request))
    }
    async fn unblock_history(&self, account: &str) -> Result<Vec<Unblock>, StoreError> {
        delegate!(self, s => s.unblock_history(account))
    }
    async fn blocked_accounts(&self, limit: u32) -> Result<Vec<AccountState>, StoreError> {
        delegate!(self, s => s.blocked_accounts(limit))
    }
}

impl AuditLog for Store {
    async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        delegate!(self, s => s.audit(entry))
    }
    async fn audit_entries(
        &self,
        account: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        delegate!(self, s => s.audit_entries(account, limit))
    }
    async fn purge_audit_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        delegate!(self, s => s.purge_audit_before(cutoff, batch))
    }
}

impl LearnedVerdicts for Store {
    async fn learned(&self, id: &ReportId) -> Result<Option<LearnedVerdict>, StoreError> {
        delegate!(self, s => s.learned(id))
    }
    async fn record_learned(&self, verdict: &LearnedVerdict) -> Result<(), StoreError> {
        delegate!(self, s => s.record_learned(verdict))
    }
}

impl Outbox for Store {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        delegate!(self, s => s.enqueue(kind, payload, at))
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        delegate!(self, s => s.claim_due(now, lease, limit))
    }
    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        delegate!(self, s => s.mark_delivered(id, at))
    }
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.mark_failed(id, error, next_attempt))
    }
    async fn outbox_pending(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.outbox_pending())
    }
}

impl Counters for Store {
    async fn add_count(&self, key: &str, window_start: i64, n: i64) -> Result<i64, StoreError> {
        delegate!(self, s => s.add_count(key, window_start, n))
    }
    async fn count(&self, key: &str, window_start: i64) -> Result<i64, StoreError> {
        delegate!(self, s => s.count(key, window_start))
    }
    async fn add_member(
        &self,
        key: &str,
        window_start: i64,
        member: &str,
    ) -> Result<(bool, i64), StoreError> {
        delegate!(self, s => s.add_member(key, window_start, member))
    }
    async fn purge_counters_before(&self, window_start: i64) -> Result<u64, StoreError> {
        delegate!(self, s => s.purge_counters_before(window_start))
    }
}
