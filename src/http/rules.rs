//! The self-service unblock rule as a pure function: no self-service
//! unblock within 90 days of the last unblock of any kind, never for mass
//! abuse (L-SPAM40) or a suspension made by hand, and only for a suspended
//! account (a password-reset block is lifted by confirming the reset). The
//! abuse team's `lift` is not bound by it. Same semantics as
//! `policy::account::unblock` for an `Actor::Customer`.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::store::{AccountState, AccountStatus, Unblock};

/// Days between two self-service unblocks.
pub const SELF_SERVICE_DAYS: i64 = 90;

/// Why a self-service unblock is refused.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum UnblockRefusal {
    #[error("the account is not blocked")]
    NotBlocked,
    #[error("the account must change its password; confirm the reset instead of unblocking")]
    PasswordResetRequired,
    #[error(
        "tier {tier} (mass abuse) is never unblocked by self-service; the abuse team must lift it"
    )]
    MassAbuse { tier: String },
    #[error("suspended by hand (no tier): only the abuse team can lift it")]
    ManualSuspension,
    #[error("unblocked on {last} (self-service is allowed once every {SELF_SERVICE_DAYS} days after any unblock); next possible on {next}; the abuse team can lift it")]
    TooSoon {
        last: DateTime<Utc>,
        next: DateTime<Utc>,
    },
}

/// Whether the account may be unblocked by self-service now. `history` is
/// the account's unblocks in any order.
pub fn check_self_service_unblock(
    state: Option<&AccountState>,
    history: &[Unblock],
    now: DateTime<Utc>,
) -> Result<(), UnblockRefusal> {
    let state = match state {
        Some(s) if s.status.is_blocked() => s,
        _ => return Err(UnblockRefusal::NotBlocked),
    };
    if state.status == AccountStatus::PasswordResetRequired {
        return Err(UnblockRefusal::PasswordResetRequired);
    }
    match state.tier.as_deref() {
        None => return Err(UnblockRefusal::ManualSuspension),
        Some(tier) if tier == "L-SPAM40" => {
            return Err(UnblockRefusal::MassAbuse {
                tier: tier.to_string(),
            })
        }
        Some(_) => {}
    }
    let window = Duration::days(SELF_SERVICE_DAYS);
    let last = history.iter().map(|u| u.at).max();
    match last {
        Some(last) if now < last + window => Err(UnblockRefusal::TooSoon {
            last,
            next: last + window,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: AccountStatus, tier: &str) -> AccountState {
        AccountState {
            account: "a@example.com".into(),
            status,
            since: Utc::now(),
            tier: Some(tier.into()),
            report_id: None,
            reason: None,
            version: 1,
        }
    }

    fn unblock(days_ago: i64, self_service: bool, now: DateTime<Utc>) -> Unblock {
        Unblock {
            account: "a@example.com".into(),
            at: now - Duration::days(days_ago),
            by: "x".into(),
            self_service,
            previous: AccountStatus::Suspended,
            reason: None,
        }
    }

    #[test]
    fn table() {
        let now = Utc::now();
        let suspended = state(AccountStatus::Suspended, "L-SPAM20");
        let cases: Vec<(Option<AccountState>, Vec<Unblock>, Option<&str>)> = vec![
            (None, vec![], Some("not_blocked")),
            (
                Some(state(AccountStatus::Active, "L-SPAM20")),
                vec![],
                Some("not_blocked"),
            ),
            (
                Some(state(AccountStatus::PasswordResetRequired, "L-SPAM10")),
                vec![],
                Some("reset"),
            ),
            (
                Some(state(AccountStatus::Suspended, "L-SPAM40")),
                vec![],
                Some("mass"),
            ),
            (Some(suspended.clone()), vec![], None),
            (
                Some(suspended.clone()),
                vec![unblock(89, true, now)],
                Some("soon"),
            ),
            (Some(suspended.clone()), vec![unblock(91, true, now)], None),
            // Any unblock, the abuse team's too, starts the 90 days.
            (
                Some(suspended.clone()),
                vec![unblock(1, false, now)],
                Some("soon"),
            ),
            (Some(suspended.clone()), vec![unblock(91, false, now)], None),
            (
                Some(suspended),
                vec![unblock(200, true, now), unblock(10, true, now)],
                Some("soon"),
            ),
        ];
        for (i, (st, hist, want)) in cases.into_iter().enumerate() {
            let got = check_self_service_unblock(st.as_ref(), &hist, now);
            let kind = got.as_ref().err().map(|e| match e {
                UnblockRefusal::NotBlocked => "not_blocked",
                UnblockRefusal::PasswordResetRequired => "reset",
                UnblockRefusal::MassAbuse { .. } => "mass",
                UnblockRefusal::ManualSuspension => "manual",
                UnblockRefusal::TooSoon { .. } => "soon",
            });
            assert_eq!(kind, want, "case {i}: {got:?}");
        }
    }
}
