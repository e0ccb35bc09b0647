//! Shared by the review-interface test binaries: requests through the
//! router without sockets (`oneshot`).

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// What a browser on the review pages sends as `Host` and `Origin`.
pub const SAME_HOST: &str = "127.0.0.1:7523";
pub const SAME_ORIGIN: &str = "http://127.0.0.1:7523";

/// Status, headers and body (as text) of one request.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A page fetched with a session cookie.
pub async fn page(app: &Router, uri: &str, cookie: &str) -> (StatusCode, String) {
    let req = Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = send(app, req).await;
    (s, b)
}

/// A page form posted with a session cookie, from `origin` when given, else
/// from the pages themselves (as a browser sends it): status, headers, body.
async fn post_form(
    app: &Router,
    uri: &str,
    cookie: &str,
    body: &str,
    origin: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::COOKIE, cookie)
        .header(header::HOST, SAME_HOST)
        .header(header::ORIGIN, origin.unwrap_or(SAME_ORIGIN))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

/// A page form posted with a session cookie (see [`post_form`]).
pub async fn form(
    app: &Router,
    uri: &str,
    cookie: &str,
    body: &str,
    origin: Option<&str>,
) -> (StatusCode, String) {
    let (s, _, b) = post_form(app, uri, cookie, body, origin).await;
    (s, b)
}

/// A form posted the post-redirect-get way: the POST must answer `303 See
/// Other`; returns where it leads and that page (showing the outcome once).
pub async fn form_then_get(
    app: &Router,
    uri: &str,
    cookie: &str,
    body: &str,
    origin: Option<&str>,
) -> (String, String) {
    let (s, headers, b) = post_form(app, uri, cookie, body, origin).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "POST {uri} did not redirect: {b}");
    let to = headers[header::LOCATION].to_str().unwrap().to_string();
    let (s, html) = page(app, &to, cookie).await;
    assert_eq!(s, StatusCode::OK, "GET {to} after POST {uri}: {html}");
    (to, html)
}
