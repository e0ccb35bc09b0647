//! The Accounts page (every account ever restricted, with its actions) and
//! the account action forms and their POST, shared with Mail abuse.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::store::{AccountState, AccountStatus};

use crate::http::api::{self, ActionBody};
use crate::http::auth::Principal;
use crate::http::text::url_enc;
use crate::http::{db, ApiError, AppState};

use super::layout::{cross_site_refused, error_page, flash, page};
use super::{abuse, cross_site, time};

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
            input name="reason" value=(default_reason) required aria-label="reason";
            " "
            button type="submit" name="do" value=(action) { (label) }
        }
    }
}

fn actions(s: &AccountState) -> Markup {
    html! {
        @match s.status {
            AccountStatus::Active => (action_form(&s.account, "suspend", "Suspend", "/accounts", "")),
            AccountStatus::PasswordResetRequired => {
                (action_form(&s.account, "password-reset-done", "Password reset done", "/accounts", "password changed"))
                (action_form(&s.account, "lift", "Lift", "/accounts", ""))
            }
            AccountStatus::Suspended => (action_form(&s.account, "lift", "Lift (abuse team)", "/accounts", "")),
        }
    }
}

/// The Accounts page's content.
fn accounts_body(
    list: &[AccountState],
    who: &Principal,
    flashed: Option<(bool, String)>,
) -> Markup {
    html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        p class="muted" { "Accounts that were ever restricted. Accounts not listed are active." }
        table id="accounts" {
            thead {
                tr {
                    th { "Account" } th { "Restrictions" } th { "Tier" } th { "Since" }
                    th { "Reason" } th { "Actions" }
                }
            }
            tbody {
                @for s in list {
                    tr {
                        td { a href={ "/history?account=" (url_enc(&s.account)) } { (s.account) } }
                        td { (status_text(s.status)) }
                        td { (s.tier.as_deref().unwrap_or_default()) }
                        td { (time(&s.since)) }
                        td { (s.reason.as_deref().unwrap_or_default()) }
                        td { @if who.can_act() { (actions(s)) } }
                    }
                }
            }
        }
    }
}

async fn accounts_page(
    state: &AppState,
    who: &Principal,
    flashed: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    match db::accounts(&state.store, 1000).await {
        Ok(list) => page(
            status,
            "Accounts",
            Some(who),
            accounts_body(&list, who, flashed),
        ),
        Err(e) => error_page(who, e.into()),
    }
}

pub async fn accounts(State(state): State<AppState>, who: Principal) -> Response {
    accounts_page(&state, &who, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub reason: Option<String>,
    pub back: Option<String>,
}

/// `POST /accounts/{account}/{action}`: act, then show Mail abuse (or
/// Accounts, when the form came from there) with the outcome.
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
    let to_abuse = f.back.as_deref() != Some("/accounts");
    let body = ActionBody {
        reason: f.reason,
        tier: None,
    };
    let (flashed, status) = match api::perform(&state, &who, &account, &action, &body).await {
        Ok(s) => (
            (
                true,
                format!(
                    "{}: {} done; the account is now {}.",
                    s.account,
                    action,
                    s.status.as_str()
                ),
            ),
            StatusCode::OK,
        ),
        Err(ApiError::Refused { message, .. }) => (
            (false, format!("{account}: {action} refused: {message}")),
            StatusCode::CONFLICT,
        ),
        Err(ApiError::BadRequest(m)) => {
            ((false, format!("{account}: {m}")), StatusCode::BAD_REQUEST)
        }
        Err(e) => return error_page(&who, e),
    };
    if to_abuse {
        abuse::abuse_page(&state, &who, Some(flashed), status).await
    } else {
        accounts_page(&state, &who, Some(flashed), status).await
    }
}
