//! Teaching the classifier from the review interface: `POST
//! /api/v1/reports/{id}/learn`, and the checks and sentences behind the
//! report page's "Mark as spam" / "Mark as ham" form (which `pages`
//! renders; no HTML here). Abuse role only; the work is done by
//! [`crate::learn::Learner`].

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::learn::{LearnError, LearnRequest, Learned};
use crate::store::{Label, ReportId};

use super::auth::{require_abuse, Principal};
use super::{ApiError, AppState};

/// Body of a learn request (API and page form alike).
#[derive(Debug, Default, Deserialize)]
pub struct LearnBody {
    /// `spam` or `ham`.
    pub verdict: Option<String>,
    pub reason: Option<String>,
}

/// What went wrong, ready for the API or a page.
pub(super) enum Refusal {
    Api(ApiError),
    /// The model could not be written: answered 500 with the cause.
    Internal(String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

/// Check the role and the body, then learn.
pub(super) async fn learn(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: &LearnBody,
) -> Result<Learned, Refusal> {
    require_abuse(who)?;
    let verdict: Label = body
        .verdict
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("verdict must be spam or ham".into()))?
        .parse()
        .map_err(ApiError::BadRequest)?;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a reason is required".into()))?;
    let report_id: ReportId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Some(learner) = &state.learner else {
        return Err(Refusal::Internal(
            "learning is not enabled on this server".into(),
        ));
    };
    let request = LearnRequest {
        report_id,
        verdict,
        actor: who.user.clone(),
        reason: reason.to_string(),
    };
    learner.learn(&request).await.map_err(|e| match e {
        LearnError::NoReason => ApiError::BadRequest(e.to_string()).into(),
        LearnError::Unknown(_) | LearnError::NoContent(_) => ApiError::NotFound.into(),
        LearnError::Expired(_) => ApiError::Gone.into(),
        LearnError::NotAMessage(_) => ApiError::BadRequest(e.to_string()).into(),
        LearnError::AlreadyLearned(ref earlier) => ApiError::Refused {
            message: e.to_string(),
            detail: json!({
                "refusal": e.code(),
                "report_id": earlier.report_id,
                "verdict": earlier.verdict,
                "learned_by": earlier.actor,
                "learned_at": earlier.at,
            }),
        }
        .into(),
        LearnError::Store(s) => ApiError::Store(s).into(),
        other => {
            tracing::error!(error = %other, "learn: cannot update the model");
            Refusal::Internal(other.to_string())
        }
    })
}

fn learned_json(l: &Learned) -> serde_json::Value {
    json!({
        "report_id": l.report_id,
        "verdict": l.verdict,
        "reversed": l.reversed,
        "probability": l.probability,
        "probability_before": l.probability_before,
        "model": {
            "spam_messages": l.spam_messages,
            "ham_messages": l.ham_messages,
            "in_use": l.in_use,
        },
    })
}

/// `POST /api/v1/reports/{id}/learn` with `{"verdict": "spam"|"ham",
/// "reason": "…"}`: the message's new spam probability.
pub async fn api(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Option<Json<LearnBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    match learn(&state, &who, &id, &body).await {
        Ok(l) => Json(learned_json(&l)).into_response(),
        Err(Refusal::Api(e)) => e.into_response(),
        Err(Refusal::Internal(m)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": m}))).into_response()
        }
    }
}

fn percent(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{:.1} %", p * 100.0),
        None => "not yet (the model has learned too few messages to classify)".into(),
    }
}

/// The page's sentence about a learn.
pub(super) fn learned_text(l: &Learned) -> String {
    let mut text = format!("Learned as {}.", l.verdict);
    if let Some(earlier) = l.reversed {
        let _ = write!(
            text,
            " It had been learned as {earlier}; those counts were taken back first."
        );
    }
    let _ = write!(
        text,
        " The classifier now gives this message a spam probability of {} (before: {}).",
        percent(l.probability),
        percent(l.probability_before)
    );
    text.push_str(if l.in_use {
        " The updated model is saved and already in use."
    } else {
        " The updated model is saved; the daemon uses it after a reload (SIGHUP)."
    });
    text
}
