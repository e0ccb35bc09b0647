//! Consequences: the L-SPAM tier of a scored message, the account's state
//! machine and the volume limits, decided as pure functions of data the
//! pipeline gathers (account facts, counter values, the clock). Every
//! decision comes with the state changes and counter bumps to persist; this
//! module does no I/O and knows nothing of sockets or databases (the
//! persistence it needs is the set of traits in [`store`]).
//!
//! # Call order in the pipeline
//!
//! ```text
//! MAIL FROM  facts = load(account)                 (store: state, audit, unblocks, spam counters)
//!            gate  = policy.at_mail(&mut facts, SIZE=, now)      → refuse? stop
//!            n     = counters.incr(policy.rate_key(account, now))
//!            gate  = policy.after_rate(&mut facts, n, now)        → 451 + prison effect
//! RCPT       step  = policy.at_rcpt(&mut facts, accepted_so_far, rcpt, now)
//!              Gate(g)              → answer g
//!              CountExternal{..}    → o = counters.add_member_capped(..)
//!                                     g = policy.after_external(&mut facts, o, now)
//! EOM        out   = policy.at_eom(&mut facts, &scored, size, report_id, now)
//!            persist out.effects; reply out.decision (Continue: add headers)
//! ```

pub mod account;
pub mod directory;
pub mod history;
pub mod limits;
pub mod message;
pub mod service;
pub mod store;
pub mod tiers;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{AccountsConfig, Config, LimitsConfig, MessagePolicyConfig, ModeConfig};

use crate::diag::{ConfigError, ConfigErrors};
use crate::smtp::{Decision, SmtpReply};

pub use account::{
    apply_tier, lift, reset_done, self_service_check, self_service_unblock, suspend, AccountStatus,
    Actor, AuditEntry, Transition, TransitionError, UnblockRecord, UnblockRule,
};
pub use directory::{AccountEntry, Directory, Sensitivity};
pub use history::AccountFacts;
pub use limits::{CounterKey, SpamCounts};
pub use message::{Outgoing, Refusal, RefusalReason};
pub use tiers::{Family, History, Scored, Tier, TierDecision, TierTable};

/// Something to persist or send because of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// An account state change (with its audit entry and unblock record).
    Transition(Transition),
    /// An audit entry without a state change (prison, daily-limit hit).
    Audit(AuditEntry),
    /// Add one to a counter cell.
    Bump(CounterKey),
    /// Tell the provider's integration and/or the customer.
    Notify(Event),
}

/// An account event for the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `password_reset_required`, `suspended`, `unblocked`, `reset_done`.
    pub kind: String,
    pub account: String,
    /// Where the customer is told (suspensions).
    pub contact: Option<String>,
    pub tier: Option<Tier>,
    pub report_id: Option<String>,
    pub at: DateTime<Utc>,
    /// Why, as the tier rule explains it.
    pub reason: String,
    /// Whether the customer may unblock themselves.
    pub self_service: bool,
    /// From when, once the tier's complaint period and the once-per-90-days
    /// rule allow it (suspensions only); `None`: possible now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_service_from: Option<DateTime<Utc>>,
    /// The symbols the message scored, highest first (tier events), so the
    /// customer can be told what was found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
}

/// Why a gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    Blocked,
    Prison,
    Size,
    RateLimit,
    TooManyRecipients,
    DailyLimit,
}

impl GateReason {
    /// The name reports, logs and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::Blocked => "blocked",
            GateReason::Prison => "prison",
            GateReason::Size => "size",
            GateReason::RateLimit => "rate_limit",
            GateReason::TooManyRecipients => "too_many_recipients",
            GateReason::DailyLimit => "daily_limit",
        }
    }
}

/// The answer at MAIL FROM or RCPT TO.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub decision: Decision,
    pub reason: Option<GateReason>,
    pub effects: Vec<Effect>,
}

impl Gate {
    fn pass() -> Gate {
        Gate {
            decision: Decision::Continue,
            reason: None,
            effects: Vec::new(),
        }
    }

    fn refuse(reply: SmtpReply, reason: GateReason) -> Gate {
        Gate {
            decision: Decision::Reply(reply),
            reason: Some(reason),
            effects: Vec::new(),
        }
    }

    pub fn is_refusal(&self) -> bool {
        self.decision.is_refusal()
    }
}

/// What to do at RCPT: answer now, or count the recipient first.
#[derive(Debug, Clone, PartialEq)]
pub enum RcptStep {
    Gate(Gate),
    /// Add `member` to the day's set of external recipients, refusing to
    /// grow it past `cap` (atomically), then call
    /// [`Policy::after_external`].
    CountExternal {
        key: CounterKey,
        member: String,
        cap: u64,
    },
}

/// Result of an atomic "add to a capped distinct set".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOutcome {
    /// Already in the set: costs nothing.
    Known,
    /// Added; the set now has this many members.
    Added(u64),
    /// Not added: the set is at its cap.
    Full(u64),
}

/// The end-of-message decision.
#[derive(Debug, Clone, PartialEq)]
pub struct EomOutcome {
    /// `Continue` (accept with headers) or the refusal.
    pub decision: Decision,
    pub tier: Option<TierDecision>,
    /// The message policy the message broke, if any.
    pub refusal: Option<RefusalReason>,
    pub effects: Vec<Effect>,
}

/// Tier table, limits and directory: the whole policy, ready to decide.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tiers: TierTable,
    pub limits: LimitsConfig,
    pub directory: Directory,
    pub unblock_rule: UnblockRule,
    /// The message policies (attachments, sender mismatch).
    pub messages: MessagePolicyConfig,
    /// Enforce, or only observe, per account.
    pub mode: ModeConfig,
}

impl Policy {
    pub fn new(
        tiers: TierTable,
        limits: LimitsConfig,
        accounts: &AccountsConfig,
        directory: Directory,
    ) -> Policy {
        Policy {
            tiers,
            limits,
            directory,
            unblock_rule: UnblockRule {
                self_service_every: chrono::Duration::days(accounts.self_service_every_days.into()),
            },
            messages: MessagePolicyConfig::default(),
            mode: ModeConfig::default(),
        }
    }

    /// Tiers from `<scores_dir>/tiers.toml` (else built in), limits and the
    /// accounts directory CSV from the configuration. Every problem is
    /// reported with its file and line.
    pub fn from_config(config: &Config) -> Result<Policy, ConfigErrors> {
        let tiers = TierTable::load_dir(config.scoring.scores_dir.as_deref());
        let directory = match Policy::directory_path(config) {
            Some(path) => Directory::load_csv(&path).map_err(|errors| {
                ConfigErrors(
                    errors
                        .into_iter()
                        .map(|e| ConfigError {
                            file: path.to_path_buf(),
                            line: (e.line > 0).then_some(e.line),
                            message: e.message,
                        })
                        .collect(),
                )
            }),
            None => Ok(Directory::default()),
        };
        match (tiers, directory) {
            (Ok(tiers), Ok(directory)) => Ok(Policy {
                messages: config.message_policy.clone(),
                mode: config.mode.clone(),
                ..Policy::new(tiers, config.limits.clone(), &config.accounts, directory)
            }),
            (Err(a), Err(b)) => Err(ConfigErrors(a.0.into_iter().chain(b.0).collect())),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// The accounts directory in force: `[accounts] directory_csv`, else
    /// `<data_dir>/accounts.csv` when `outscore account import` installed
    /// one, else none.
    pub fn directory_path(config: &Config) -> Option<std::path::PathBuf> {
        let default_csv = config.data_dir.join("accounts.csv");
        config
            .accounts
            .directory_csv
            .clone()
            .or_else(|| default_csv.exists().then_some(default_csv))
    }

    /// The reply for a blocked account.
    pub fn blocked_reply(&self, status: &AccountStatus) -> Option<SmtpReply> {
        match status {
            AccountStatus::Active => None,
            AccountStatus::PasswordResetRequired {
                tier, report_id, ..
            } => Some(self.tiers.reply(*tier, report_id)),
            AccountStatus::Suspended {
                tier: Some(tier),
                report_id,
                ..
            } => Some(
                self.tiers
                    .reply(*tier, report_id.as_deref().unwrap_or("none")),
            ),
            AccountStatus::Suspended { tier: None, .. } => Some(
                SmtpReply::parse("550 5.7.1 Outgoing mail of this account is suspended")
                    .expect("valid reply"),
            ),
        }
    }

    /// MAIL FROM, before counting: blocked account, prison, declared size.
    pub fn at_mail(
        &self,
        facts: &AccountFacts,
        declared_size: Option<u64>,
        now: DateTime<Utc>,
    ) -> Gate {
        if let Some(reply) = self.blocked_reply(&facts.status) {
            return Gate::refuse(reply, GateReason::Blocked);
        }
        if facts.in_prison(now) {
            return Gate::refuse(self.limits.reply_rate.clone(), GateReason::Prison);
        }
        if declared_size.is_some_and(|s| s > self.limits.max_message_bytes) {
            return Gate::refuse(self.limits.reply_size.clone(), GateReason::Size);
        }
        Gate::pass()
    }

    /// The rate counter to bump once [`Policy::at_mail`] passed.
    pub fn rate_key(&self, account: &str, now: DateTime<Utc>) -> CounterKey {
        limits::rate_key(account, &self.limits, now)
    }

    /// `count` is the rate counter after the bump. Over the limit: 451 and
    /// prison (an audit entry the tiers count as a limit hit).
    pub fn after_rate(&self, facts: &mut AccountFacts, count: u64, now: DateTime<Utc>) -> Gate {
        let max = self
            .directory
            .get(&facts.account)
            .max_messages
            .unwrap_or(self.limits.max_messages);
        if count <= max {
            return Gate::pass();
        }
        let until = limits::prison_until(&self.limits, now);
        facts.prison_until = Some(until);
        facts.history.limit_hits_last_day += 1;
        facts.recent_offences += 1;
        let mut gate = Gate::refuse(self.limits.reply_rate.clone(), GateReason::RateLimit);
        gate.effects.push(Effect::Audit(AuditEntry {
            at: now,
            actor: Actor::System.label(),
            account: facts.account.clone(),
            action: "prison".into(),
            detail: json!({"until": until.to_rfc3339(), "count": count, "max": max,
                "window_secs": self.limits.rate_window.as_secs()}),
        }));
        gate.effects.push(Effect::Notify(self.limit_event(
            "prison",
            facts,
            format!(
                "{count} messages within {} (limit {max}); everything is temp-refused until {}",
                crate::config::human_duration(self.limits.rate_window),
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            now,
        )));
        gate
    }

    /// RCPT TO. `accepted_so_far` is how many recipients this message
    /// already has.
    pub fn at_rcpt(
        &self,
        facts: &AccountFacts,
        accepted_so_far: usize,
        rcpt: &str,
        now: DateTime<Utc>,
    ) -> RcptStep {
        let entry = self.directory.get(&facts.account);
        let max = entry
            .max_rcpts_per_message
            .unwrap_or(self.limits.max_rcpts_per_message);
        if accepted_so_far as u64 >= max {
            return RcptStep::Gate(Gate::refuse(
                self.limits.reply_too_many_rcpts.clone(),
                GateReason::TooManyRecipients,
            ));
        }
        if !limits::is_external(rcpt, &self.limits) {
            return RcptStep::Gate(Gate::pass());
        }
        RcptStep::CountExternal {
            key: limits::external_key(&facts.account, &self.limits, now),
            member: rcpt.trim().to_ascii_lowercase(),
            cap: self.daily_budget(facts),
        }
    }

    /// The account's distinct external recipients per day, today.
    pub fn daily_budget(&self, facts: &AccountFacts) -> u64 {
        let entry = self.directory.get(&facts.account);
        limits::daily_budget(
            &self.limits,
            entry.daily_external_rcpts,
            facts.recent_offences,
        )
    }

    /// After the capped add: `Full` refuses; the first refusal of the day
    /// is audited (a limit hit the tiers count).
    pub fn after_external(
        &self,
        facts: &mut AccountFacts,
        outcome: MemberOutcome,
        now: DateTime<Utc>,
    ) -> Gate {
        let MemberOutcome::Full(size) = outcome else {
            return Gate::pass();
        };
        let mut gate = Gate::refuse(self.limits.reply_daily.clone(), GateReason::DailyLimit);
        let today = limits::day_start(now, self.limits.day_zone);
        if facts.daily_limit_hit_at.is_none_or(|at| at < today) {
            facts.daily_limit_hit_at = Some(now);
            facts.history.limit_hits_last_day += 1;
            facts.recent_offences += 1;
            gate.effects.push(Effect::Audit(AuditEntry {
                at: now,
                actor: Actor::System.label(),
                account: facts.account.clone(),
                action: "daily_limit".into(),
                detail: json!({"recipients": size, "budget": self.daily_budget(facts)}),
            }));
            gate.effects.push(Effect::Notify(self.limit_event(
                "daily_limit",
                facts,
                format!(
                    "{size} distinct external recipients today (budget {}); more are refused until local midnight",
                    self.daily_budget(facts)
                ),
                now,
            )));
        }
        gate
    }

    /// End of message: counted size, message policies, tier, account
    /// action, spam and refusal counters. A message-policy refusal alone
    /// changes no account; a spam tier (which may count repeated refusals)
    /// does, and its reply wins.
    pub fn at_eom(
        &self,
        facts: &mut AccountFacts,
        scored: &Scored<'_>,
        message: &Outgoing<'_>,
        report_id: &str,
        now: DateTime<Utc>,
    ) -> EomOutcome {
        if message.size > self.limits.max_message_bytes {
            return EomOutcome {
                decision: Decision::Reply(self.limits.reply_size.clone()),
                tier: None,
                refusal: Some(RefusalReason::Size),
                effects: Vec::new(),
            };
        }
        let refusal = self.message_refusal(&facts.account, message);
        let scored = Scored {
            refused: refusal.is_some(),
            ..*scored
        };
        let mut effects = Vec::new();
        if scored.is_spam() {
            for key in limits::spam_keys(&facts.account, now) {
                effects.push(Effect::Bump(key));
            }
        }
        if scored.refused {
            effects.push(Effect::Bump(limits::refusal_key(&facts.account, now)));
        }
        let decision = self.tiers.evaluate(&scored, &facts.history);
        if scored.is_spam() {
            facts.history.spam_last_hour += 1;
            facts.history.spam_last_day += 1;
        }
        if scored.refused {
            facts.history.refusals_last_hour += 1;
        }
        let Some(decision) = decision else {
            return EomOutcome {
                decision: refusal
                    .as_ref()
                    .map_or(Decision::Continue, |r| Decision::Reply(r.reply.clone())),
                tier: None,
                refusal: refusal.map(|r| r.reason),
                effects,
            };
        };
        let reply = self.tiers.reply_for(&decision, report_id);
        if let Some(transition) =
            apply_tier(&facts.account, &facts.status, &decision, report_id, now)
        {
            if !transition.from.is_blocked() {
                facts.history.offences_since_reset += 1;
                facts.recent_offences += 1;
            }
            facts.status = transition.to.clone();
            let entry = self.directory.get(&facts.account);
            // When the customer may unblock: the complaint period and the
            // once-per-90-days rule, whichever ends last.
            let (self_service, self_service_from) = match self.self_service_check(
                &facts.account,
                &facts.status,
                &facts.unblocks,
                now,
            ) {
                Ok(()) => (true, None),
                Err(TransitionError::ComplaintPeriod { next, .. })
                | Err(TransitionError::TooSoon { next, .. }) => (true, Some(next)),
                Err(_) => (false, None),
            };
            effects.push(Effect::Notify(Event {
                kind: transition.to.name().to_string(),
                account: facts.account.clone(),
                contact: entry.contact,
                tier: Some(decision.tier),
                report_id: Some(report_id.to_string()),
                at: now,
                reason: decision.explanation.clone(),
                self_service: self_service && decision.self_service,
                self_service_from,
                symbols: scored.symbols.iter().map(|s| s.to_string()).collect(),
            }));
            effects.push(Effect::Transition(transition));
        }
        EomOutcome {
            decision: Decision::Reply(reply),
            tier: Some(decision),
            refusal: refusal.map(|r| r.reason),
            effects,
        }
    }

    /// The customer unblocks under the self-service rule; the abuse team
    /// lifts the block.
    pub fn unblock(
        &self,
        facts: &AccountFacts,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Transition, Event), TransitionError> {
        match by {
            Actor::Abuse(_) => self.lift(facts, by, reason, now),
            _ => self.self_service_unblock(facts, by, reason, now),
        }
    }

    /// Whether the account may be unblocked by self-service now (the
    /// 90-day rule and the tiers that allow it); the refusal says why.
    pub fn self_service_check(
        &self,
        account: &str,
        status: &AccountStatus,
        unblocks: &[UnblockRecord],
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self_service_check(
            account,
            status,
            unblocks,
            |tier| self.tiers.self_service_after(tier),
            self.unblock_rule,
            now,
        )
    }

    /// An unblock under the self-service rule, by the customer or by the
    /// abuse team on the customer's behalf; recorded as self-service.
    pub fn self_service_unblock(
        &self,
        facts: &AccountFacts,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Transition, Event), TransitionError> {
        let t = self_service_unblock(
            &facts.account,
            &facts.status,
            &facts.unblocks,
            by,
            reason,
            |tier| self.tiers.self_service_after(tier),
            self.unblock_rule,
            now,
        )?;
        let event = self.event("unblocked", facts, &t, now);
        Ok((t, event))
    }

    /// The abuse team lifts any block, with a reason, bound by no rule.
    pub fn lift(
        &self,
        facts: &AccountFacts,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Transition, Event), TransitionError> {
        let t = lift(&facts.account, &facts.status, by, reason, now)?;
        let event = self.event("unblocked", facts, &t, now);
        Ok((t, event))
    }

    /// The provider confirmed the password change.
    pub fn reset_done(
        &self,
        facts: &AccountFacts,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Transition, Event), TransitionError> {
        let t = reset_done(&facts.account, &facts.status, by, reason, now)?;
        let event = self.event("reset_done", facts, &t, now);
        Ok((t, event))
    }

    /// A volume-limit hit (`prison`, `daily_limit`) for the provider's
    /// integration; no state change, no e-mail to the customer.
    fn limit_event(
        &self,
        kind: &str,
        facts: &AccountFacts,
        reason: String,
        now: DateTime<Utc>,
    ) -> Event {
        Event {
            kind: kind.into(),
            account: facts.account.clone(),
            contact: self.directory.get(&facts.account).contact,
            tier: None,
            report_id: None,
            at: now,
            reason,
            self_service: false,
            self_service_from: None,
            symbols: Vec::new(),
        }
    }

    fn event(&self, kind: &str, facts: &AccountFacts, t: &Transition, now: DateTime<Utc>) -> Event {
        Event {
            kind: kind.into(),
            account: facts.account.clone(),
            contact: self.directory.get(&facts.account).contact,
            tier: t.from.tier(),
            report_id: t.from.report_id().map(str::to_string),
            at: now,
            reason: t.audit.actor.clone(),
            self_service: t.unblock.as_ref().is_some_and(|u| u.self_service),
            self_service_from: None,
            symbols: Vec::new(),
        }
    }
}
