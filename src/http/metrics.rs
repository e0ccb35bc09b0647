//! `/metrics` (Prometheus text), `/healthz` and `/readyz`: the only paths
//! served without a credential. Nothing here names an account.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::store::{Outbox, ReportStore, SinkStats};
use crate::telemetry as t;

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
    let _ = writeln!(out, "# HELP {} {}", t::VERDICTS_NAME, t::VERDICTS_HELP);
    let _ = writeln!(out, "# TYPE {} counter", t::VERDICTS_NAME);
    for (mode, action, tier, n) in t::verdicts() {
        let _ = writeln!(
            out,
            "{}{{mode=\"{mode}\",action=\"{action}\",tier=\"{tier}\"}} {n}",
            t::VERDICTS_NAME
        );
    }
    let _ = writeln!(out, "# HELP {} {}", t::REFUSALS_NAME, t::REFUSALS_HELP);
    let _ = writeln!(out, "# TYPE {} counter", t::REFUSALS_NAME);
    for (stage, reason, n) in t::refusals() {
        let _ = writeln!(
            out,
            "{}{{stage=\"{stage}\",reason=\"{reason}\"}} {n}",
            t::REFUSALS_NAME
        );
    }
    let (buckets, sum_us) = t::scan_histogram();
    let name = t::SCAN_SECONDS_NAME;
    let _ = writeln!(out, "# HELP {name} {}", t::SCAN_SECONDS_HELP);
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = t::SCAN_BUCKETS_US
            .get(i)
            .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
    if let Some(sink) = &state.reports {
        let stats = sink.stats();
        let _ = writeln!(
            out,
            "# HELP outscore_store_queue_depth Reports waiting in memory for the writer"
        );
        let _ = writeln!(out, "# TYPE outscore_store_queue_depth gauge");
        let _ = writeln!(out, "outscore_store_queue_depth {}", sink.queue_depth());
        let _ = writeln!(
            out,
            "# HELP outscore_store_reports_total Reports by where the writer put them"
        );
        let _ = writeln!(out, "# TYPE outscore_store_reports_total counter");
        for (what, counter) in [
            ("inserted", &stats.inserted),
            ("replayed", &stats.replayed),
            ("spooled", &stats.spooled),
            ("overflowed", &stats.overflowed),
            ("rejected", &stats.rejected),
            ("lost", &stats.lost),
        ] {
            let _ = writeln!(
                out,
                "outscore_store_reports_total{{outcome=\"{what}\"}} {}",
                SinkStats::get(counter)
            );
        }
    }
    if let Some(dir) = &state.spool_dir {
        let _ = writeln!(
            out,
            "# HELP outscore_spool_bytes Bytes of reports waiting in the disk spool"
        );
        let _ = writeln!(out, "# TYPE outscore_spool_bytes gauge");
        let _ = writeln!(out, "outscore_spool_bytes {}", dir_size(dir));
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

/// Bytes of the files in `dir` (one level: the spool is flat).
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
