//! What the policy knows about an account at decision time, derived from
//! its audit log, unblock records and counters. Pure: the pipeline reads the
//! rows and the clock, this turns them into [`AccountFacts`].

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::DayZone;

use super::account::{AccountStatus, AuditEntry, UnblockRecord};
use super::limits::{day_start, SpamCounts};
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

    /// The volume restrictions in force at `now`: prison until its end, and
    /// the daily budget when it was hit today (the local day of `zone`),
    /// until the next local midnight.
    pub fn limit_restrictions(&self, now: DateTime<Utc>, zone: DayZone) -> Vec<LimitRestriction> {
        let mut out = Vec::new();
        if let Some(until) = self.prison_until.filter(|u| now < *u) {
            out.push(LimitRestriction {
                kind: LimitKind::Prison,
                until,
            });
        }
        let today = day_start(now, zone);
        if self.daily_limit_hit_at.is_some_and(|at| at >= today) {
            out.push(LimitRestriction {
                kind: LimitKind::DailyLimit,
                until: next_day_start(now, zone),
            });
        }
        out
    }
}

/// The start of the local day after the one containing `now` (a local day
/// lasts 23 to 25 hours around daylight-saving changes).
pub fn next_day_start(now: DateTime<Utc>, zone: DayZone) -> DateTime<Utc> {
    day_start(day_start(now, zone) + Duration::hours(26), zone)
}

/// Which volume limit holds an account back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Over the message rate: every message is temp-refused for a while.
    Prison,
    /// The day's distinct external recipients are spent: new external
    /// recipients are refused until local midnight.
    DailyLimit,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Prison => "prison",
            LimitKind::DailyLimit => "daily_limit",
        }
    }

    /// The restriction in a few words.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Prison => "in prison (rate limit)",
            LimitKind::DailyLimit => "daily limit reached",
        }
    }

    /// The restriction in words, for the abuse team.
    pub fn describe(self) -> &'static str {
        match self {
            LimitKind::Prison => "in prison (rate limit): every message is temp-refused",
            LimitKind::DailyLimit => "daily limit reached: new external recipients are refused",
        }
    }
}

/// A volume restriction in force and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRestriction {
    pub kind: LimitKind,
    pub until: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn entry(at: &str, action: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            at: t(at),
            actor: "policy".into(),
            account: "a@example.com".into(),
            action: action.into(),
            detail,
        }
    }

    fn facts(audit: &[AuditEntry], now: DateTime<Utc>) -> AccountFacts {
        AccountFacts::derive(
            "a@example.com",
            AccountStatus::Active,
            audit,
            Vec::new(),
            SpamCounts::default(),
            Duration::days(30),
            now,
        )
    }

    #[test]
    fn prison_and_daily_limit_are_restrictions_until_their_end() {
        let athens = DayZone::parse("Europe/Athens").unwrap();
        let audit = [
            entry(
                "2026-11-22T10:00:00Z",
                "prison",
                serde_json::json!({"until": "2026-11-22T10:20:00Z"}),
            ),
            entry("2026-11-22T09:00:00Z", "daily_limit", serde_json::json!({})),
        ];
        let now = t("2026-11-22T10:05:00Z");
        let r = facts(&audit, now).limit_restrictions(now, athens);
        assert_eq!(
            r,
            vec![
                LimitRestriction {
                    kind: LimitKind::Prison,
                    until: t("2026-11-22T10:20:00Z"),
                },
                // Next midnight in Athens (UTC+2 in November).
                LimitRestriction {
                    kind: LimitKind::DailyLimit,
                    until: t("2026-11-22T22:00:00Z"),
                },
            ]
        );
        // Prison over; the daily limit of yesterday (local) no longer holds.
        let later = t("2026-11-22T22:30:00Z");
        assert!(facts(&audit, later)
            .limit_restrictions(later, athens)
            .is_empty());
    }

    #[test]
    fn the_next_local_midnight_follows_daylight_saving() {
        let rome = DayZone::parse("Europe/Rome").unwrap();
        // 29 March 2026: a 23-hour day in Rome.
        assert_eq!(
            next_day_start(t("2026-03-29T10:00:00Z"), rome),
            t("2026-03-29T22:00:00Z")
        );
        // 25 October 2026: a 25-hour day.
        assert_eq!(
            next_day_start(t("2026-10-25T10:00:00Z"), rome),
            t("2026-10-25T23:00:00Z")
        );
    }
}
