//! What the policy knows about an account at decision time, derived from
//! its audit log, unblock records and counters. Pure: the pipeline reads the
//! rows and the clock, this turns them into [`AccountFacts`].

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::account::{AccountStatus, AuditEntry, UnblockRecord};
use super::limits::SpamCounts;
use super::tiers::History;

/// Everything the gates and the tiers need about one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountFacts {
    pub account: String,
    pub status: AccountStatus,
    pub history: History,
    /// The account is temp-refused until then (rate limit).
    pub prison_until: Option<DateTime<Utc>>,
    /// When the daily external-recipient budget was last hit.
    pub daily_limit_hit_at: Option<DateTime<Utc>>,
    /// Offences (tiers, prison, daily-limit hits) in the repeat-offender
    /// period.
    pub recent_offences: u64,
    pub unblocks: Vec<UnblockRecord>,
}

impl AccountFacts {
    /// An account never seen: active, clean.
    pub fn fresh(account: &str) -> AccountFacts {
        AccountFacts {
            account: account.to_string(),
            status: AccountStatus::Active,
            history: History::default(),
            prison_until: None,
            daily_limit_hit_at: None,
            recent_offences: 0,
            unblocks: Vec::new(),
        }
    }

    /// Derive the facts from the account's audit entries (any order),
    /// its unblock records and the spam counters.
    pub fn derive(
        account: &str,
        status: AccountStatus,
        audit: &[AuditEntry],
        unblocks: Vec<UnblockRecord>,
        spam: SpamCounts,
        repeat_period: Duration,
        now: DateTime<Utc>,
    ) -> AccountFacts {
        let mut entries: Vec<&AuditEntry> = audit.iter().filter(|e| e.at <= now).collect();
        entries.sort_by_key(|e| e.at);
        let day = now - Duration::hours(24);
        let d90 = now - Duration::days(90);
        let repeat_since = now - repeat_period;
        let last_reset = entries
            .iter()
            .rev()
            .find(|e| e.action == "reset_done")
            .map(|e| e.at);
        let mut facts = AccountFacts::fresh(account);
        facts.status = status;
        facts.unblocks = unblocks;
        facts.history.spam_last_hour = spam.last_hour(now);
        facts.history.spam_last_day = spam.last_day(now);
        facts.history.refusals_last_hour = spam.refusals_last_hour(now);
        for e in entries {
            let from = e.detail.get("from").and_then(|f| f.as_str());
            match e.action.as_str() {
                // Only a tier that blocked an active account is an offence;
                // messages racing the block add nothing.
                "tier" if from == Some("active") => {
                    if last_reset.is_none_or(|r| e.at > r) {
                        facts.history.offences_since_reset += 1;
                    }
                    if e.at >= repeat_since {
                        facts.recent_offences += 1;
                    }
                }
                // Earlier episodes, once over: a reset confirmed, a
                // suspension lifted.
                "reset_done" if e.at >= d90 => facts.history.resets_90d += 1,
                "unblock" if e.at >= d90 && from == Some("suspended") => {
                    facts.history.suspensions_90d += 1
                }
                "prison" | "daily_limit" => {
                    if e.at >= day {
                        facts.history.limit_hits_last_day += 1;
                    }
                    if e.at >= repeat_since {
                        facts.recent_offences += 1;
                    }
                    if e.action == "prison" {
                        let until = e
                            .detail
                            .get("until")
                            .and_then(|u| u.as_str())
                            .and_then(|u| u.parse::<DateTime<Utc>>().ok());
                        facts.prison_until = facts.prison_until.max(until);
                    } else {
                        facts.daily_limit_hit_at = Some(e.at);
                    }
                }
                _ => {}
            }
        }
        facts
    }

    pub fn in_prison(&self, now: DateTime<Utc>) -> bool {
        self.prison_until.is_some_and(|u| now < u)
    }
}
