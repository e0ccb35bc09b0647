//! The login page, logging in (throttled, same-site only) and logging out.

use axum::extract::{FromRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::http::auth::{self, SESSION_COOKIE};
use crate::http::{throttle, AppState};

use super::cross_site;
use super::layout::{cross_site_refused, flash, page};

fn login_body(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            (flash(false, error))
        }
        form method="post" action="/login" {
            p { label { "User " input name="user" autocomplete="username" required; } }
            p { label { "Password " input name="password" type="password" autocomplete="current-password" required; } }
            p { button type="submit" { "Log in" } }
        }
        p class="muted" {
            "No credential yet? On the server run "
            code { "outscore user add NAME --role abuse" }
            "."
        }
    }
}

pub async fn login_form() -> Response {
    page(StatusCode::OK, "Log in", None, login_body(None))
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
        return cross_site_refused("Log in", None);
    }
    let user = f.user.trim();
    if let Some(wait) = state.throttle.blocked(ip, user) {
        crate::telemetry::HTTP_AUTH_FAILURES.incr();
        tracing::warn!(client = %throttle::show(ip), user = %auth::printable(user), "review login refused: too many failed logins");
        let text = format!(
            "Too many failed logins from your address or for this user. Wait {} and try again.",
            throttle::plain_wait(wait)
        );
        let mut res = page(
            StatusCode::TOO_MANY_REQUESTS,
            "Log in",
            None,
            login_body(Some(&text)),
        );
        if let Ok(v) = throttle::retry_after_secs(wait).to_string().parse() {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let Some(who) = auth::check_password(&state, user, f.password.trim()).await else {
        state.throttle.failure(ip, user);
        crate::telemetry::HTTP_AUTH_FAILURES.incr();
        tracing::warn!(client = %throttle::show(ip), user = %auth::printable(user), "review login refused");
        return page(
            StatusCode::UNAUTHORIZED,
            "Log in",
            None,
            login_body(Some("Wrong user name or password.")),
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
