//! The abuse team's review interface: a JSON API, server-rendered pages,
//! Prometheus metrics and health probes over the store. Knows nothing of the
//! milter protocol or of how messages are scored; it reads reports from the
//! store and acts on accounts only through the policy's enforcer (the same
//! instance the daemon's pipeline uses, so an action takes effect for the
//! next message and notifies the customer as any other change does).
//!
//! Everything but `/metrics`, `/healthz` and `/readyz` needs a credential
//! (`outscore user add NAME --role abuse|viewer`): a bearer token
//! `NAME:SECRET` for the API, or the login page for the pages.

mod api;
pub mod auth;
pub mod db;
mod learn;
mod metrics;
mod pages;
pub mod text;
pub mod throttle;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use std::path::PathBuf;

use crate::pipeline::StoreEnforcer;
use crate::store::{ReportSink, Store, StoreError};

pub use auth::Principal;
pub use users::{Role, UserRecord};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Account actions go through the policy; the daemon passes the
    /// pipeline's own enforcer (one facts cache, one notification outbox).
    pub enforcer: Arc<StoreEnforcer>,
    pub sessions: Arc<auth::Sessions>,
    pub session_ttl: Duration,
    /// Failed logins per client address and per user name.
    pub throttle: Arc<throttle::LoginThrottle>,
    /// Mark the session cookie `Secure` (set when served behind TLS).
    pub secure_cookie: bool,
    /// The daemon's report queue, for the queue depth metric.
    pub reports: Option<ReportSink>,
    /// The report spool, for the spool size metric.
    pub spool_dir: Option<PathBuf>,
    /// Teaches the classifier from reviewers' verdicts; without it the
    /// learn endpoints answer 500 and the report page shows no form.
    pub learner: Option<Arc<crate::learn::Learner<Store>>>,
    /// The reject score in force (default sensitivity), shown as the line
    /// on Mail history; the daemon reads it from the rule set, so a reload
    /// moves it.
    pub reject_score: Option<RejectScore>,
}

/// Where the pages read the reject score in force.
pub type RejectScore = Arc<dyn Fn() -> f64 + Send + Sync>;

impl AppState {
    pub fn new(store: Store, enforcer: Arc<StoreEnforcer>) -> AppState {
        AppState {
            store,
            enforcer,
            sessions: Arc::default(),
            session_ttl: Duration::from_secs(8 * 3600),
            throttle: Arc::default(),
            secure_cookie: false,
            reports: None,
            spool_dir: None,
            learner: None,
            reject_score: None,
        }
    }
}

/// An API refusal. Store failures are logged and answered without detail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("past retention: the content is no longer kept")]
    Gone,
    #[error("{0}")]
    BadRequest(String),
    #[error("refused: {message}")]
    Refused {
        message: String,
        detail: serde_json::Value,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy's persistence or outbox failed.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthenticated => return auth::unauthenticated(),
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Gone => StatusCode::GONE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Unavailable(_) => {
                tracing::error!(error = %self, "review API: store failure");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"error": "store unavailable"})),
                )
                    .into_response();
            }
        };
        let mut body = serde_json::json!({"error": self.to_string()});
        if let ApiError::Refused { detail, .. } = self {
            body["detail"] = detail;
        }
        (status, Json(body)).into_response()
    }
}

/// The JSON API, to be nested under `/api/v1`. Every error it answers is
/// `{"error": "…"}` with `application/json`: its own, an unknown path (404),
/// a method the path does not take (405, with `Allow`) and axum's extractor
/// rejections (a bad query string or body 400, a body without a JSON
/// Content-Type 415, …).
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(api::openapi))
        .route("/reports", get(api::list_reports))
        .route("/reports/{id}", get(api::report))
        .route("/reports/{id}/raw", get(api::raw))
        .route("/reports/{id}/learn", post(learn::api))
        .route("/accounts", get(api::accounts))
        .route("/accounts/{account}", get(api::account))
        .route("/accounts/{account}/{action}", post(api::account_action))
        .route("/audit", get(api::audit_log))
        .route("/stats", get(api::stats))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(serde_json::json!({"error": "method not allowed"})),
            )
        })
        .layer(axum::middleware::map_response(json_errors))
}

/// An error answer that is not JSON yet (an extractor's rejection is plain
/// text) becomes `{"error": text}` with the same status and headers.
async fn json_errors(res: Response) -> Response {
    use axum::http::{header, HeaderValue};
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": message }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The whole interface, ready for `axum::serve` or `oneshot`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", api_routes())
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/history", get(pages::history))
        .route("/reports/{id}", get(pages::report))
        .route("/reports/{id}/learn", post(pages::learn))
        .route("/abuse", get(pages::abuse))
        .route("/accounts", get(pages::accounts))
        .route("/accounts/{account}/{action}", post(pages::account_action))
        .route("/chart", get(pages::chart))
        .route("/chart.svg", get(pages::chart_svg))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// No script may run, nothing may frame the pages, forms post only here,
/// and nothing is cached: a message is never executed, even if escaping
/// were missed somewhere.
async fn security_headers(mut res: Response) -> Response {
    use axum::http::{header, HeaderValue};
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Serve on `listen` until `shutdown`; a fresh install (no credential yet)
/// logs how to create the first one.
pub async fn serve(
    state: AppState,
    listen: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_on(state, listener, shutdown).await
}

/// [`serve`] on a listener already bound (so a bad address fails start-up).
pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    match db::user_count(&state.store).await {
        Ok(0) => tracing::warn!(
            listen = %listen,
            "review interface has no credentials yet; create the first with: outscore user add NAME --role abuse"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot count review credentials"),
    }
    if !listen.ip().is_loopback() {
        tracing::warn!(listen = %listen, "review interface listens beyond loopback; put TLS in front of it");
    }
    tracing::info!(listen = %listen, "review interface listening");
    // The peer address feeds the login throttle.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod openapi {
    /// Every route of the API router is described in `openapi.json` with its
    /// method, and the document describes nothing else.
    #[test]
    fn the_document_describes_every_route_of_the_router() {
        let src = include_str!("mod.rs");
        let start = src.find("fn api_routes()").unwrap();
        let end = start + src[start..].find(".fallback(").unwrap();
        let mut routed: Vec<(String, String)> = Vec::new();
        for part in src[start..end].split(".route(\"").skip(1) {
            let (path, rest) = part.split_once('"').unwrap();
            let method = rest
                .trim_start_matches(',')
                .trim()
                .split('(')
                .next()
                .unwrap();
            routed.push((path.to_string(), method.to_string()));
        }
        assert!(routed.len() >= 10, "{routed:?}");
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let mut described: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (path.clone(), m.clone()))
            })
            .collect();
        described.sort();
        routed.sort();
        assert_eq!(described, routed);
    }
}

#[cfg(test)]
mod boundaries {
    //! The module boundaries inside `http` that the code must keep.

    /// Whether `src` imports the sibling module `module` (by `super::` or
    /// `crate::http::`, alone or in a `use super::{…}` list).
    fn imports(src: &str, module: &str) -> bool {
        src.lines().map(str::trim).any(|l| {
            l.contains(&format!("super::{module}"))
                || l.contains(&format!("http::{module}"))
                || (l.starts_with("use super::{") && l.contains(module))
        })
    }

    #[test]
    fn no_import_cycles_between_pages_and_learn_or_auth_and_db() {
        assert!(!imports(include_str!("learn.rs"), "pages"));
        assert!(!imports(include_str!("db.rs"), "auth"));
        assert!(!imports(include_str!("users.rs"), "auth"));
        assert!(!imports(include_str!("users.rs"), "db"));
    }

    /// Only constants bypass the template engine's escaping.
    #[test]
    fn pages_pre_escape_nothing_but_the_style_sheet() {
        for (file, src) in [
            ("pages/mod.rs", include_str!("pages/mod.rs")),
            ("pages/login.rs", include_str!("pages/login.rs")),
            ("pages/reports.rs", include_str!("pages/reports.rs")),
            ("pages/abuse.rs", include_str!("pages/abuse.rs")),
            ("pages/accounts.rs", include_str!("pages/accounts.rs")),
            ("pages/chart.rs", include_str!("pages/chart.rs")),
            ("text.rs", include_str!("text.rs")),
            ("learn.rs", include_str!("learn.rs")),
        ] {
            assert!(!src.contains("PreEscaped"), "{file} uses PreEscaped");
        }
        let layout = include_str!("pages/layout.rs");
        assert_eq!(layout.matches("PreEscaped(").count(), 1, "layout.rs");
        assert!(layout.contains("(PreEscaped(STYLE))"));
    }
}
