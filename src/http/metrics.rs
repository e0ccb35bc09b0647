//! `/metrics` (Prometheus text), `/healthz` and `/readyz`: the only paths
//! served without a credential. Nothing here names an account.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::store::{Outbox, ReportStore};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readyz: store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
    }
}

/// The regex engine compiled in.
pub fn regex_engine() -> &'static str {
    if cfg!(feature = "hyperscan") {
        "hyperscan"
    } else {
        "regex-automata"
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    for c in crate::telemetry::counters() {
        let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
        let _ = writeln!(out, "# TYPE {} counter", c.name);
        let _ = writeln!(out, "{} {}", c.name, c.get());
    }
    let _ = writeln!(out, "# HELP outscore_regex_engine The regex engine in use");
    let _ = writeln!(out, "# TYPE outscore_regex_engine gauge");
    let _ = writeln!(
        out,
        "outscore_regex_engine{{engine=\"{}\"}} 1",
        regex_engine()
    );
    let up = state.store.ping().await.is_ok();
    let _ = writeln!(out, "# HELP outscore_store_up Whether the database answers");
    let _ = writeln!(out, "# TYPE outscore_store_up gauge");
    let _ = writeln!(
        out,
        "outscore_store_up{{backend=\"{}\"}} {}",
        state.store.backend(),
        u8::from(up)
    );
    if up {
        if let Ok(n) = state.store.outbox_pending().await {
            let _ = writeln!(
                out,
                "# HELP outscore_outbox_pending Notifications waiting for delivery"
            );
            let _ = writeln!(out, "# TYPE outscore_outbox_pending gauge");
            let _ = writeln!(out, "outscore_outbox_pending {n}");
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
