//! `outscore report list|show|export`: stored reports within retention.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::store::{self, ReportStore};

use super::*;

#[derive(Subcommand)]
// Parsed once per run: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ReportCmd {
    /// List reports, newest first.
    List {
        /// Account (SASL login, else envelope sender).
        #[arg(long)]
        account: Option<String>,
        /// Start: RFC 3339 time, or a duration ago (`24h`).
        #[arg(long)]
        since: Option<String>,
        /// End (exclusive): RFC 3339 time, or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// `accept`, `reject`, `tempfail`…
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        min_score: Option<f64>,
        #[arg(long)]
        max_score: Option<f64>,
        #[arg(long)]
        queue_id: Option<String>,
        #[arg(long)]
        message_id: Option<String>,
        /// Envelope recipient.
        #[arg(long)]
        rcpt: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one report: envelope, headers, score, tier, action, symbols.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write the raw message of a report (within retention).
    Export {
        id: String,
        /// Output file; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// `24h` (that long ago) or an RFC 3339 time.
pub fn parse_when(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = crate::config::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("{text:?} is neither an RFC 3339 time nor a duration: {e}"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(ago)?)
}

pub async fn report_command(config: Config, command: ReportCmd) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let code = match command {
        ReportCmd::List {
            account,
            since,
            until,
            tier,
            action,
            min_score,
            max_score,
            queue_id,
            message_id,
            rcpt,
            limit,
            after,
            json,
        } => {
            let filter = store::ReportFilter {
                account,
                since: since.as_deref().map(parse_when).transpose()?,
                until: until.as_deref().map(parse_when).transpose()?,
                tier,
                action,
                min_score,
                max_score,
                queue_id,
                message_id,
                recipient: rcpt,
                ..store::ReportFilter::default()
            };
            let after: Option<store::Cursor> = after
                .as_deref()
                .map(str::parse)
                .transpose()
                .context("bad --after cursor")?;
            let page = db.list_reports(&filter, limit, after.as_ref()).await?;
            print_report_list(&page, json)?;
            ExitCode::SUCCESS
        }
        ReportCmd::Show { id, json } => {
            let id = parse_report_id(&id)?;
            match db.report(&id).await? {
                Some(record) if json => {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                    ExitCode::SUCCESS
                }
                Some(record) => {
                    print_report(&record);
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "outscore: report {id} not found (or older than the {}-hour retention)",
                        config.store.retention.as_secs() / 3600
                    );
                    ExitCode::FAILURE
                }
            }
        }
        ReportCmd::Export { id, output } => {
            let id = parse_report_id(&id)?;
            match db.content(&id).await? {
                store::Content::Found(bytes) => {
                    match output {
                        Some(path) => std::fs::write(&path, &bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?,
                        None => {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            out.write_all(&bytes)?;
                            out.flush()?;
                        }
                    }
                    ExitCode::SUCCESS
                }
                store::Content::Expired => {
                    eprintln!(
                        "outscore: the content of report {id} has expired (retention {} hours)",
                        config.store.retention.as_secs() / 3600
                    );
                    ExitCode::FAILURE
                }
                store::Content::NotFound => {
                    eprintln!("outscore: report {id} not found");
                    ExitCode::FAILURE
                }
            }
        }
    };
    db.close().await;
    Ok(code)
}

pub fn print_report_list(page: &store::ReportPage, json: bool) -> anyhow::Result<()> {
    if json {
        for r in &page.reports {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "{:<16}  {:<20}  {:<28}  {:>7}  {:<9}  {:<8}  SUBJECT",
            "ID", "TIME (UTC)", "ACCOUNT", "SCORE", "TIER", "ACTION"
        );
        for r in &page.reports {
            println!(
                "{:<16}  {:<20}  {:<28}  {:>7.2}  {:<9}  {:<8}  {}",
                r.id,
                r.created_at.format("%Y-%m-%d %H:%M:%S"),
                r.account.as_deref().unwrap_or("-"),
                r.score,
                r.tier.as_deref().unwrap_or("-"),
                r.action,
                r.subject.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(next) = &page.next {
        eprintln!("more: --after {next}");
    }
    Ok(())
}

pub fn print_report(r: &store::ReportRecord) {
    let env = &r.envelope;
    let msg = &r.report.message;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("report      {}", r.id);
    println!("time        {}", r.created_at.to_rfc3339());
    println!("account     {}", opt(&r.account));
    println!("score       {:.2}", r.report.score);
    println!("tier        {}", opt(&r.tier));
    println!("action      {}", r.action);
    if r.report.observed {
        println!("mode        observe (nothing refused, no account change; below: what enforcement would have done)");
    }
    if let Some(refusal) = &r.report.refusal {
        println!("refused by  {refusal}");
    }
    if let Some(reply) = &r.report.reply {
        println!("reply       {reply}");
    }
    if let Some(skipped) = &r.report.skipped {
        println!(
            "scan        skipped ({}): {}",
            skipped.cause, skipped.detail
        );
    }
    println!(
        "client      {} [{}]",
        env.client.hostname,
        env.client
            .addr
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    );
    println!("login       {}", opt(&env.auth_login));
    println!("mail from   <{}>", env.mail_from);
    println!("rcpt to     {}", env.rcpts.join(", "));
    println!("queue id    {}", opt(&env.queue_id));
    println!("From        {}", opt(&msg.from));
    println!("To          {}", msg.to.join(", "));
    println!("Subject     {}", opt(&msg.subject));
    println!("Message-ID  {}", opt(&msg.message_id));
    println!("Date        {}", opt(&msg.date));
    println!("size        {} bytes", r.content_size);
    println!(
        "timings     parse {} us, rules {} us, total {} us",
        r.report.timings.parse_us, r.report.timings.rules_us, r.report.timings.total_us
    );
    println!("symbols:");
    for s in &r.report.symbols {
        println!(
            "  {:<28} {:>7.2}  (weight {:.2} x {:.2}, group {})",
            s.name, s.score, s.weight, s.factor, s.group
        );
        for e in &s.evidence {
            println!("      {e}");
        }
    }
}
