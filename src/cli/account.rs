//! `outscore account`: account states and the actions the abuse team, the provider's panel or the customer take on them, through the same policy enforcer as the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::store::{self};

use super::*;

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Blocked accounts, most recently blocked first, then the accounts
    /// held back by a volume limit (prison, the daily budget) and until when.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One account: state, history counts, unblocks, audit log, directory entry.
    Show {
        login: String,
        #[arg(long)]
        json: bool,
    },
    /// Unblock a suspended account: self-service (the customer, once per 90
    /// days) or by the abuse team with a reason.
    Unblock {
        login: String,
        /// Abuse-team member acting; without it the unblock is self-service.
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The provider confirms the password was changed: lifts a reset block.
    ResetDone {
        login: String,
        /// Who confirms (panel, support member…), audited as `provider:NAME`.
        #[arg(long, default_value = "panel")]
        by: String,
    },
    /// Suspend an account by hand (abuse team).
    Suspend {
        login: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
        /// Record it under a suspension tier (L-SPAM20 to L-SPAM40), e.g.
        /// L-SPAM40 so that only the abuse team can lift it.
        #[arg(long)]
        tier: Option<crate::policy::Tier>,
    },
    /// Validate an accounts CSV and install it as `[accounts] directory_csv`
    /// (default `<data_dir>/accounts.csv`); the daemon reads it at start.
    Import { file: PathBuf },
}

pub async fn account_command(config: Config, command: AccountCmd) -> anyhow::Result<ExitCode> {
    use crate::policy::service::{Enforcer, ServiceError};
    use crate::policy::{Actor, Directory};
    use crate::store::{AccountStore, AuditLog};

    if let AccountCmd::Import { file } = &command {
        let dir = Directory::load_csv(file).map_err(|errors| {
            anyhow::anyhow!(
                "{}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let target = config
            .accounts
            .directory_csv
            .clone()
            .unwrap_or_else(|| config.data_dir.join("accounts.csv"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = target.with_extension("csv.tmp");
        std::fs::copy(file, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &target)?;
        println!(
            "imported {} account(s) into {}",
            dir.len(),
            target.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let policy = match crate::policy::Policy::from_config(&config) {
        Ok(p) => p,
        Err(errors) => return Ok(config_failure(&errors)),
    };
    let db = store::open(&config)
        .await
        .context("cannot open the store")?;
    let notifier = crate::notify::Notifier::new(
        config.notify.clone(),
        config.accounts.self_service_every_days,
    )
    .context("cannot read the e-mail template")?;
    let enforcer = Enforcer::new(
        Arc::new(policy),
        db.clone(),
        db.clone(),
        crate::notify::EventQueue::new(Arc::new(db.clone()), Arc::new(notifier)),
    );
    let now = chrono::Utc::now();
    let done = |result: Result<crate::policy::Transition, ServiceError>| match result {
        Ok(t) => {
            println!("{}: {} -> {}", t.account, t.from.name(), t.to.name());
            Ok(ExitCode::SUCCESS)
        }
        Err(ServiceError::Refused(e)) => {
            eprintln!("outscore: refused: {e}");
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(e) => Err(anyhow::Error::new(e)),
    };
    let code = match command {
        AccountCmd::List { limit, json } => {
            let blocked = db.blocked_accounts(limit).await?;
            for a in &blocked {
                if json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    println!(
                        "{:<40} {:<24} {:<9} since {}  report {}  {}",
                        a.account,
                        a.status.as_str(),
                        a.tier.as_deref().unwrap_or("-"),
                        a.since.format("%Y-%m-%d %H:%M:%S"),
                        a.report_id.as_deref().unwrap_or("-"),
                        a.reason.as_deref().unwrap_or("")
                    );
                }
            }
            let limited = enforcer.limited_accounts(now, limit as usize).await?;
            for (account, restrictions) in &limited {
                for r in restrictions {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"account": account, "restriction": r.kind.as_str(),
                                "until": r.until})
                        );
                    } else {
                        println!(
                            "{:<40} {:<24} {:<9} until {}  {}",
                            account,
                            r.kind.as_str(),
                            "-",
                            r.until.format("%Y-%m-%d %H:%M:%S"),
                            r.kind.describe()
                        );
                    }
                }
            }
            if !json {
                println!("{} blocked account(s)", blocked.len());
                println!("{} account(s) held back by a volume limit", limited.len());
            }
            ExitCode::SUCCESS
        }
        AccountCmd::Show { login, json } => {
            let login = login.trim().to_ascii_lowercase();
            let facts = enforcer.facts(&login, now).await?;
            let audit = db.audit_entries(Some(&login), 50).await?;
            let unblocks = db.unblock_history(&login).await?;
            let entry = enforcer.policy().directory.get(&login);
            let self_service = enforcer.self_service_check(&login, now).await?;
            if json {
                let self_service = match &self_service {
                    Ok(()) => serde_json::json!({"allowed": true}),
                    Err(why) => serde_json::json!({"allowed": false, "why": why.to_string(),
                        "detail": crate::policy::account::refusal("unblock", &login, why).map(|(_, d)| d)}),
                };
                println!(
                    "{}",
                    serde_json::json!({"facts": facts, "directory": entry,
                        "self_service_unblock": self_service,
                        "unblocks": unblocks, "audit": audit})
                );
            } else {
                println!("account:   {login}");
                println!("status:    {}", facts.status.name());
                if let Some(since) = facts.status.since() {
                    println!("since:     {since}");
                }
                if let Some(tier) = facts.status.tier() {
                    println!("tier:      {tier}");
                }
                if let Some(id) = facts.status.report_id() {
                    println!("report:    {id}");
                }
                println!("contact:   {}", entry.contact.as_deref().unwrap_or("-"));
                if facts.status.is_blocked() {
                    match &self_service {
                        Ok(()) => println!("self-service unblock: possible now"),
                        Err(why) => println!("self-service unblock: not now: {why}"),
                    }
                }
                println!(
                    "history:   spam last hour {}, last day {}; offences since reset {}; limit hits 24h {}; suspensions 90d {}; resets 90d {}",
                    facts.history.spam_last_hour,
                    facts.history.spam_last_day,
                    facts.history.offences_since_reset,
                    facts.history.limit_hits_last_day,
                    facts.history.suspensions_90d,
                    facts.history.resets_90d
                );
                if let Some(until) = facts.prison_until.filter(|u| *u > now) {
                    println!("prison:    until {until}");
                }
                println!(
                    "daily budget: {} external recipients",
                    enforcer.policy().daily_budget(&facts)
                );
                for u in &unblocks {
                    println!(
                        "unblocked: {} by {}{} {}",
                        u.at,
                        u.by,
                        if u.self_service {
                            " (self-service)"
                        } else {
                            ""
                        },
                        u.reason.as_deref().unwrap_or("")
                    );
                }
                for r in audit.iter().rev() {
                    println!(
                        "audit:     {} {} {} {}",
                        r.entry.at.format("%Y-%m-%d %H:%M:%S"),
                        r.entry.actor,
                        r.entry.action,
                        r.entry.detail
                    );
                }
            }
            ExitCode::SUCCESS
        }
        AccountCmd::Unblock { login, by, reason } => {
            let login = login.trim().to_ascii_lowercase();
            let actor = match by {
                Some(name) => Actor::Abuse(name),
                None => Actor::Customer(login.clone()),
            };
            done(
                enforcer
                    .unblock(&login, &actor, reason.as_deref(), now)
                    .await,
            )?
        }
        AccountCmd::ResetDone { login, by } => {
            let login = login.trim().to_ascii_lowercase();
            done(
                enforcer
                    .reset_done(&login, &Actor::Provider(by), None, now)
                    .await,
            )?
        }
        AccountCmd::Suspend {
            login,
            by,
            reason,
            tier,
        } => {
            let login = login.trim().to_ascii_lowercase();
            done(
                enforcer
                    .suspend(&login, &Actor::Abuse(by), &reason, tier, now)
                    .await,
            )?
        }
        AccountCmd::Import { .. } => unreachable!("handled above"),
    };
    db.close().await;
    Ok(code)
}
