//! The Mail abuse page: which accounts are blocked (since when, why, by
//! which report) and which are held back by a volume limit (prison, the
//! daily budget) until when; Unblock (the self-service rule, disabled with
//! the reason when it would refuse) and Lift (the abuse team's override)
//! for the abuse role.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use crate::policy::history::LimitRestriction;
use crate::policy::TransitionError;
use crate::store::{AccountState, AccountStatus, AccountStore};

use crate::http::api;
use crate::http::auth::Principal;
use crate::http::AppState;

use super::accounts::{action_form, status_text};
use super::layout::{error_page, flash, page};
use super::reports::account_history;
use super::{time, Flashed};

/// Most accounts listed in each table.
const MAX_LISTED: u32 = 1000;

/// A blocked account and, when a self-service unblock would be refused, why.
struct Blocked {
    state: AccountState,
    no_self_service: Option<TransitionError>,
}

/// A time to the minute, for the end of a restriction.
fn minute(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Why the self-service unblock is not possible, in a few words.
pub(super) fn no_self_service_text(why: &TransitionError) -> String {
    match why {
        TransitionError::ComplaintPeriod { tier, next, .. } => {
            format!("complaint period of {tier} until {}", minute(next))
        }
        TransitionError::TooSoon {
            last, next, days, ..
        } => format!(
            "{days}-day rule: unblocked on {}, not again before {}",
            minute(last),
            minute(next)
        ),
        TransitionError::NeverSelfService { tier, .. } => {
            format!("{tier} is mass abuse: abuse team only")
        }
        TransitionError::ManualSuspension { .. } => {
            "suspended by hand: abuse team only".to_string()
        }
        TransitionError::PasswordResetRequired { .. } => {
            "the password must be changed: confirm the reset".to_string()
        }
        other => other.to_string(),
    }
}

/// A report id as a link to its report.
pub(super) fn report_link(id: Option<&str>) -> Markup {
    html! {
        @if let Some(id) = id.filter(|id| !id.is_empty()) {
            a href={ "/reports/" (id) } class="report-id" title="the report that caused the block" { (id) }
        } @else {
            span class="muted" title="blocked by hand or by a limit, not by a message" { "—" }
        }
    }
}

/// Unblock (or why not), "password reset done" and Lift for a blocked
/// account.
fn blocked_actions(b: &Blocked, who: &Principal) -> Markup {
    let s = &b.state;
    html! {
        @if who.can_act() {
            div class="actions" {
                @match &b.no_self_service {
                    None => (action_form(&s.account, "unblock", "Unblock", "/abuse", "customer request")),
                    Some(why) => {
                        span class="action" {
                            button type="button" disabled title=(why.to_string()) class="unblock" { "Unblock" }
                        }
                    }
                }
                @if s.status == AccountStatus::PasswordResetRequired {
                    (action_form(&s.account, "password-reset-done", "Password reset done", "/abuse", "password changed"))
                }
                (action_form(&s.account, "lift", "Lift", "/abuse", ""))
            }
        }
        @if let Some(why) = &b.no_self_service {
            div class="why" title=(why.to_string()) {
                "Self-service unblock not possible: " (no_self_service_text(why))
            }
        }
    }
}

/// The Mail abuse page's content.
fn abuse_body(
    blocked: &[Blocked],
    limited: &[(String, Vec<LimitRestriction>)],
    who: &Principal,
    flashed: Option<(bool, String)>,
) -> Markup {
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        @if blocked.is_empty() && limited.is_empty() {
            div class="ok" id="status" { "No account is blocked or held back by a limit." }
        } @else {
            div class=(if blocked.is_empty() { "warn" } else { "alert" }) id="status" {
                @if blocked.is_empty() {
                    "No account is blocked. "
                } @else {
                    (blocked.len()) " account" (plural(blocked.len(), " is", "s are")) " blocked. "
                }
                @if !limited.is_empty() {
                    (limited.len()) " account" (plural(limited.len(), " is", "s are"))
                    " held back by a volume limit."
                }
            }
        }
        @if !blocked.is_empty() {
            h2 { "Blocked" }
            table id="blocked" {
                thead {
                    tr {
                        th { "Account" } th { "Restriction" } th { "Tier" } th { "Block date" }
                        th { "Reason" } th { "Report" } th { "Unblock / Lift" }
                    }
                }
                tbody {
                    @for b in blocked {
                        @let s = &b.state;
                        tr {
                            td { a href=(account_history(&s.account)) { (s.account) } }
                            td { (status_text(s.status)) }
                            td class="nowrap" { (s.tier.as_deref().unwrap_or_default()) }
                            td class="nowrap" { (time(&s.since)) }
                            td { (s.reason.as_deref().unwrap_or_default()) }
                            td { (report_link(s.report_id.as_deref())) }
                            td { (blocked_actions(b, who)) }
                        }
                    }
                }
            }
            @if who.can_act() {
                p class="muted" {
                    "Unblock applies the customer's self-service rule (complaint period, once every 90 days, never for L-SPAM40) and counts as their unblock. "
                    "Lift is the abuse team's override of every rule; give the reason."
                }
            }
        }
        @if !limited.is_empty() {
            h2 { "Held back by a volume limit" }
            table id="limited" {
                thead {
                    tr { th { "Account" } th { "Restriction" } th { "Ends" } }
                }
                tbody {
                    @for (account, restrictions) in limited {
                        @for r in restrictions {
                            tr {
                                td { a href=(account_history(account)) { (account) } }
                                td class={ "limit " (r.kind.as_str()) } { (r.kind.describe()) }
                                td class="nowrap" { (minute(&r.until)) }
                            }
                        }
                    }
                }
            }
            p class="muted" {
                "Volume limits end by themselves: prison after its time, the daily limit at local midnight ([limits] day_timezone)."
            }
        }
    }
}

pub async fn abuse(
    State(state): State<AppState>,
    who: Principal,
    Flashed(flashed): Flashed,
) -> Response {
    let blocked = match state.store.blocked_accounts(MAX_LISTED).await {
        Ok(b) => b,
        Err(e) => return error_page(&who, e.into()),
    };
    let mut rows = Vec::with_capacity(blocked.len());
    for s in blocked {
        let no_self_service = match api::self_service_check(&state, &s.account).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(e) => return error_page(&who, e),
        };
        rows.push(Blocked {
            state: s,
            no_self_service,
        });
    }
    let limited = match api::limited_accounts(&state, MAX_LISTED as usize).await {
        Ok(l) => l,
        Err(e) => return error_page(&who, e),
    };
    page(
        StatusCode::OK,
        "Mail abuse",
        Some(&who),
        abuse_body(&rows, &limited, &who, flashed),
    )
}
