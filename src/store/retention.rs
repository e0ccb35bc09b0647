//! Retention: a background task that deletes expired reports and content
//! (72 hours by default) and old audit entries, in small batches so writers
//! are never held up. `outscore purge` runs the same pass once.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{AuditLog, Counters, PurgeStats, ReportStore, StoreError, StoreOptions};
use crate::config::Config;

/// Rows per purge statement.
pub const PURGE_BATCH: u32 = 2_000;

/// What one purge pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub reports: PurgeStats,
    pub audit_rows: u64,
    pub counter_rows: u64,
}

/// One purge pass: reports past `retention`, audit entries and unblock
/// history past `audit_retention`, counters older than two days.
pub async fn purge_once<S>(store: &S, options: &StoreOptions) -> Result<PurgeReport, StoreError>
where
    S: ReportStore + AuditLog + Counters,
{
    let now = Utc::now();
    let report_cutoff = now - chrono::Duration::from_std(options.retention).unwrap_or_default();
    let audit_cutoff =
        now - chrono::Duration::from_std(options.audit_retention).unwrap_or_default();
    let reports = store
        .purge_reports_before(report_cutoff, PURGE_BATCH)
        .await?;
    let audit_rows = store.purge_audit_before(audit_cutoff, PURGE_BATCH).await?;
    let counter_cutoff = (now - chrono::Duration::days(2)).timestamp_millis();
    let counter_rows = store.purge_counters_before(counter_cutoff).await?;
    Ok(PurgeReport {
        reports,
        audit_rows,
        counter_rows,
    })
}

/// The running purge task; dropping it leaves the task running until the
/// runtime ends, `stop` ends it.
#[derive(Debug)]
pub struct Purger {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Purger {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Purge every `[store] purge_interval` (first pass right away).
pub fn spawn_purger<S>(store: S, config: &Config) -> Purger
where
    S: ReportStore + AuditLog + Counters + Clone + 'static,
{
    spawn_purger_every(
        store,
        StoreOptions::from_config(config),
        config.store.purge_interval,
    )
}

pub fn spawn_purger_every<S>(store: S, options: StoreOptions, every: Duration) -> Purger
where
    S: ReportStore + AuditLog + Counters + Clone + 'static,
{
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            match purge_once(&store, &options).await {
                Ok(p) if p.reports.reports > 0 || p.audit_rows > 0 => info!(
                    reports = p.reports.reports,
                    batches = p.reports.batches,
                    audit_rows = p.audit_rows,
                    "expired data purged"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "purge failed; will retry"),
            }
        }
    });
    Purger { cancel, task }
}
