//! `outscore purge`: delete expired reports, content and audit entries now.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::store::{self};

pub async fn purge_command(config: Config) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let done = store::purge_once(&db, db.options()).await?;
    println!(
        "purged {} report(s) in {} batch(es), {} audit/unblock row(s), {} counter row(s)",
        done.reports.reports, done.reports.batches, done.audit_rows, done.counter_rows
    );
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
