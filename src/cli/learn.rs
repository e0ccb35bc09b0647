//! `outscore learn`: teach the classifier stored reports as spam or ham.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::store::{self};

use super::*;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["spam", "ham"])))]
pub struct LearnArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Learn the reports as spam.
    #[arg(long)]
    pub spam: bool,
    /// Learn the reports as ham (legitimate mail).
    #[arg(long)]
    pub ham: bool,
    /// Report ids (as quoted in SMTP replies and on the review pages).
    #[arg(required = true, value_name = "REPORT_ID")]
    pub ids: Vec<String>,
    /// Why (kept with the verdict and in the audit log).
    #[arg(long)]
    pub reason: String,
    /// Who decides, for the audit log; default: the login name.
    #[arg(long)]
    pub by: Option<String>,
}

pub async fn learn_command(config: Config, args: LearnArgs) -> anyhow::Result<ExitCode> {
    use crate::learn::{LearnError, LearnRequest, Learner};
    use crate::store::Label;
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let learner = Learner::new(db.clone(), &config.data_dir);
    let verdict = if args.spam { Label::Spam } else { Label::Ham };
    let actor = args.by.clone().unwrap_or_else(|| {
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .map(|u| format!("cli:{u}"))
            .unwrap_or_else(|_| "cli".into())
    });
    let percent = |p: Option<f64>| {
        p.map_or("n/a (model not ready)".into(), |p| {
            format!("{:.1}%", p * 100.0)
        })
    };
    let (mut learned, mut refused, mut failed) = (0u32, 0u32, 0u32);
    let mut last = None;
    for text in &args.ids {
        let id = match parse_report_id(text) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("{text}: not learned: {e}");
                refused += 1;
                continue;
            }
        };
        let request = LearnRequest {
            report_id: id.clone(),
            verdict,
            actor: actor.clone(),
            reason: args.reason.clone(),
        };
        match learner.learn(&request).await {
            Ok(l) => {
                learned += 1;
                println!(
                    "{id}: learned as {verdict}{}; spam probability {} (was {})",
                    l.reversed
                        .map(|r| format!(" (earlier {r} verdict taken back)"))
                        .unwrap_or_default(),
                    percent(l.probability),
                    percent(l.probability_before)
                );
                last = Some(l);
            }
            Err(
                e @ (LearnError::Store(_)
                | LearnError::Model(_)
                | LearnError::Lock { .. }
                | LearnError::Task(_)),
            ) => {
                eprintln!("{id}: not learned: {e}");
                failed += 1;
            }
            Err(e) => {
                eprintln!("{id}: not learned: {e}");
                refused += 1;
            }
        }
    }
    db.close().await;
    if let Some(l) = last {
        println!(
            "model saved to {} ({} spam, {} ham learned); {RELOAD_HINT}",
            l.model_path.display(),
            l.spam_messages,
            l.ham_messages
        );
    }
    println!("{learned} learned, {refused} refused, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else if refused > 0 {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}
