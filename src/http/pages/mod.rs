//! Server-rendered pages: login, Mail history, report (with the classifier
//! form), Mail abuse, Accounts and the score chart. Plain HTML forms, no
//! script. Every page is a `maud` template inside the one layout, so every
//! value from a message or a user is escaped by the engine; nothing here
//! builds HTML by hand. This file is the glue the routes name.

mod abuse;
mod accounts;
mod chart;
mod layout;
mod login;
mod reports;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use crate::http::auth::session_in;
use crate::http::AppState;

pub use abuse::abuse;
pub use accounts::{account_action, accounts};
pub use chart::{chart, chart_svg_image as chart_svg};
pub use login::{login, login_form, logout};
pub use reports::{history, learn, report};

/// `/` is Mail history.
pub async fn home() -> Redirect {
    Redirect::to("/history")
}

/// A POST that does not show it comes from these pages is refused: its
/// `Origin` (else its `Referer`) must name this host. A missing or `null`
/// origin (sandboxed frames, privacy redirects) is refused too.
fn cross_site(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = origin.filter(|o| *o != "null") else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    host.is_empty() || origin_host != host
}

/// The outcome of the session's last form post, taken (shown once) by the
/// page it was redirected to.
pub struct Flashed(pub Option<(bool, String)>);

impl FromRequestParts<AppState> for Flashed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Flashed(
            session_in(&parts.headers).and_then(|id| state.sessions.take_flash(&id)),
        ))
    }
}

/// Post-redirect-get: keep a form's outcome for the session and answer
/// `303 See Other` to `to`, so reloading the page shows it and never posts
/// the form again.
fn done(state: &AppState, headers: &HeaderMap, to: &str, good: bool, text: String) -> Response {
    if let Some(id) = session_in(headers) {
        state.sessions.set_flash(&id, good, text);
    }
    Redirect::to(to).into_response()
}

/// A time as every page shows it.
fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::envelope::Envelope;
    use crate::http::api::{Detail, ListQuery, Listed};
    use crate::http::auth::Principal;
    use crate::http::Role;
    use crate::scoring::{ScanReport, SymbolResult};
    use crate::store::{ReportId, ReportRecord, ReportSummary};

    use super::layout::layout;
    use super::reports::{history_body, report_body};

    const HOSTILE: &str = "<script>alert(1)</script>\"&'";
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;'";

    fn abuse() -> Principal {
        Principal {
            user: HOSTILE.into(),
            role: Role::Abuse,
        }
    }

    fn assert_escaped(html: &str, at_least: usize) {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("\"&'"), "{html}");
        let found = html.matches(ESCAPED).count();
        assert!(
            found >= at_least,
            "{found} escaped copies, want {at_least}: {html}"
        );
    }

    #[test]
    fn history_escapes_subject_account_and_filters() {
        let listed = Listed {
            reports: vec![ReportSummary {
                id: ReportId::random(),
                created_at: Utc::now(),
                account: Some(HOSTILE.into()),
                client_ip: None,
                mail_from: HOSTILE.into(),
                rcpt_count: 1,
                queue_id: None,
                subject: Some(HOSTILE.into()),
                message_id: None,
                score: 12.5,
                tier: Some(HOSTILE.into()),
                action: "reject".into(),
            }],
            next: None,
        };
        let q = ListQuery {
            subject: Some(HOSTILE.into()),
            ..ListQuery::default()
        };
        let html = layout(
            "Mail history",
            Some(&abuse()),
            history_body(&q, &listed, Some(15.0), Some((false, HOSTILE.into()))),
        )
        .into_string();
        // The flash, the filter value, account, subject, tier and the user
        // in the nav.
        assert_escaped(&html, 6);
        assert!(html.contains("<tr class=\"refused\">"), "{html}");
    }

    #[test]
    fn report_escapes_message_and_envelope() {
        let mut envelope = Envelope::default();
        envelope.client.hostname = HOSTILE.into();
        envelope.mail_from = HOSTILE.into();
        envelope.rcpts = vec![HOSTILE.into()];
        let mut report = ScanReport::default();
        report.message.subject = Some(HOSTILE.into());
        report.symbols.push(SymbolResult {
            name: HOSTILE.into(),
            group: HOSTILE.into(),
            weight: 1.0,
            factor: 1.0,
            score: 1.0,
            evidence: vec![format!("keyword \"alert\" in subject as {HOSTILE}")],
        });
        let detail = Detail {
            record: ReportRecord {
                id: ReportId::random(),
                created_at: Utc::now(),
                account: Some(HOSTILE.into()),
                envelope,
                report,
                tier: None,
                action: "reject".into(),
                content_size: 0,
            },
            raw: Some(format!("Subject: {HOSTILE}\r\n\r\n{HOSTILE}\r\n").into_bytes()),
        };
        let html = report_body(&detail, &abuse(), maud::html! {}).into_string();
        // Account, symbol, group, client, MAIL FROM, RCPT TO, subject and
        // the raw message (twice) at least.
        assert_escaped(&html, 8);
        assert!(html.contains("<mark>alert</mark>"), "{html}");
    }
}
