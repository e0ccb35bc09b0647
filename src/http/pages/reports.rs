//! Mail history (filtered list of scored messages), one message's score
//! report, and its "Teach the classifier" form and answer.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};

use crate::store::{ReportId, ReportSummary};

use crate::http::api::{self, Detail, ListQuery, Listed};
use crate::http::auth::Principal;
use crate::http::learn::{self, LearnBody, Refusal};
use crate::http::text::{evidence_terms, highlight, readable, url_enc};
use crate::http::{ApiError, AppState};

use super::layout::{cross_site_refused, error_page, flash, page};
use super::{cross_site, time};

fn input(name: &str, label: &str, value: &Option<String>) -> Markup {
    html! {
        label { (label) " " input name=(name) value=(value.as_deref().unwrap_or_default()); } " "
    }
}

/// The query string of the next page of the same filter.
fn history_query(q: &ListQuery, after: &str) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("account", &q.account),
        ("since", &q.since),
        ("until", &q.until),
        ("tier", &q.tier),
        ("action", &q.action),
        ("min_score", &q.min_score),
        ("max_score", &q.max_score),
        ("recipient", &q.recipient),
        ("subject", &q.subject),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_enc(v)));
        }
    }
    parts.push(format!("after={}", url_enc(after)));
    parts.join("&")
}

fn report_row(r: &ReportSummary) -> Markup {
    let subject = r.subject.as_deref().filter(|s| !s.is_empty());
    html! {
        tr class=[(r.action != "accept").then_some("refused")] {
            td { (time(&r.created_at)) }
            td { (r.account.as_deref().unwrap_or_default()) }
            td {
                a href={ "/reports/" (r.id.as_str()) } {
                    (subject.unwrap_or("(no subject)"))
                }
            }
            td class="score" { (format!("{:.2}", r.score)) }
            td { (r.tier.as_deref().unwrap_or_default()) }
            td { (r.action) }
            td { (r.rcpt_count) }
        }
    }
}

/// The Mail history page's content: the filter form, the list and the
/// link to older messages.
pub(super) fn history_body(q: &ListQuery, listed: &Listed) -> Markup {
    html! {
        form class="filters" method="get" action="/history" {
            p {
                (input("account", "Account", &q.account))
                (input("subject", "Subject", &q.subject))
                (input("recipient", "Recipient", &q.recipient))
                (input("tier", "Tier", &q.tier))
                (input("action", "Action", &q.action))
                (input("min_score", "Score ≥", &q.min_score))
                (input("max_score", "Score ≤", &q.max_score))
                (input("since", "Since (RFC 3339)", &q.since))
                (input("until", "Until", &q.until))
                button type="submit" { "Filter" } " "
                a href="/history" { "clear" }
            }
        }
        @if listed.reports.is_empty() {
            p { "No messages match." }
        } @else {
            table id="history" {
                thead {
                    tr {
                        th { "Time" } th { "Account" } th { "Subject" } th { "Spam Score" }
                        th { "Tier" } th { "Action" } th { "Rcpts" }
                    }
                }
                tbody {
                    @for r in &listed.reports { (report_row(r)) }
                }
            }
        }
        @if let Some(next) = &listed.next {
            p { a href={ "/history?" (history_query(q, next)) } { "Older messages →" } }
        }
    }
}

pub async fn history(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    match api::fetch_list(&state, &q).await {
        Ok(listed) => page(
            StatusCode::OK,
            "Mail history",
            Some(&who),
            history_body(&q, &listed),
        ),
        Err(e) => error_page(&who, e),
    }
}

/// The report page's content; `learn` is the classifier section (empty
/// when there is none to show).
pub(super) fn report_body(detail: &Detail, who: &Principal, learn: Markup) -> Markup {
    let r = &detail.record;
    let env = &r.envelope;
    let m = &r.report.message;
    // Evidence lines with the keywords they name, which are marked in
    // the message too.
    let evidence: Vec<Vec<(&str, Vec<String>)>> = r
        .report
        .symbols
        .iter()
        .map(|s| {
            s.evidence
                .iter()
                .map(|e| (e.as_str(), evidence_terms(e)))
                .collect()
        })
        .collect();
    let terms: Vec<String> = evidence
        .iter()
        .flatten()
        .flat_map(|(_, t)| t.iter().cloned())
        .collect();
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    html! {
        table class="kv" {
            tr { th { "Spam Score" } td class="score" { (format!("{:.2}", r.report.score)) } }
            tr { th { "Tier" } td { (opt(&r.tier)) } }
            tr { th { "Action" } td { (r.action) } }
            @if r.report.observed {
                tr {
                    th { "Mode" }
                    td id="observed" {
                        "observe: nothing was refused and the account was not changed; "
                        @if r.report.reply.is_some() {
                            "enforcing would have refused it"
                        } @else {
                            "enforcing would have accepted it too"
                        }
                    }
                }
            }
            @if let Some(refusal) = &r.report.refusal {
                tr { th { "Refused by policy" } td id="refusal" { (refusal.replace('_', " ")) } }
            }
            @if let Some(reply) = &r.report.reply {
                tr {
                    th { @if r.report.observed { "Reply it would have had" } @else { "Reply" } }
                    td id="reply" { code { (reply) } }
                }
            }
            @if let Some(skipped) = &r.report.skipped {
                tr {
                    th { "Scan" }
                    td id="scan-skipped" {
                        "skipped (" (skipped.cause) "): " (skipped.detail)
                        " — no rule ran; the fail-safe verdict applied"
                    }
                }
            }
            tr { th { "Time" } td { (time(&r.created_at)) } }
            tr { th { "Account" } td { (opt(&r.account)) } }
            tr { th { "Report id" } td { (r.id.as_str()) } }
        }
        h2 { "Symbols" }
        table id="symbols" {
            thead {
                tr { th { "Symbol" } th { "Group" } th { "Weight" } th { "Score" } th { "Evidence" } }
            }
            tbody {
                @for (s, lines) in r.report.symbols.iter().zip(&evidence) {
                    tr {
                        td { code { (s.name) } }
                        td { (s.group) }
                        td { (format!("{:.2}", s.weight)) }
                        td class="score" { (format!("{:.2}", s.score)) }
                        td {
                            @for (line, t) in lines { div { (highlight(line, t)) } }
                        }
                    }
                }
            }
        }
        p { "Scan took " (r.report.timings.total_us) " µs." }
        h2 { "Message" }
        @match &detail.raw {
            Some(raw) => {
                pre id="content" { (highlight(&readable(raw), &terms)) }
                details {
                    summary { "Raw message (" (raw.len()) " bytes)" }
                    pre { (String::from_utf8_lossy(raw)) }
                }
            }
            None => {
                @if who.can_act() {
                    p class="muted" { "The content was not kept." }
                } @else {
                    p class="muted" { "Message content is hidden for the viewer role." }
                }
            }
        }
        (learn)
        h2 { "Envelope" }
        table class="kv" {
            tr {
                th { "Client" }
                td {
                    (env.client.hostname) " ["
                    (env.client.addr.map(|a| a.to_string()).unwrap_or_default()) "]"
                }
            }
            tr { th { "HELO" } td { (opt(&env.client.helo)) } }
            tr { th { "Login" } td { (opt(&env.auth_login)) } }
            tr { th { "MAIL FROM" } td { (env.mail_from) } }
            tr { th { "RCPT TO" } td { (env.rcpts.join(", ")) } }
            tr { th { "Queue id" } td { (opt(&env.queue_id)) } }
        }
        h2 { "Headers" }
        table class="kv" {
            tr { th { "From" } td { (opt(&m.from)) } }
            tr { th { "To" } td { (m.to.join(", ")) } }
            tr { th { "Subject" } td { (opt(&m.subject)) } }
            tr { th { "Message-ID" } td { (opt(&m.message_id)) } }
            tr { th { "Date" } td { (opt(&m.date)) } }
        }
        @if let Some(account) = &r.account {
            p {
                a href={ "/history?account=" (url_enc(account)) } {
                    "Other messages of this account"
                }
            }
        }
    }
}

pub async fn report(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Response {
    let detail = match api::fetch_detail(&state, &who, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(&who, e),
    };
    let learn = learn_section(&state, &who, &detail.record.id).await;
    page(
        StatusCode::OK,
        "Score report",
        Some(&who),
        report_body(&detail, &who, learn),
    )
}

/// The report page's classifier section: what was learned from this
/// report, and for the abuse role the "Mark as spam" / "Mark as ham" form.
async fn learn_section(state: &AppState, who: &Principal, id: &ReportId) -> Markup {
    let Some(learner) = state.learner.as_ref().filter(|_| who.can_act()) else {
        return html! {};
    };
    let learned = learner.learned(id).await;
    if let Err(e) = &learned {
        tracing::warn!(error = %e, "report page: cannot read the learned verdict");
    }
    html! {
        h2 { "Teach the classifier" }
        @match learned {
            Ok(Some(l)) => p id="learned" {
                "Learned as " strong { (l.verdict) } " by " (l.actor) " on "
                (l.at.format("%Y-%m-%d %H:%M:%S UTC")) " (" (l.reason) ")."
            },
            Ok(None) => p id="learned" class="muted" { "Not learned yet." },
            Err(_) => {},
        }
        form method="post" action={ "/reports/" (id.as_str()) "/learn" } id="learn" {
            label { "Reason " input name="reason" required aria-label="reason"; } " "
            button type="submit" name="verdict" value="spam" { "Mark as spam" } " "
            button type="submit" name="verdict" value="ham" { "Mark as ham" }
        }
    }
}

/// `POST /reports/{id}/learn` from the report page's form.
pub async fn learn(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<LearnBody>,
) -> Response {
    if cross_site(&headers) {
        return cross_site_refused("Refused", Some(&who));
    }
    let (status, good, text) = match learn::learn(&state, &who, &id, &body).await {
        Ok(l) => (StatusCode::OK, true, learn::learned_text(&l)),
        Err(Refusal::Api(ApiError::Refused { message, .. })) => (
            StatusCode::CONFLICT,
            false,
            format!("Not learned: {message}."),
        ),
        Err(Refusal::Api(ApiError::BadRequest(m))) => {
            (StatusCode::BAD_REQUEST, false, format!("Not learned: {m}."))
        }
        Err(Refusal::Api(e)) => return error_page(&who, e),
        Err(Refusal::Internal(m)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            false,
            format!("Not learned: {m}."),
        ),
    };
    let body = html! {
        (flash(good, &text))
        p { a href={ "/reports/" (id) } { "Back to the report" } }
    };
    page(status, "Teach the classifier", Some(&who), body)
}
