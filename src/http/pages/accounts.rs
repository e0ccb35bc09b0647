//! The Accounts page (every mailbox: the accounts directory and the
//! accounts seen in the reports kept, with their state and actions) and
//! the account action forms and their POST, shared with Mail abuse.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use crate::policy::history::LimitRestriction;
use crate::store::{AccountState, AccountStatus};

use crate::http::api::{self, ActionBody};
use crate::http::auth::Principal;
use crate::http::text::url_enc;
use crate::http::{db, ApiError, AppState};

use super::abuse::report_link;
use super::layout::{cross_site_refused, error_page, flash, page};
use super::reports::account_history;
use super::{cross_site, done, time, Flashed};

/// Most accounts on the page.
const MAX_ACCOUNTS: usize = 2000;

/// The tiers a suspension by hand may be recorded under.
const SUSPENSION_TIERS: [&str; 5] = ["L-SPAM20", "L-SPAM21", "L-SPAM30", "L-SPAM31", "L-SPAM40"];

/// An account's restriction in words.
pub(super) fn status_text(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "none",
        AccountStatus::PasswordResetRequired => "sending blocked: password reset required",
        AccountStatus::Suspended => "SMTP suspended",
    }
}

/// One account action: a reason field and its button; `back` names the
/// page to return to.
pub(super) fn action_form(
    account: &str,
    action: &str,
    label: &str,
    back: &str,
    default_reason: &str,
) -> Markup {
    html! {
        form method="post" action={ "/accounts/" (url_enc(account)) "/" (action) } class="action" {
            input type="hidden" name="back" value=(back);
            input name="reason" value=(default_reason) placeholder="reason" required aria-label="reason";
            " "
            button type="submit" name="do" value=(action) { (label) }
        }
    }
}

/// Suspend by hand: a reason and, optionally, the tier to record it under.
fn suspend_form(account: &str) -> Markup {
    html! {
        form method="post" action={ "/accounts/" (url_enc(account)) "/suspend" } class="action" {
            input type="hidden" name="back" value="/accounts";
            input name="reason" placeholder="reason" required aria-label="reason";
            " "
            select name="tier" aria-label="tier" title="L-SPAM40: only the abuse team can lift it" {
                option value="" { "by hand (no tier)" }
                @for t in SUSPENSION_TIERS { option value=(t) { (t) } }
            }
            " "
            button type="submit" name="do" value="suspend" { "Suspend" }
        }
    }
}

fn actions(account: &str, status: AccountStatus) -> Markup {
    html! {
        @match status {
            AccountStatus::Active => (suspend_form(account)),
            AccountStatus::PasswordResetRequired => {
                (action_form(account, "password-reset-done", "Password reset done", "/accounts", "password changed"))
                (action_form(account, "lift", "Lift", "/accounts", ""))
            }
            AccountStatus::Suspended => (action_form(account, "lift", "Lift (abuse team)", "/accounts", "")),
        }
    }
}

/// One mailbox: where it is known from, its traffic and its state.
#[derive(Debug, Default)]
struct Mailbox {
    in_directory: bool,
    messages: i64,
    last: Option<DateTime<Utc>>,
    state: Option<AccountState>,
    limits: Vec<LimitRestriction>,
}

impl Mailbox {
    fn status(&self) -> AccountStatus {
        self.state
            .as_ref()
            .map_or(AccountStatus::Active, |s| s.status)
    }

    /// Blocked first, then limited, then the rest.
    fn rank(&self) -> u8 {
        if self.status().is_blocked() {
            0
        } else if !self.limits.is_empty() {
            1
        } else {
            2
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountsQuery {
    /// A part of the account name.
    pub q: Option<String>,
}

/// The Accounts page's content.
fn accounts_body(
    list: &[(String, Mailbox)],
    total: usize,
    q: &AccountsQuery,
    who: &Principal,
    flashed: Option<(bool, String)>,
) -> Markup {
    let query = q.q.as_deref().unwrap_or_default();
    html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        form class="filters" method="get" action="/accounts" {
            p {
                label { "Account (or part) " input name="q" value=(query); } " "
                button type="submit" { "Filter" } " "
                a href="/accounts" { "clear" }
            }
        }
        p class="muted" id="accounts-count" {
            "Every mailbox of the accounts directory and every account that sent mail in the reports kept: "
            (total) " in all"
            @if !query.is_empty() { ", " (list.len()) " matching" }
            @if list.len() >= MAX_ACCOUNTS { " (the first " (MAX_ACCOUNTS) " shown: narrow the filter)" }
            ". Blocked and limited accounts come first."
        }
        table id="accounts" {
            thead {
                tr {
                    th { "Account" } th { "Known from" } th { "Messages" } th { "Last message" }
                    th { "Restrictions" }
                    @if who.can_act() { th { "Actions" } }
                }
            }
            tbody {
                @for (account, m) in list {
                    @let status = m.status();
                    tr class=[status.is_blocked().then_some("blocked")] {
                        td { a href=(account_history(account)) { (account) } }
                        td {
                            (match (m.in_directory, m.messages > 0) {
                                (true, true) => "directory, traffic",
                                (true, false) => "directory",
                                (false, true) => "traffic",
                                (false, false) => "audit log",
                            })
                        }
                        td class="num" { (m.messages) }
                        td class="nowrap" { (m.last.as_ref().map(time).unwrap_or_default()) }
                        td {
                            @if status.is_blocked() || m.limits.is_empty() { (status_text(status)) }
                            @if let Some(s) = m.state.as_ref().filter(|_| status.is_blocked()) {
                                div class="muted" {
                                    @if let Some(tier) = &s.tier { (tier) " " }
                                    "since " span class="nowrap" { (time(&s.since)) }
                                    @if let Some(reason) = &s.reason { ": " (reason) }
                                    @if s.report_id.is_some() {
                                        " · report " (report_link(s.report_id.as_deref()))
                                    }
                                }
                            }
                            @for r in &m.limits {
                                div class={ "limit " (r.kind.as_str()) } title=(r.kind.describe()) {
                                    (r.kind.label()) " until "
                                    span class="nowrap" { (r.until.format("%Y-%m-%d %H:%M UTC")) }
                                }
                            }
                        }
                        @if who.can_act() { td { (actions(account, status)) } }
                    }
                }
            }
        }
    }
}

/// Every mailbox: the directory, the traffic, the recorded states and the
/// volume limits in force, by account.
async fn mailboxes(state: &AppState) -> Result<BTreeMap<String, Mailbox>, ApiError> {
    let mut all: BTreeMap<String, Mailbox> = BTreeMap::new();
    for entry in state.enforcer.policy().directory.iter() {
        all.entry(entry.login.to_ascii_lowercase())
            .or_default()
            .in_directory = true;
    }
    let since = Utc::now()
        - chrono::Duration::from_std(state.store.options().retention)
            .unwrap_or(chrono::Duration::hours(72));
    for seen in db::traffic_accounts(&state.store, since, 100_000).await? {
        let m = all.entry(seen.account).or_default();
        m.messages = seen.messages;
        m.last = Some(seen.last);
    }
    for s in db::accounts(&state.store, 100_000).await? {
        let account = s.account.clone();
        all.entry(account).or_default().state = Some(s);
    }
    for (account, limits) in api::limited_accounts(state, 100_000).await? {
        all.entry(account).or_default().limits = limits;
    }
    Ok(all)
}

pub async fn accounts(
    State(state): State<AppState>,
    who: Principal,
    Flashed(flashed): Flashed,
    Query(q): Query<AccountsQuery>,
) -> Response {
    let all = match mailboxes(&state).await {
        Ok(all) => all,
        Err(e) => return error_page(&who, e),
    };
    let total = all.len();
    let part =
        q.q.as_deref()
            .map(|p| p.trim().to_lowercase())
            .unwrap_or_default();
    let mut list: Vec<(String, Mailbox)> = all
        .into_iter()
        .filter(|(account, _)| account.contains(&part))
        .collect();
    list.sort_by(|(a, ma), (b, mb)| ma.rank().cmp(&mb.rank()).then_with(|| a.cmp(b)));
    list.truncate(MAX_ACCOUNTS);
    page(
        StatusCode::OK,
        "Accounts",
        Some(&who),
        accounts_body(&list, total, &q, &who, flashed),
    )
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub reason: Option<String>,
    /// For `suspend`: the tier to record, empty for none.
    pub tier: Option<String>,
    pub back: Option<String>,
}

/// `POST /accounts/{account}/{action}`: act, then back (303) to Mail abuse
/// or Accounts, whichever the form came from, with the outcome.
pub async fn account_action(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((account, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if cross_site(&headers) {
        return cross_site_refused("Refused", Some(&who));
    }
    let back = match f.back.as_deref() {
        Some("/accounts") => "/accounts",
        _ => "/abuse",
    };
    let body = ActionBody {
        reason: f.reason,
        tier: f.tier.filter(|t| !t.trim().is_empty()),
    };
    let (good, text) = match api::perform(&state, &who, &account, &action, &body).await {
        Ok(s) => (
            true,
            format!(
                "{}: {} done; the account is now {}.",
                s.account,
                action,
                s.status.as_str()
            ),
        ),
        Err(ApiError::Refused { message, .. }) => {
            (false, format!("{account}: {action} refused: {message}"))
        }
        Err(ApiError::BadRequest(m)) => (false, format!("{account}: {m}")),
        Err(e) => return error_page(&who, e),
    };
    done(&state, &headers, back, good, text)
}
