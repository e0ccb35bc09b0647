//! Account state machine: active, password-reset-required, suspended; the
//! transitions a tier, a confirmed password reset, an unblock or the abuse
//! team cause, each with its audit entry. Pure: the clock is an argument.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tiers::{Family, Tier, TierDecision};

/// Whether an account may send, and if not since when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    PasswordResetRequired {
        since: DateTime<Utc>,
        tier: Tier,
        report_id: String,
    },
    Suspended {
        since: DateTime<Utc>,
        /// `None` when the abuse team suspended by hand.
        tier: Option<Tier>,
        report_id: Option<String>,
        reason: String,
    },
}

impl AccountStatus {
    /// `active`, `password_reset_required` or `suspended` (the store's words).
    pub fn name(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::PasswordResetRequired { .. } => "password_reset_required",
            AccountStatus::Suspended { .. } => "suspended",
        }
    }

    pub fn is_blocked(&self) -> bool {
        !matches!(self, AccountStatus::Active)
    }

    pub fn tier(&self) -> Option<Tier> {
        match self {
            AccountStatus::Active => None,
            AccountStatus::PasswordResetRequired { tier, .. } => Some(*tier),
            AccountStatus::Suspended { tier, .. } => *tier,
        }
    }

    pub fn report_id(&self) -> Option<&str> {
        match self {
            AccountStatus::Active => None,
            AccountStatus::PasswordResetRequired { report_id, .. } => Some(report_id),
            AccountStatus::Suspended { report_id, .. } => report_id.as_deref(),
        }
    }

    pub fn since(&self) -> Option<DateTime<Utc>> {
        match self {
            AccountStatus::Active => None,
            AccountStatus::PasswordResetRequired { since, .. }
            | AccountStatus::Suspended { since, .. } => Some(*since),
        }
    }
}

/// Who acts on an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// outscore itself (a tier decision, a limit).
    System,
    /// The customer, through the panel or the CLI on their behalf.
    Customer(String),
    /// A member of the abuse team.
    Abuse(String),
    /// The provider's systems or support on the customer's behalf (the
    /// panel, the helpdesk confirming a password change).
    Provider(String),
}

impl Actor {
    /// `system`, `customer:<login>`, `abuse:<name>`, `provider:<name>`.
    pub fn label(&self) -> String {
        match self {
            Actor::System => "system".into(),
            Actor::Customer(n) => format!("customer:{n}"),
            Actor::Abuse(n) => format!("abuse:{n}"),
            Actor::Provider(n) => format!("provider:{n}"),
        }
    }
}

/// One line of the audit log: who did what to which account, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub account: String,
    /// `tier`, `reset_done`, `unblock`, `suspend`, `prison`, `daily_limit`.
    pub action: String,
    pub detail: serde_json::Value,
}

/// An unblock already done, for the 90-day rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnblockRecord {
    pub at: DateTime<Utc>,
    pub self_service: bool,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("account {0} is not blocked")]
    NotBlocked(String),
    #[error("account {account} is suspended; a password change does not lift a suspension")]
    ResetDoesNotLiftSuspension { account: String },
    #[error("{tier} is mass abuse: only the abuse team can unblock {account}")]
    NeverSelfService { account: String, tier: Tier },
    #[error("account {account} must change its password: confirm the reset instead of unblocking")]
    PasswordResetRequired { account: String },
    #[error("account {account} was suspended by hand (no tier): only the abuse team can lift it")]
    ManualSuspension { account: String },
    #[error("{tier} is not a suspension tier")]
    NotASuspensionTier { tier: Tier },
    #[error(
        "account {account} was changed by someone else at the same moment; look again and retry"
    )]
    Changed { account: String },
    #[error(
        "account {account} was unblocked on {last}; self-service unblock is allowed once every {days} days, so it is possible again from {next}; until then only the abuse team can unblock"
    )]
    TooSoon {
        account: String,
        last: DateTime<Utc>,
        next: DateTime<Utc>,
        days: i64,
    },
    #[error(
        "account {account} was suspended under {tier} on {since}; self-service unblock is possible once the complaint period has passed, from {next}; until then only the abuse team can unblock"
    )]
    ComplaintPeriod {
        account: String,
        tier: Tier,
        since: DateTime<Utc>,
        next: DateTime<Utc>,
    },
    #[error("the abuse team must give a reason")]
    ReasonRequired,
    #[error("only the account's owner or the abuse team can do this")]
    NotAllowed,
}

/// The documented refusal code (README, "Account actions") and detail of a
/// policy refusal of `action`; `None` when the refusal is not a conflict
/// with the account's state.
pub fn refusal(
    action: &str,
    account: &str,
    why: &TransitionError,
) -> Option<(&'static str, serde_json::Value)> {
    let (code, mut detail) = match why {
        TransitionError::TooSoon {
            last, next, days, ..
        } => (
            "too_soon",
            json!({"last": last, "next": next, "days": days}),
        ),
        TransitionError::ComplaintPeriod {
            tier, since, next, ..
        } => (
            "complaint_period",
            json!({"tier": tier, "since": since, "next": next}),
        ),
        TransitionError::NeverSelfService { tier, .. } => ("mass_abuse", json!({"tier": tier})),
        TransitionError::ManualSuspension { .. } => ("manual_suspension", json!({})),
        TransitionError::PasswordResetRequired { .. } => ("password_reset_required", json!({})),
        TransitionError::ResetDoesNotLiftSuspension { .. } => ("not_waiting_for_reset", json!({})),
        TransitionError::NotBlocked(_) if action == "password-reset-done" => {
            ("not_waiting_for_reset", json!({}))
        }
        TransitionError::NotBlocked(_) => ("not_blocked", json!({})),
        TransitionError::Changed { .. } => ("changed", json!({})),
        TransitionError::ReasonRequired
        | TransitionError::NotAllowed
        | TransitionError::NotASuspensionTier { .. } => return None,
    };
    detail["refusal"] = json!(code);
    detail["account"] = json!(account);
    Some((code, detail))
}

/// A state change to persist, with its audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub account: String,
    pub from: AccountStatus,
    pub to: AccountStatus,
    pub audit: AuditEntry,
    /// Set when the change is an unblock (recorded for the 90-day rule).
    pub unblock: Option<UnblockRecord>,
}

/// The self-service window (90 days in the seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnblockRule {
    pub self_service_every: Duration,
}

impl Default for UnblockRule {
    fn default() -> Self {
        UnblockRule {
            self_service_every: Duration::days(90),
        }
    }
}

/// A tier decision hits the account. Escalates only: a suspension is never
/// turned into a password-reset block, and a blocked account keeps its
/// first reason unless the new tier is more severe.
pub fn apply_tier(
    account: &str,
    current: &AccountStatus,
    decision: &TierDecision,
    report_id: &str,
    now: DateTime<Utc>,
) -> Option<Transition> {
    if let Some(existing) = current.tier() {
        if existing >= decision.tier {
            return None;
        }
    }
    if matches!(current, AccountStatus::Suspended { .. })
        && decision.family == Family::PasswordReset
    {
        return None;
    }
    let to = match decision.family {
        Family::PasswordReset => AccountStatus::PasswordResetRequired {
            since: now,
            tier: decision.tier,
            report_id: report_id.to_string(),
        },
        Family::Suspension => AccountStatus::Suspended {
            since: now,
            tier: Some(decision.tier),
            report_id: Some(report_id.to_string()),
            reason: decision.explanation.clone(),
        },
    };
    Some(Transition {
        account: account.to_string(),
        from: current.clone(),
        audit: AuditEntry {
            at: now,
            actor: Actor::System.label(),
            account: account.to_string(),
            action: "tier".into(),
            detail: json!({
                "tier": decision.tier,
                "family": decision.family,
                "report_id": report_id,
                "from": current.name(),
                "to": to.name(),
                "rule": decision.rule_index + 1,
                "why": decision.explanation,
            }),
        },
        to,
        unblock: None,
    })
}

/// The provider confirmed the password was changed: a reset block is lifted.
pub fn reset_done(
    account: &str,
    current: &AccountStatus,
    by: &Actor,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Transition, TransitionError> {
    match current {
        AccountStatus::PasswordResetRequired {
            tier, report_id, ..
        } => Ok(Transition {
            account: account.to_string(),
            from: current.clone(),
            to: AccountStatus::Active,
            audit: AuditEntry {
                at: now,
                actor: by.label(),
                account: account.to_string(),
                action: "reset_done".into(),
                detail: json!({"tier": tier, "report_id": report_id,
                    "from": current.name(), "to": "active", "reason": reason}),
            },
            unblock: None,
        }),
        AccountStatus::Suspended { .. } => Err(TransitionError::ResetDoesNotLiftSuspension {
            account: account.to_string(),
        }),
        AccountStatus::Active => Err(TransitionError::NotBlocked(account.to_string())),
    }
}

/// The self-service rule: may the account be unblocked without the abuse
/// team now? Only a suspension made by a tier that is self-service
/// (`self_service_after` gives its complaint period, `None` for a tier the
/// customer can never unblock), once that period has passed since the
/// suspension, and not within `rule.self_service_every` of the last unblock
/// of any kind. A password-reset block is lifted by
/// [`reset_done`] instead.
pub fn self_service_check(
    account: &str,
    current: &AccountStatus,
    earlier: &[UnblockRecord],
    self_service_after: impl Fn(Tier) -> Option<Duration>,
    rule: UnblockRule,
    now: DateTime<Utc>,
) -> Result<(), TransitionError> {
    let complaint_ends = match current {
        AccountStatus::Active => return Err(TransitionError::NotBlocked(account.to_string())),
        AccountStatus::PasswordResetRequired { .. } => {
            return Err(TransitionError::PasswordResetRequired {
                account: account.to_string(),
            })
        }
        AccountStatus::Suspended { tier: None, .. } => {
            return Err(TransitionError::ManualSuspension {
                account: account.to_string(),
            })
        }
        AccountStatus::Suspended {
            tier: Some(tier),
            since,
            ..
        } => {
            let Some(period) = self_service_after(*tier) else {
                return Err(TransitionError::NeverSelfService {
                    account: account.to_string(),
                    tier: *tier,
                });
            };
            (*tier, *since, *since + period)
        }
    };
    // Both rules may hold the unblock back: the one that ends last is the
    // one to tell the customer about.
    let too_soon = earlier
        .iter()
        .map(|u| u.at)
        .max()
        .map(|last| (last, last + rule.self_service_every))
        .filter(|(_, next)| now < *next);
    let complaint = Some(complaint_ends).filter(|(_, _, next)| now < *next);
    match (complaint, too_soon) {
        (Some((tier, since, next)), soon) if soon.is_none_or(|(_, n)| n <= next) => {
            return Err(TransitionError::ComplaintPeriod {
                account: account.to_string(),
                tier,
                since,
                next,
            })
        }
        (_, Some((last, next))) => {
            return Err(TransitionError::TooSoon {
                account: account.to_string(),
                last,
                next,
                days: rule.self_service_every.num_days(),
            })
        }
        _ => {}
    }
    Ok(())
}

/// An unblock under the self-service rule ([`self_service_check`]),
/// recorded as self-service: asked by the customer, or by the abuse team
/// on the customer's behalf.
#[allow(clippy::too_many_arguments)]
pub fn self_service_unblock(
    account: &str,
    current: &AccountStatus,
    earlier: &[UnblockRecord],
    by: &Actor,
    reason: Option<&str>,
    self_service_after: impl Fn(Tier) -> Option<Duration>,
    rule: UnblockRule,
    now: DateTime<Utc>,
) -> Result<Transition, TransitionError> {
    if matches!(by, Actor::System) {
        return Err(TransitionError::NotAllowed);
    }
    self_service_check(account, current, earlier, self_service_after, rule, now)?;
    Ok(unblocked(account, current, by, reason, true, now))
}

/// The abuse team lifts any block (suspension or password reset), bound
/// by no rule but a reason. Not counted as self-service, but it starts the
/// self-service window like any unblock.
pub fn lift(
    account: &str,
    current: &AccountStatus,
    by: &Actor,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Transition, TransitionError> {
    if !matches!(by, Actor::Abuse(_)) {
        return Err(TransitionError::NotAllowed);
    }
    if !current.is_blocked() {
        return Err(TransitionError::NotBlocked(account.to_string()));
    }
    if reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(TransitionError::ReasonRequired);
    }
    Ok(unblocked(account, current, by, reason, false, now))
}

fn unblocked(
    account: &str,
    current: &AccountStatus,
    by: &Actor,
    reason: Option<&str>,
    self_service: bool,
    now: DateTime<Utc>,
) -> Transition {
    Transition {
        account: account.to_string(),
        from: current.clone(),
        to: AccountStatus::Active,
        audit: AuditEntry {
            at: now,
            actor: by.label(),
            account: account.to_string(),
            action: "unblock".into(),
            detail: json!({"from": current.name(), "to": "active", "tier": current.tier(),
                "report_id": current.report_id(), "self_service": self_service,
                "reason": reason}),
        },
        unblock: Some(UnblockRecord {
            at: now,
            self_service,
        }),
    }
}

/// The abuse team suspends an account by hand, under `tier` when given (a
/// suspension tier), else under the account's current suspension tier if
/// any; without a tier it is a manual suspension (never self-service).
pub fn suspend(
    account: &str,
    current: &AccountStatus,
    by: &Actor,
    reason: &str,
    tier: Option<Tier>,
    now: DateTime<Utc>,
) -> Result<Transition, TransitionError> {
    if !matches!(by, Actor::Abuse(_)) {
        return Err(TransitionError::NotAllowed);
    }
    if reason.trim().is_empty() {
        return Err(TransitionError::ReasonRequired);
    }
    if let Some(tier) = tier.filter(|t| t.family() != Family::Suspension) {
        return Err(TransitionError::NotASuspensionTier { tier });
    }
    let to = AccountStatus::Suspended {
        since: now,
        tier: tier.or_else(|| current.tier().filter(|t| t.family() == Family::Suspension)),
        report_id: current.report_id().map(str::to_string),
        reason: reason.to_string(),
    };
    Ok(Transition {
        account: account.to_string(),
        from: current.clone(),
        audit: AuditEntry {
            at: now,
            actor: by.label(),
            account: account.to_string(),
            action: "suspend".into(),
            detail: json!({"from": current.name(), "to": "suspended", "reason": reason,
                "tier": to.tier()}),
        },
        to,
        unblock: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspended(tier: Option<Tier>) -> AccountStatus {
        AccountStatus::Suspended {
            since: Utc::now() - Duration::days(1),
            tier,
            report_id: None,
            reason: "spam run".into(),
        }
    }

    fn unblocked(days_ago: i64, self_service: bool, now: DateTime<Utc>) -> UnblockRecord {
        UnblockRecord {
            at: now - Duration::days(days_ago),
            self_service,
        }
    }

    fn code(e: &TransitionError) -> &'static str {
        match e {
            TransitionError::NotBlocked(_) => "not_blocked",
            TransitionError::PasswordResetRequired { .. } => "reset",
            TransitionError::NeverSelfService { .. } => "mass",
            TransitionError::ManualSuspension { .. } => "manual",
            TransitionError::TooSoon { .. } => "soon",
            TransitionError::ComplaintPeriod { .. } => "complaint",
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn self_service_rule_table() {
        let now = Utc::now();
        let reset = AccountStatus::PasswordResetRequired {
            since: now,
            tier: Tier::LSpam10,
            report_id: "r".into(),
        };
        let l20 = suspended(Some(Tier::LSpam20));
        let cases: Vec<(AccountStatus, Vec<UnblockRecord>, Option<&str>)> = vec![
            (AccountStatus::Active, vec![], Some("not_blocked")),
            (reset, vec![], Some("reset")),
            (suspended(Some(Tier::LSpam40)), vec![], Some("mass")),
            (suspended(None), vec![], Some("manual")),
            (l20.clone(), vec![], None),
            (l20.clone(), vec![unblocked(89, true, now)], Some("soon")),
            (l20.clone(), vec![unblocked(91, true, now)], None),
            // Any unblock, the abuse team's too, starts the 90 days.
            (l20.clone(), vec![unblocked(1, false, now)], Some("soon")),
            (l20.clone(), vec![unblocked(91, false, now)], None),
            (
                l20,
                vec![unblocked(200, true, now), unblocked(10, true, now)],
                Some("soon"),
            ),
        ];
        for (i, (status, earlier, want)) in cases.into_iter().enumerate() {
            let got = self_service_check(
                "a@example.com",
                &status,
                &earlier,
                |t| (t != Tier::LSpam40).then(Duration::zero),
                UnblockRule::default(),
                now,
            );
            assert_eq!(got.as_ref().err().map(code), want, "case {i}: {got:?}");
        }
    }

    #[test]
    fn actors_are_labelled_by_who_they_are() {
        assert_eq!(
            Actor::Provider("helpdesk".into()).label(),
            "provider:helpdesk"
        );
        assert_eq!(
            Actor::Customer("a@x.example".into()).label(),
            "customer:a@x.example"
        );
        assert_eq!(Actor::Abuse("maria".into()).label(), "abuse:maria");
    }

    #[test]
    fn self_service_waits_for_the_complaint_period() {
        let since = Utc::now();
        let l30 = AccountStatus::Suspended {
            since,
            tier: Some(Tier::LSpam30),
            report_id: None,
            reason: "spam run".into(),
        };
        let period = |_| Some(Duration::hours(72));
        let check = |now| {
            self_service_check(
                "a@example.com",
                &l30,
                &[],
                period,
                UnblockRule::default(),
                now,
            )
        };
        match check(since + Duration::hours(71)) {
            Err(TransitionError::ComplaintPeriod { next, tier, .. }) => {
                assert_eq!(next, since + Duration::hours(72));
                assert_eq!(tier, Tier::LSpam30);
            }
            other => panic!("expected the complaint period, got {other:?}"),
        }
        assert_eq!(check(since + Duration::hours(72)), Ok(()));
        // The abuse team is bound by no period.
        let abuse = Actor::Abuse("maria".into());
        assert!(lift("a@example.com", &l30, &abuse, Some("verified"), since).is_ok());
    }

    #[test]
    fn lift_overrides_the_rule_but_needs_the_abuse_team_and_a_reason() {
        let now = Utc::now();
        let abuse = Actor::Abuse("maria".into());
        let mass = suspended(Some(Tier::LSpam40));
        let t = lift("a@example.com", &mass, &abuse, Some("verified"), now).unwrap();
        assert_eq!(t.to, AccountStatus::Active);
        assert!(!t.unblock.unwrap().self_service);
        assert_eq!(t.audit.actor, "abuse:maria");
        assert_eq!(
            lift("a@example.com", &mass, &abuse, Some(" "), now),
            Err(TransitionError::ReasonRequired)
        );
        assert_eq!(
            lift(
                "a@example.com",
                &mass,
                &Actor::Customer("a".into()),
                Some("x"),
                now
            ),
            Err(TransitionError::NotAllowed)
        );
        assert!(matches!(
            lift(
                "a@example.com",
                &AccountStatus::Active,
                &abuse,
                Some("x"),
                now
            ),
            Err(TransitionError::NotBlocked(_))
        ));
        // On the customer's behalf the abuse team is bound by the rule, and
        // the unblock counts as self-service.
        let l20 = suspended(Some(Tier::LSpam20));
        let t = self_service_unblock(
            "a@example.com",
            &l20,
            &[],
            &abuse,
            Some("customer request"),
            |_| Some(Duration::zero()),
            UnblockRule::default(),
            now,
        )
        .unwrap();
        assert!(t.unblock.unwrap().self_service);
        assert!(matches!(
            self_service_unblock(
                "a@example.com",
                &l20,
                &[unblocked(3, false, now)],
                &abuse,
                Some("again"),
                |_| Some(Duration::zero()),
                UnblockRule::default(),
                now,
            ),
            Err(TransitionError::TooSoon { .. })
        ));
    }

    #[test]
    fn suspend_takes_only_a_suspension_tier() {
        let now = Utc::now();
        let abuse = Actor::Abuse("maria".into());
        let t = suspend(
            "a@example.com",
            &AccountStatus::Active,
            &abuse,
            "complaint",
            Some(Tier::LSpam21),
            now,
        )
        .unwrap();
        assert_eq!(t.to.tier(), Some(Tier::LSpam21));
        assert_eq!(
            suspend(
                "a@example.com",
                &AccountStatus::Active,
                &abuse,
                "complaint",
                Some(Tier::LSpam10),
                now
            ),
            Err(TransitionError::NotASuspensionTier {
                tier: Tier::LSpam10
            })
        );
        let manual = suspend(
            "a@example.com",
            &AccountStatus::Active,
            &abuse,
            "x",
            None,
            now,
        )
        .unwrap();
        assert_eq!(manual.to.tier(), None);
    }
}
