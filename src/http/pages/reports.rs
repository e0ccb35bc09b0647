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
use super::{cross_site, done, time, Flashed};

fn input(name: &str, label: &str, value: &Option<String>) -> Markup {
    html! {
        label { (label) " " input name=(name) value=(value.as_deref().unwrap_or_default()); } " "
    }
}

/// The query string of the same filter, with `extra` pairs (the next
/// page's cursor, another order).
pub(super) fn history_query(q: &ListQuery, extra: &[(&str, &str)]) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("account", &q.account),
        ("exact", &q.exact),
        ("since", &q.since),
        ("until", &q.until),
        ("tier", &q.tier),
        ("action", &q.action),
        ("min_score", &q.min_score),
        ("max_score", &q.max_score),
        ("recipient", &q.recipient),
        ("subject", &q.subject),
        ("sort", &q.sort),
    ] {
        if extra.iter().any(|(e, _)| *e == k) {
            continue;
        }
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_enc(v)));
        }
    }
    for (k, v) in extra {
        parts.push(format!("{k}={}", url_enc(v)));
    }
    parts.join("&")
}

/// Mail history of exactly this account.
pub(super) fn account_history(account: &str) -> String {
    format!("/history?account={}&exact=1", url_enc(account))
}

fn report_row(r: &ReportSummary) -> Markup {
    let subject = r.subject.as_deref().filter(|s| !s.is_empty());
    let href = format!("/reports/{}", r.id.as_str());
    html! {
        tr class=[(r.action != "accept").then_some("refused")] {
            td class="nowrap" { (time(&r.created_at)) }
            td {
                @if let Some(account) = &r.account {
                    a href=(account_history(account)) { (account) }
                }
            }
            td { a href=(href) { (subject.unwrap_or("(no subject)")) } }
            td class="score" { a href=(href) title="open the score report" { (format!("{:.2}", r.score)) } }
            td class="nowrap" { (r.tier.as_deref().unwrap_or_default()) }
            td { (r.action) }
            td { (r.rcpt_count) }
        }
    }
}

/// The row drawn where the score order crosses the reject score.
fn reject_line(reject: f64) -> Markup {
    html! {
        tr class="reject-line" {
            td colspan="7" { "▲ refused at ≥ " (format!("{reject:.2}")) " ▼ below the reject score" }
        }
    }
}

/// The Mail history page's content: the filter form, the list and the
/// link to older messages. `reject` is the reject score in force.
pub(super) fn history_body(
    q: &ListQuery,
    listed: &Listed,
    reject: Option<f64>,
    flashed: Option<(bool, String)>,
) -> Markup {
    let by_score = q.by_score().unwrap_or(false);
    // In the score order, the line goes before the first row below it.
    let line_before = reject.filter(|_| by_score).map(|reject| {
        listed
            .reports
            .iter()
            .position(|r| r.score < reject)
            .unwrap_or(listed.reports.len())
    });
    html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        form class="filters" method="get" action="/history" {
            p {
                (input("account", "Account (or part)", &q.account))
                label title="the whole account name, not a part" {
                    input type="checkbox" name="exact" value="1" checked[q.exact()] class="check";
                    " exact"
                } " "
                (input("subject", "Subject", &q.subject))
                (input("recipient", "Recipient", &q.recipient))
                (input("tier", "Tier", &q.tier))
                (input("action", "Action", &q.action))
            }
            p {
                (input("min_score", "Score ≥", &q.min_score))
                (input("max_score", "Score ≤", &q.max_score))
                label title="a date (2026-12-01) or a UTC time (2026-12-01 14:30)" {
                    "Since " input name="since" placeholder="2026-12-01" value=(q.since.as_deref().unwrap_or_default());
                } " "
                label title="a date (included whole) or a UTC time (excluded)" {
                    "Until " input name="until" placeholder="2026-12-01 18:00" value=(q.until.as_deref().unwrap_or_default());
                } " "
                label {
                    "Order "
                    select name="sort" {
                        option value="time" selected[!by_score] { "newest first" }
                        option value="score" selected[by_score] { "highest score first" }
                    }
                } " "
                button type="submit" { "Filter" } " "
                a href="/history" { "clear" }
            }
        }
        @if listed.reports.is_empty() {
            p { "No messages match." }
        } @else {
            table id="history" {
                @if let Some(reject) = reject {
                    caption id="reject-line" {
                        "Refused at ≥ " strong { (format!("{reject:.2}")) }
                        " (the reject score in force at default sensitivity; an account or domain set to high or low sensitivity has its own line). Refused messages are tinted."
                    }
                }
                thead {
                    tr {
                        th { "Time" } th { "Account" } th { "Subject" }
                        th {
                            @if by_score {
                                a href={ "/history?" (history_query(q, &[("sort", "time")])) } title="newest first" { "Spam Score ▼" }
                            } @else {
                                a href={ "/history?" (history_query(q, &[("sort", "score")])) } title="highest score first" { "Spam Score" }
                            }
                        }
                        th { "Tier" } th { "Action" } th { "Rcpts" }
                    }
                }
                tbody {
                    @for (i, r) in listed.reports.iter().enumerate() {
                        @if line_before == Some(i) && i > 0 { (reject_line(reject.unwrap_or_default())) }
                        (report_row(r))
                    }
                }
            }
        }
        @if by_score && !listed.reports.is_empty() {
            p class="muted" id="score-order-note" {
                "Highest scores first: the top " (listed.reports.len()) " matching messages on one page"
                " (at most " (api::MAX_BY_SCORE) "; this order has no next page). Narrow the account, dates or score to see others."
            }
        }
        @if let Some(next) = &listed.next {
            p { a href={ "/history?" (history_query(q, &[("after", next)])) } { "Older messages →" } }
        }
    }
}

pub async fn history(
    State(state): State<AppState>,
    who: Principal,
    Flashed(flashed): Flashed,
    Query(q): Query<ListQuery>,
) -> Response {
    let reject = state.reject_score.as_ref().map(|f| f());
    match api::fetch_list(&state, &q).await {
        Ok(listed) => page(
            StatusCode::OK,
            "Mail history",
            Some(&who),
            history_body(&q, &listed, reject, flashed),
        ),
        Err(ApiError::BadRequest(m)) => page(
            StatusCode::BAD_REQUEST,
            "Mail history",
            Some(&who),
            history_body(
                &q,
                &Listed {
                    reports: Vec::new(),
                    next: None,
                },
                reject,
                Some((false, m)),
            ),
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
                a href=(account_history(account)) {
                    "Other messages of this account"
                }
            }
        }
    }
}

pub async fn report(
    State(state): State<AppState>,
    who: Principal,
    Flashed(flashed): Flashed,
    Path(id): Path<String>,
) -> Response {
    let detail = match api::fetch_detail(&state, &who, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(&who, e),
    };
    let learn = learn_section(&state, &who, &detail.record.id).await;
    let body = html! {
        @if let Some((good, text)) = &flashed { (flash(*good, text)) }
        (report_body(&detail, &who, learn))
    };
    page(StatusCode::OK, "Score report", Some(&who), body)
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

/// `POST /reports/{id}/learn` from the report page's form: learn, then
/// back to the report (303) with the outcome.
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
    let (good, text) = match learn::learn(&state, &who, &id, &body).await {
        Ok(l) => (true, learn::learned_text(&l)),
        Err(Refusal::Api(ApiError::Refused { message, .. })) => {
            (false, format!("Not learned: {message}."))
        }
        Err(Refusal::Api(ApiError::BadRequest(m))) => (false, format!("Not learned: {m}.")),
        Err(Refusal::Api(e)) => return error_page(&who, e),
        Err(Refusal::Internal(m)) => (false, format!("Not learned: {m}.")),
    };
    let to = match id.parse::<ReportId>() {
        Ok(id) => format!("/reports/{}", id.as_str()),
        Err(_) => "/history".to_string(),
    };
    done(&state, &headers, &to, good, text)
}
