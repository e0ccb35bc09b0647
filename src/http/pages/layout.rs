//! The frame every page shares: the one layout (head, style, navigation),
//! the flash message, the error page, and the page as a response. Knows no
//! page's content.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::http::auth::Principal;
use crate::http::ApiError;

/// The one style sheet (a constant: the only markup not built by `html!`).
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
form.filters input{width:9em}form.filters select{width:auto}.nowrap{white-space:nowrap}form.filters input.check{width:auto}.muted{color:#777}\
.warn{background:#fff8e1;border:2px solid #f9a825;color:#6d4c00;padding:1em;margin:1em 0}\
caption{caption-side:top;text-align:left;padding:.4em 0;color:#444}\
tr.reject-line td{background:#c62828;color:#fff;font-size:.85em;padding:.1em .5em;text-align:center}\
td.score a{color:inherit}td.num{text-align:right}a.report-id{font-family:monospace}\
form.action{display:inline-block;margin:0 .4em .3em 0}form.action input[name=reason]{width:11em}\
button[disabled]{color:#999;cursor:not-allowed}.why{color:#8d4b00;font-size:.9em;margin-top:.2em}\
td.limit,div.limit{color:#8d4b00}#accounts form.action input[name=reason]{width:8em}h2{font-size:1.2em;margin-top:1.4em}";

/// A whole page: `title` as heading, the navigation for a logged-in `who`.
pub fn layout(title: &str, who: Option<&Principal>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · outscore" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                @if let Some(who) = who {
                    nav {
                        a href="/history" { "Mail history" }
                        a href="/abuse" { "Mail abuse" }
                        a href="/accounts" { "Accounts" }
                        a href="/chart" { "Chart" }
                        form method="post" action="/logout" {
                            button type="submit" { "Log out" }
                        }
                        span { (who.user) " (" (who.role) ")" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// [`layout`] as a response with `status`.
pub fn page(status: StatusCode, title: &str, who: Option<&Principal>, body: Markup) -> Response {
    (status, Html(layout(title, who, body).into_string())).into_response()
}

/// The outcome of an action, good or bad, above the page it returns to.
pub fn flash(good: bool, text: &str) -> Markup {
    html! {
        p class={ "flash " (if good { "good" } else { "bad" }) } id="flash" { (text) }
    }
}

/// A POST refused for coming from another site.
pub fn cross_site_refused(title: &str, who: Option<&Principal>) -> Response {
    page(
        StatusCode::FORBIDDEN,
        title,
        who,
        html! { p { "Cross-site request refused." } },
    )
}

/// An API refusal as a page.
pub fn error_page(who: &Principal, e: ApiError) -> Response {
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
        html! { p { (text) } },
    )
}
