//! The Mail abuse page: is any account blocked, and why; unblock for the
//! abuse role, with the reason a self-service unblock is not possible.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use crate::store::{AccountState, AccountStore};

use crate::http::api;
use crate::http::auth::Principal;
use crate::http::AppState;

use super::accounts::{action_form, status_text};
use super::layout::{error_page, flash, page};
use super::time;

/// A blocked account and, when a self-service unblock is refused, why.
struct Blocked {
    state: AccountState,
    no_self_service: Option<String>,
}

/// The Mail abuse page's content.
fn abuse_body(blocked: &[Blocked], who: &Principal, flashed: Option<(bool, String)>) -> Markup {
    html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        @if blocked.is_empty() {
            div class="ok" id="status" { "No account is blocked." }
        } @else {
            div class="alert" id="status" {
                (blocked.len()) " account" (if blocked.len() == 1 { " is" } else { "s are" }) " blocked."
            }
            table id="blocked" {
                thead {
                    tr {
                        th { "Account" } th { "Restriction" } th { "Tier" } th { "Block date" }
                        th { "Reason" } th { "Unblock" }
                    }
                }
                tbody {
                    @for b in blocked {
                        @let s = &b.state;
                        tr {
                            td { (s.account) }
                            td { (status_text(s.status)) }
                            td { (s.tier.as_deref().unwrap_or_default()) }
                            td { (time(&s.since)) }
                            td { (s.reason.as_deref().unwrap_or_default()) }
                            td {
                                @if who.can_act() {
                                    (action_form(&s.account, "unblock", "Unblock", "/abuse", "customer request"))
                                }
                                @if let Some(why) = &b.no_self_service {
                                    div class="muted" { "Self-service unblock not possible: " (why) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) async fn abuse_page(
    state: &AppState,
    who: &Principal,
    flashed: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    let blocked = match state.store.blocked_accounts(1000).await {
        Ok(b) => b,
        Err(e) => return error_page(who, e.into()),
    };
    let mut rows = Vec::with_capacity(blocked.len());
    for s in blocked {
        let no_self_service = match api::self_service_check(state, &s.account).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why.to_string()),
            Err(e) => return error_page(who, e),
        };
        rows.push(Blocked {
            state: s,
            no_self_service,
        });
    }
    page(
        status,
        "Mail abuse",
        Some(who),
        abuse_body(&rows, who, flashed),
    )
}

pub async fn abuse(State(state): State<AppState>, who: Principal) -> Response {
    abuse_page(&state, &who, None, StatusCode::OK).await
}
