//! Server-rendered pages: login, Mail history, report (with the classifier
//! form from `learn`), Mail abuse, Accounts and the score chart. Plain HTML forms, no script; every value that comes
//! from a message or a user is escaped.

use std::fmt::Write;

use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::store::{AccountState, AccountStatus, AccountStore, ReportSummary};

use super::api::{self, ActionBody, ListQuery};
use super::auth::{self, Principal, SESSION_COOKIE};
use super::text::{esc, evidence_terms, highlight, readable, url_enc};
use super::throttle;
use super::{db, ApiError, AppState};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
nav{background:#263238;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
nav form{display:inline;float:right}nav span{color:#cfd8dc;margin-right:1em;float:right}\
main{padding:1em 1.5em}table{border-collapse:collapse;width:100%}table.kv{width:auto;min-width:40%}\
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#eceff1}tr.refused td{background:#fff3f3}.score{font-weight:bold;text-align:right}\
.ok{background:#e8f5e9;border:2px solid #2e7d32;color:#1b5e20;padding:1em;margin:1em 0}\
.alert{background:#ffebee;border:2px solid #c62828;color:#b71c1c;padding:1em;margin:1em 0}\
.flash{padding:.7em;margin:1em 0;border:1px solid #999}\
.flash.bad{background:#ffebee;border-color:#c62828}.flash.good{background:#e8f5e9;border-color:#2e7d32}\
mark{background:#ffeb3b;font-weight:bold}pre{white-space:pre-wrap;background:#fafafa;padding:.7em;border:1px solid #ddd}\
form.filters input,form.filters select{width:9em}.muted{color:#777}";

fn layout(title: &str, who: Option<&Principal>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(who) = who {
        let _ = write!(
            nav,
            "<nav><a href=\"/history\">Mail history</a><a href=\"/abuse\">Mail abuse</a>\
             <a href=\"/accounts\">Accounts</a><a href=\"/chart\">Chart</a>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>\
             <span>{} ({})</span></nav>",
            esc(&who.user),
            who.role
        );
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{} · outscore</title><style>{STYLE}</style></head><body>{nav}<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

pub(super) fn page(
    status: StatusCode,
    title: &str,
    who: Option<&Principal>,
    body: &str,
) -> Response {
    (status, Html(layout(title, who, body))).into_response()
}

/// An API refusal as a page.
pub(super) fn error_page(who: &Principal, e: ApiError) -> Response {
    let status = e.into_response().status();
    let text = match status {
        StatusCode::GONE => {
            "This message is past retention: its content and report are no longer kept."
        }
        StatusCode::NOT_FOUND => "No such report or account.",
        StatusCode::FORBIDDEN => {
            "Your role (viewer) cannot see message content or act on accounts."
        }
        StatusCode::BAD_REQUEST => "The request was not understood.",
        _ => "The store is unavailable; try again shortly.",
    };
    page(
        status,
        status.canonical_reason().unwrap_or("Error"),
        Some(who),
        &format!("<p>{}</p>", esc(text)),
    )
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_default()
}

/// A POST from another site (by its `Origin`) is refused.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    origin != "null" && origin_host != host
}

pub async fn home() -> Redirect {
    Redirect::to("/history")
}

fn login_body(error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"flash bad\" id=\"flash\">{}</p>",
            esc(error)
        );
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\"><p><label>User <input name=\"user\" autocomplete=\"username\" required></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Log in</button></p></form>\
         <p class=\"muted\">No credential yet? On the server run <code>outscore user add NAME --role abuse</code>.</p>",
    );
    body
}

pub async fn login_form() -> Response {
    page(StatusCode::OK, "Log in", None, &login_body(None))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub user: String,
    pub password: String,
}

pub async fn login(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let ip = state.throttle.client_ip(req.headers(), req.extensions());
    let headers = req.headers().clone();
    let f = match Form::<LoginForm>::from_request(req, &state).await {
        Ok(Form(f)) => f,
        Err(e) => return e.into_response(),
    };
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Log in",
            None,
            "<p>Cross-site request refused.</p>",
        );
    }
    let user = f.user.trim();
    if let Some(wait) = state.throttle.blocked(ip, user) {
        crate::telemetry::HTTP_AUTH_FAILURES.incr();
        tracing::warn!(client = %super::throttle::show(ip), user = %auth::printable(user), "review login refused: too many failed logins");
        let text = format!(
            "Too many failed logins from your address or for this user. Wait {} and try again.",
            throttle::plain_wait(wait)
        );
        let mut res = page(
            StatusCode::TOO_MANY_REQUESTS,
            "Log in",
            None,
            &login_body(Some(&text)),
        );
        if let Ok(v) = throttle::retry_after_secs(wait).to_string().parse() {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let Some(who) = auth::check_password(&state, user, f.password.trim()).await else {
        state.throttle.failure(ip, user);
        crate::telemetry::HTTP_AUTH_FAILURES.incr();
        tracing::warn!(client = %super::throttle::show(ip), user = %auth::printable(user), "review login refused");
        return page(
            StatusCode::UNAUTHORIZED,
            "Log in",
            None,
            &login_body(Some("Wrong user name or password.")),
        );
    };
    tracing::info!(user = %who.user, role = %who.role, "review login");
    let id = state.sessions.create(who, state.session_ttl);
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        state.session_ttl.as_secs(),
        if state.secure_cookie { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/history")).into_response()
}

pub async fn logout(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(id) = auth::session_cookie(&parts) {
        state.sessions.remove(&id);
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn input(name: &str, label: &str, value: &Option<String>) -> String {
    format!(
        "<label>{} <input name=\"{}\" value=\"{}\"></label> ",
        esc(label),
        esc(name),
        opt(value)
    )
}

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

fn report_row(r: &ReportSummary) -> String {
    let class = if r.action == "accept" {
        ""
    } else {
        " class=\"refused\""
    };
    format!(
        "<tr{class}><td>{}</td><td>{}</td><td><a href=\"/reports/{}\">{}</a></td><td class=\"score\">{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        time(&r.created_at),
        opt(&r.account),
        esc(r.id.as_str()),
        r.subject.as_deref().filter(|s| !s.is_empty()).map(esc).unwrap_or_else(|| "(no subject)".into()),
        r.score,
        opt(&r.tier),
        esc(&r.action),
        r.rcpt_count,
    )
}

pub async fn history(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = match api::fetch_list(&state, &q).await {
        Ok(l) => l,
        Err(e) => return error_page(&who, e),
    };
    let mut body = String::from("<form class=\"filters\" method=\"get\" action=\"/history\"><p>");
    body.push_str(&input("account", "Account", &q.account));
    body.push_str(&input("subject", "Subject", &q.subject));
    body.push_str(&input("recipient", "Recipient", &q.recipient));
    body.push_str(&input("tier", "Tier", &q.tier));
    body.push_str(&input("action", "Action", &q.action));
    body.push_str(&input("min_score", "Score ≥", &q.min_score));
    body.push_str(&input("max_score", "Score ≤", &q.max_score));
    body.push_str(&input("since", "Since (RFC 3339)", &q.since));
    body.push_str(&input("until", "Until", &q.until));
    body.push_str(
        "<button type=\"submit\">Filter</button> <a href=\"/history\">clear</a></p></form>",
    );
    if listed.reports.is_empty() {
        body.push_str("<p>No messages match.</p>");
    } else {
        body.push_str(
            "<table id=\"history\"><thead><tr><th>Time</th><th>Account</th><th>Subject</th><th>Spam Score</th><th>Tier</th><th>Action</th><th>Rcpts</th></tr></thead><tbody>",
        );
        for r in &listed.reports {
            body.push_str(&report_row(r));
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = &listed.next {
        let _ = write!(
            body,
            "<p><a href=\"/history?{}\">Older messages →</a></p>",
            esc(&history_query(&q, next))
        );
    }
    page(StatusCode::OK, "Mail history", Some(&who), &body)
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
    let r = &detail.record;
    let env = &r.envelope;
    let mut body = String::new();
    let _ = write!(
        body,
        "<table class=\"kv\"><tr><th>Spam Score</th><td class=\"score\">{:.2}</td></tr>\
         <tr><th>Tier</th><td>{}</td></tr><tr><th>Action</th><td>{}</td></tr>\
         <tr><th>Time</th><td>{}</td></tr><tr><th>Account</th><td>{}</td></tr>\
         <tr><th>Report id</th><td>{}</td></tr></table>",
        r.report.score,
        opt(&r.tier),
        esc(&r.action),
        time(&r.created_at),
        opt(&r.account),
        esc(r.id.as_str()),
    );
    let mut terms: Vec<String> = Vec::new();
    body.push_str(
        "<h2>Symbols</h2><table id=\"symbols\"><thead><tr><th>Symbol</th><th>Group</th><th>Weight</th><th>Score</th><th>Evidence</th></tr></thead><tbody>",
    );
    for s in &r.report.symbols {
        let mut ev = String::new();
        for e in &s.evidence {
            let t = evidence_terms(e);
            let _ = write!(ev, "<div>{}</div>", highlight(e, &t));
            terms.extend(t);
        }
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td>{:.2}</td><td class=\"score\">{:.2}</td><td>{ev}</td></tr>",
            esc(&s.name),
            esc(&s.group),
            s.weight,
            s.score
        );
    }
    let _ = write!(
        body,
        "</tbody></table><p>Scan took {} µs.</p>",
        r.report.timings.total_us
    );
    match &detail.raw {
        Some(raw) => {
            let text = readable(raw);
            let _ = write!(
                body,
                "<h2>Message</h2><pre id=\"content\">{}</pre><details><summary>Raw message ({} bytes)</summary><pre>{}</pre></details>",
                highlight(&text, &terms),
                raw.len(),
                esc(&String::from_utf8_lossy(raw))
            );
        }
        None if who.can_act() => {
            body.push_str("<h2>Message</h2><p class=\"muted\">The content was not kept.</p>")
        }
        None => body.push_str(
            "<h2>Message</h2><p class=\"muted\">Message content is hidden for the viewer role.</p>",
        ),
    }
    body.push_str(&super::learn::report_section(&state, &who, &r.id).await);
    let _ = write!(
        body,
        "<h2>Envelope</h2><table class=\"kv\"><tr><th>Client</th><td>{} [{}]</td></tr><tr><th>HELO</th><td>{}</td></tr>\
         <tr><th>Login</th><td>{}</td></tr><tr><th>MAIL FROM</th><td>{}</td></tr><tr><th>RCPT TO</th><td>{}</td></tr>\
         <tr><th>Queue id</th><td>{}</td></tr></table>",
        esc(&env.client.hostname),
        env.client.addr.map(|a| a.to_string()).unwrap_or_default(),
        opt(&env.client.helo),
        opt(&env.auth_login),
        esc(&env.mail_from),
        esc(&env.rcpts.join(", ")),
        opt(&env.queue_id),
    );
    let m = &r.report.message;
    let _ = write!(
        body,
        "<h2>Headers</h2><table class=\"kv\"><tr><th>From</th><td>{}</td></tr><tr><th>To</th><td>{}</td></tr>\
         <tr><th>Subject</th><td>{}</td></tr><tr><th>Message-ID</th><td>{}</td></tr><tr><th>Date</th><td>{}</td></tr></table>",
        opt(&m.from),
        esc(&m.to.join(", ")),
        opt(&m.subject),
        opt(&m.message_id),
        opt(&m.date),
    );
    if let Some(account) = &r.account {
        let _ = write!(
            body,
            "<p><a href=\"/history?account={}\">Other messages of this account</a></p>",
            esc(&url_enc(account))
        );
    }
    page(StatusCode::OK, "Score report", Some(&who), &body)
}

fn status_text(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "none",
        AccountStatus::PasswordResetRequired => "sending blocked: password reset required",
        AccountStatus::Suspended => "SMTP suspended",
    }
}

fn action_form(
    account: &str,
    action: &str,
    label: &str,
    back: &str,
    default_reason: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"/accounts/{}/{}\" class=\"action\"><input type=\"hidden\" name=\"back\" value=\"{}\">\
         <input name=\"reason\" value=\"{}\" required aria-label=\"reason\"> <button type=\"submit\" name=\"do\" value=\"{}\">{}</button></form>",
        esc(&url_enc(account)),
        esc(action),
        esc(back),
        esc(default_reason),
        esc(action),
        esc(label)
    )
}

async fn abuse_page(
    state: &AppState,
    who: &Principal,
    flash: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    let blocked = match state.store.blocked_accounts(1000).await {
        Ok(b) => b,
        Err(e) => return error_page(who, e.into()),
    };
    let mut body = String::new();
    if let Some((good, text)) = flash {
        let _ = write!(
            body,
            "<p class=\"flash {}\" id=\"flash\">{}</p>",
            if good { "good" } else { "bad" },
            esc(&text)
        );
    }
    if blocked.is_empty() {
        body.push_str("<div class=\"ok\" id=\"status\">No account is blocked.</div>");
        return page(status, "Mail abuse", Some(who), &body);
    }
    let _ = write!(
        body,
        "<div class=\"alert\" id=\"status\">{} account{} blocked.</div>\
         <table id=\"blocked\"><thead><tr><th>Account</th><th>Restriction</th><th>Tier</th><th>Block date</th><th>Reason</th><th>Unblock</th></tr></thead><tbody>",
        blocked.len(),
        if blocked.len() == 1 { " is" } else { "s are" }
    );
    for s in &blocked {
        let mut cell = String::new();
        if who.can_act() {
            cell.push_str(&action_form(
                &s.account,
                "unblock",
                "Unblock",
                "/abuse",
                "customer request",
            ));
        }
        match api::self_service_check(state, &s.account).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                let _ = write!(
                    cell,
                    "<div class=\"muted\">Self-service unblock not possible: {}</div>",
                    esc(&why.to_string())
                );
            }
            Err(e) => return error_page(who, e),
        }
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{cell}</td></tr>",
            esc(&s.account),
            status_text(s.status),
            opt(&s.tier),
            time(&s.since),
            opt(&s.reason),
        );
    }
    body.push_str("</tbody></table>");
    page(status, "Mail abuse", Some(who), &body)
}

pub async fn abuse(State(state): State<AppState>, who: Principal) -> Response {
    abuse_page(&state, &who, None, StatusCode::OK).await
}

async fn accounts_page(
    state: &AppState,
    who: &Principal,
    flash: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    let list: Vec<AccountState> = match db::accounts(&state.store, 1000).await {
        Ok(l) => l,
        Err(e) => return error_page(who, e.into()),
    };
    let mut body = String::new();
    if let Some((good, text)) = flash {
        let _ = write!(
            body,
            "<p class=\"flash {}\" id=\"flash\">{}</p>",
            if good { "good" } else { "bad" },
            esc(&text)
        );
    }
    body.push_str("<p class=\"muted\">Accounts that were ever restricted. Accounts not listed are active.</p>");
    body.push_str(
        "<table id=\"accounts\"><thead><tr><th>Account</th><th>Restrictions</th><th>Tier</th><th>Since</th><th>Reason</th><th>Actions</th></tr></thead><tbody>",
    );
    for s in &list {
        let mut actions = String::new();
        if who.can_act() {
            match s.status {
                AccountStatus::Active => actions.push_str(&action_form(
                    &s.account,
                    "suspend",
                    "Suspend",
                    "/accounts",
                    "",
                )),
                AccountStatus::PasswordResetRequired => {
                    actions.push_str(&action_form(
                        &s.account,
                        "password-reset-done",
                        "Password reset done",
                        "/accounts",
                        "password changed",
                    ));
                    actions.push_str(&action_form(&s.account, "lift", "Lift", "/accounts", ""));
                }
                AccountStatus::Suspended => actions.push_str(&action_form(
                    &s.account,
                    "lift",
                    "Lift (abuse team)",
                    "/accounts",
                    "",
                )),
            }
        }
        let _ = write!(
            body,
            "<tr><td><a href=\"/history?account={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
            esc(&url_enc(&s.account)),
            esc(&s.account),
            status_text(s.status),
            opt(&s.tier),
            time(&s.since),
            opt(&s.reason),
        );
    }
    body.push_str("</tbody></table>");
    page(status, "Accounts", Some(who), &body)
}

pub async fn accounts(State(state): State<AppState>, who: Principal) -> Response {
    accounts_page(&state, &who, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub reason: Option<String>,
    pub back: Option<String>,
}

pub async fn account_action(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((account, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            Some(&who),
            "<p>Cross-site request refused.</p>",
        );
    }
    let to_abuse = f.back.as_deref() != Some("/accounts");
    let body = ActionBody {
        reason: f.reason,
        tier: None,
    };
    let (flash, status) = match api::perform(&state, &who, &account, &action, &body).await {
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
        abuse_page(&state, &who, Some(flash), status).await
    } else {
        accounts_page(&state, &who, Some(flash), status).await
    }
}

#[derive(Debug, Deserialize)]
pub struct ChartQuery {
    pub hours: Option<i64>,
}

/// Stacked bars of messages per hour by tier band, with the hour's highest
/// score as a line.
pub fn chart_svg_text(hours: &[api::HourStats]) -> String {
    let (w, h, left, bottom, top) = (900.0f64, 320.0f64, 50.0f64, 40.0f64, 20.0f64);
    let plot_h = h - bottom - top;
    let n = hours.len().max(1) as f64;
    let bar_w = (w - left - 50.0) / n;
    let max_msgs = hours.iter().map(|x| x.messages).max().unwrap_or(0).max(1) as f64;
    let max_score = hours.iter().map(|x| x.max_score).fold(1.0f64, f64::max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Messages per hour by tier, and highest score\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    let _ = write!(
        s,
        "<text x=\"4\" y=\"14\" font-size=\"11\">messages (max {max_msgs})</text>"
    );
    let _ = write!(s, "<text x=\"{}\" y=\"14\" font-size=\"11\" fill=\"#6a1b9a\">max score ({max_score:.1})</text>", w - 140.0);
    let mut line = Vec::new();
    for (i, hr) in hours.iter().enumerate() {
        let x = left + i as f64 * bar_w;
        let low: u64 = hr
            .tiers
            .iter()
            .filter(|(t, _)| matches!(t.as_str(), "L-SPAM00" | "L-SPAM10" | "L-SPAM11"))
            .map(|(_, n)| n)
            .sum();
        let high: u64 = hr.tiers.values().sum::<u64>() - low;
        let clean = hr.messages.saturating_sub(low + high);
        let mut y = h - bottom;
        for (count, colour) in [(clean, "#66bb6a"), (low, "#ffa726"), (high, "#e53935")] {
            if count == 0 {
                continue;
            }
            let bh = count as f64 / max_msgs * plot_h;
            y -= bh;
            let _ = write!(s, "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"/>", x + 1.0, (bar_w - 2.0).max(1.0));
        }
        let sy = h - bottom - hr.max_score.max(0.0) / max_score * plot_h;
        line.push(format!("{:.1},{sy:.1}", x + bar_w / 2.0));
        if i % 3 == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>",
                x,
                h - bottom + 14.0,
                hr.hour.format("%H:00")
            );
        }
    }
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#6a1b9a\" stroke-width=\"2\"/>",
        line.join(" ")
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/>\
         <g font-size=\"11\"><rect x=\"{left}\" y=\"{2}\" width=\"10\" height=\"10\" fill=\"#66bb6a\"/><text x=\"{3}\" y=\"{4}\">no tier</text>\
         <rect x=\"{5}\" y=\"{2}\" width=\"10\" height=\"10\" fill=\"#ffa726\"/><text x=\"{6}\" y=\"{4}\">password-reset tiers</text>\
         <rect x=\"{7}\" y=\"{2}\" width=\"10\" height=\"10\" fill=\"#e53935\"/><text x=\"{8}\" y=\"{4}\">suspension tiers</text></g></svg>",
        h - bottom,
        w - 50.0,
        h - 14.0,
        left + 14.0,
        h - 5.0,
        left + 90.0,
        left + 104.0,
        left + 260.0,
        left + 274.0,
    );
    s
}

async fn hours_for(state: &AppState, q: &ChartQuery) -> Result<Vec<api::HourStats>, ApiError> {
    api::hourly(state, q.hours.unwrap_or(24).clamp(1, 24 * 7)).await
}

pub async fn chart(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ChartQuery>,
) -> Response {
    let hours = match hours_for(&state, &q).await {
        Ok(h) => h,
        Err(e) => return error_page(&who, e),
    };
    let mut body = chart_svg_text(&hours);
    body.push_str("<table><thead><tr><th>Hour</th><th>Messages</th><th>Refused</th><th>Max score</th><th>Tiers</th></tr></thead><tbody>");
    for h in hours.iter().filter(|h| h.messages > 0) {
        let tiers: Vec<String> = h
            .tiers
            .iter()
            .map(|(t, n)| format!("{} × {n}", esc(t)))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
            h.hour.format("%Y-%m-%d %H:00"),
            h.messages,
            h.spam,
            h.max_score,
            tiers.join(", ")
        );
    }
    body.push_str("</tbody></table>");
    page(
        StatusCode::OK,
        "Spam score and tiers, last hours",
        Some(&who),
        &body,
    )
}

pub async fn chart_svg(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ChartQuery>,
) -> Response {
    match hours_for(&state, &q).await {
        Ok(h) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            chart_svg_text(&h),
        )
            .into_response(),
        Err(e) => error_page(&who, e),
    }
}
