//! The score chart: messages per hour by tier band with the hour's highest
//! score, as an SVG (inline in the page and at `/chart.svg`) and a table.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use crate::http::api::{self, HourStats};
use crate::http::auth::Principal;
use crate::http::{ApiError, AppState};

use super::layout::{error_page, page};

#[derive(Debug, Deserialize)]
pub struct ChartQuery {
    pub hours: Option<i64>,
}

/// Stacked bars of messages per hour by tier band, with the hour's highest
/// score as a line. Every element is closed, so the same text is valid
/// XML for `/chart.svg`.
fn chart_svg(hours: &[HourStats]) -> Markup {
    let (w, h, left, bottom, top) = (900.0f64, 320.0f64, 50.0f64, 40.0f64, 20.0f64);
    let plot_h = h - bottom - top;
    let n = hours.len().max(1) as f64;
    let bar_w = (w - left - 50.0) / n;
    let max_msgs = hours.iter().map(|x| x.messages).max().unwrap_or(0).max(1) as f64;
    let max_score = hours.iter().map(|x| x.max_score).fold(1.0f64, f64::max);
    let f1 = |v: f64| format!("{v:.1}");
    // Per hour: its bars (x, y, width, height, colour) and, every third
    // hour, its label.
    let mut columns = Vec::new();
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
        let mut bars = Vec::new();
        for (count, colour) in [(clean, "#66bb6a"), (low, "#ffa726"), (high, "#e53935")] {
            if count == 0 {
                continue;
            }
            let bh = count as f64 / max_msgs * plot_h;
            y -= bh;
            bars.push((x + 1.0, y, (bar_w - 2.0).max(1.0), bh, colour));
        }
        let sy = h - bottom - hr.max_score.max(0.0) / max_score * plot_h;
        line.push(format!("{:.1},{sy:.1}", x + bar_w / 2.0));
        let label = (i % 3 == 0).then(|| (x, hr.hour.format("%H:00").to_string()));
        columns.push((bars, label));
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) }
            role="img" aria-label="Messages per hour by tier, and highest score" {
            rect width=(w) height=(h) fill="#fff" {}
            text x="4" y="14" font-size="11" { "messages (max " (max_msgs) ")" }
            text x=(w - 140.0) y="14" font-size="11" fill="#6a1b9a" { "max score (" (format!("{max_score:.1}")) ")" }
            @for (bars, label) in &columns {
                @for (x, y, bw, bh, colour) in bars {
                    rect x=(f1(*x)) y=(f1(*y)) width=(f1(*bw)) height=(f1(*bh)) fill=(colour) {}
                }
                @if let Some((x, label)) = label {
                    text x=(f1(*x)) y=(h - bottom + 14.0) font-size="10" { (label) }
                }
            }
            polyline points=(line.join(" ")) fill="none" stroke="#6a1b9a" stroke-width="2" {}
            line x1=(left) y1=(h - bottom) x2=(w - 50.0) y2=(h - bottom) stroke="#333" {}
            g font-size="11" {
                rect x=(left) y=(h - 14.0) width="10" height="10" fill="#66bb6a" {}
                text x=(left + 14.0) y=(h - 5.0) { "no tier" }
                rect x=(left + 90.0) y=(h - 14.0) width="10" height="10" fill="#ffa726" {}
                text x=(left + 104.0) y=(h - 5.0) { "password-reset tiers" }
                rect x=(left + 260.0) y=(h - 14.0) width="10" height="10" fill="#e53935" {}
                text x=(left + 274.0) y=(h - 5.0) { "suspension tiers" }
            }
        }
    }
}

async fn hours_for(state: &AppState, q: &ChartQuery) -> Result<Vec<HourStats>, ApiError> {
    api::hourly(state, q.hours.unwrap_or(24).clamp(1, 24 * 7)).await
}

fn chart_body(hours: &[HourStats]) -> Markup {
    html! {
        (chart_svg(hours))
        table {
            thead {
                tr { th { "Hour" } th { "Messages" } th { "Refused" } th { "Max score" } th { "Tiers" } }
            }
            tbody {
                @for h in hours.iter().filter(|h| h.messages > 0) {
                    tr {
                        td { (h.hour.format("%Y-%m-%d %H:00")) }
                        td { (h.messages) }
                        td { (h.spam) }
                        td { (format!("{:.2}", h.max_score)) }
                        td {
                            @for (i, (t, n)) in h.tiers.iter().enumerate() {
                                @if i > 0 { ", " }
                                (t) " × " (n)
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn chart(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ChartQuery>,
) -> Response {
    match hours_for(&state, &q).await {
        Ok(hours) => page(
            StatusCode::OK,
            "Spam score and tiers, last hours",
            Some(&who),
            chart_body(&hours),
        ),
        Err(e) => error_page(&who, e),
    }
}

/// `GET /chart.svg`: the chart alone.
pub async fn chart_svg_image(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ChartQuery>,
) -> Response {
    match hours_for(&state, &q).await {
        Ok(h) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            chart_svg(&h).into_string(),
        )
            .into_response(),
        Err(e) => error_page(&who, e),
    }
}
