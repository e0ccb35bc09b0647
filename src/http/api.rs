//! JSON handlers under `/api/v1`, and the account actions the pages share.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::policy::service::ServiceError;
use crate::policy::{Actor, AuditEntry as PolicyAudit, Effect, Tier, TransitionError};
use crate::store::{
    AccountState, AccountStatus, AccountStore, AuditEntry, AuditLog, Content, Cursor, ReportFilter,
    ReportId, ReportRecord, ReportStore, ReportSummary,
};

use super::auth::{require_abuse, Principal};
use super::{db, text, ApiError, AppState};

/// Most reports on one page.
pub const MAX_PAGE: u32 = 500;
/// Pages read to fill one page when filtering by subject text.
const SUBJECT_SCAN_PAGES: usize = 20;

/// Most reports in the score order (which has no next page).
pub const MAX_BY_SCORE: u32 = 500;
/// Reports read to filter the score order by subject text.
const SUBJECT_SCAN_BY_SCORE: u32 = 10_000;

/// Query string of the report list (API and Mail history page).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// A part of the account name (case-insensitive), or the whole name
    /// with `exact`.
    pub account: Option<String>,
    /// `1` (or `on`, `true`): `account` is the whole name.
    pub exact: Option<String>,
    /// Inclusive: a date (`2026-12-01`, from its start), a date and time
    /// (`2026-12-01 14:30`), all UTC, or RFC 3339.
    pub since: Option<String>,
    /// Exclusive, as `since`; a plain date includes that whole day.
    pub until: Option<String>,
    /// `score`: highest score first, one page without a cursor; else
    /// newest first.
    pub sort: Option<String>,
    pub tier: Option<String>,
    pub action: Option<String>,
    pub min_score: Option<String>,
    pub max_score: Option<String>,
    pub recipient: Option<String>,
    /// Case-insensitive substring of the subject.
    pub subject: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A time as a reviewer types it: RFC 3339, a UTC date and time
/// (`2026-12-01 14:30`, `2026-12-01T14:30:05`) or a plain UTC date. A plain
/// date is the start of that day, or with `end_of_day` the start of the
/// next (so "until 2026-12-01" includes the 1st).
pub fn parse_when(text: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime};
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Some(at.with_timezone(&Utc));
    }
    let t = t.strip_suffix('Z').unwrap_or(t).trim_end();
    let t = t.strip_suffix("UTC").unwrap_or(t).trim_end();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(t, format) {
            return Some(at.and_utc());
        }
    }
    let day = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    let day = if end_of_day { day.succ_opt()? } else { day };
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}

fn parse_time(
    v: &Option<String>,
    what: &str,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match nonempty(v) {
        None => Ok(None),
        Some(s) => parse_when(&s, end_of_day).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{what} must be a date like 2026-12-01, a UTC time like 2026-12-01 14:30, or RFC 3339; got {s:?}"
            ))
        }),
    }
}

fn flag(v: &Option<String>) -> bool {
    nonempty(v)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "true" | "yes"))
}

fn parse_score(v: &Option<String>, what: &str) -> Result<Option<f64>, ApiError> {
    match nonempty(v) {
        None => Ok(None),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{what} must be a number, got {s:?}"))),
    }
}

impl ListQuery {
    /// Highest score first.
    pub fn by_score(&self) -> Result<bool, ApiError> {
        match nonempty(&self.sort).as_deref() {
            None | Some("time") | Some("newest") => Ok(false),
            Some("score") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "sort must be time or score, got {other:?}"
            ))),
        }
    }

    /// Whether `account` is the whole name.
    pub fn exact(&self) -> bool {
        flag(&self.exact)
    }

    pub fn filter(&self) -> Result<ReportFilter, ApiError> {
        let account = nonempty(&self.account).map(|a| a.to_lowercase());
        let exact = self.exact();
        Ok(ReportFilter {
            account: account.clone().filter(|_| exact),
            account_contains: account.filter(|_| !exact),
            by_score: self.by_score()?,
            since: parse_time(&self.since, "since", false)?,
            until: parse_time(&self.until, "until", true)?,
            tier: nonempty(&self.tier),
            action: nonempty(&self.action),
            min_score: parse_score(&self.min_score, "min_score")?,
            max_score: parse_score(&self.max_score, "max_score")?,
            recipient: nonempty(&self.recipient),
            ..ReportFilter::default()
        })
    }
}

/// One page of the list and where the next begins.
pub struct Listed {
    pub reports: Vec<ReportSummary>,
    pub next: Option<String>,
}

pub async fn fetch_list(state: &AppState, q: &ListQuery) -> Result<Listed, ApiError> {
    let filter = q.filter()?;
    if filter.by_score {
        return fetch_by_score(state, q, &filter).await;
    }
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let mut after: Option<Cursor> = match nonempty(&q.after) {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::BadRequest(format!("bad cursor {s:?}")))?,
        ),
    };
    let subject = nonempty(&q.subject).map(|s| s.to_lowercase());
    let Some(subject) = subject else {
        let page = state
            .store
            .list_reports(&filter, limit, after.as_ref())
            .await?;
        return Ok(Listed {
            reports: page.reports,
            next: page.next.map(|c| c.to_string()),
        });
    };
    // The store has no subject index: read pages and keep the matches.
    let mut reports = Vec::new();
    for _ in 0..SUBJECT_SCAN_PAGES {
        let page = state
            .store
            .list_reports(&filter, MAX_PAGE, after.as_ref())
            .await?;
        for r in page.reports {
            if reports.len() as u32 == limit {
                break;
            }
            let hit = r
                .subject
                .as_deref()
                .is_some_and(|s| s.to_lowercase().contains(&subject));
            after = Some(Cursor {
                created_at_ms: r.created_at.timestamp_millis(),
                id: r.id.to_string(),
            });
            if hit {
                reports.push(r);
            }
        }
        if reports.len() as u32 == limit {
            return Ok(Listed {
                reports,
                next: after.map(|c| c.to_string()),
            });
        }
        if page.next.is_none() {
            return Ok(Listed {
                reports,
                next: None,
            });
        }
    }
    Ok(Listed {
        reports,
        next: after.map(|c| c.to_string()),
    })
}

/// The score order: one page, highest first, no cursor.
async fn fetch_by_score(
    state: &AppState,
    q: &ListQuery,
    filter: &ReportFilter,
) -> Result<Listed, ApiError> {
    if nonempty(&q.after).is_some() {
        return Err(ApiError::BadRequest(
            "the score order has one page only: narrow the filters instead of paging".into(),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_BY_SCORE);
    let Some(subject) = nonempty(&q.subject).map(|s| s.to_lowercase()) else {
        let page = state.store.list_reports(filter, limit, None).await?;
        return Ok(Listed {
            reports: page.reports,
            next: None,
        });
    };
    let page = state
        .store
        .list_reports(filter, SUBJECT_SCAN_BY_SCORE, None)
        .await?;
    let reports = page
        .reports
        .into_iter()
        .filter(|r| {
            r.subject
                .as_deref()
                .is_some_and(|s| s.to_lowercase().contains(&subject))
        })
        .take(limit as usize)
        .collect();
    Ok(Listed {
        reports,
        next: None,
    })
}

pub async fn list_reports(
    State(state): State<AppState>,
    _who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let listed = fetch_list(&state, &q).await?;
    Ok(Json(
        json!({"reports": listed.reports, "next": listed.next}),
    ))
}

/// A report and, for the abuse role, its content (audited).
pub struct Detail {
    pub record: ReportRecord,
    /// `None` for the viewer role or when the content is missing.
    pub raw: Option<Vec<u8>>,
}

/// Read a report; content only for the abuse role, and each content view
/// is audited. 410 past retention, 404 when unknown.
pub async fn fetch_detail(state: &AppState, who: &Principal, id: &str) -> Result<Detail, ApiError> {
    let id: ReportId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Some(record) = state.store.report(&id).await? else {
        return match state.store.content(&id).await? {
            Content::Expired => Err(ApiError::Gone),
            _ => Err(ApiError::NotFound),
        };
    };
    let raw = if who.can_act() {
        match state.store.content(&id).await? {
            Content::Found(raw) => {
                audit(
                    state,
                    who,
                    record.account.clone(),
                    "view_content",
                    json!({"report_id": id}),
                )
                .await?;
                Some(raw)
            }
            Content::Expired => return Err(ApiError::Gone),
            Content::NotFound => None,
        }
    } else {
        None
    };
    Ok(Detail { record, raw })
}

pub async fn report(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let detail = fetch_detail(&state, &who, &id).await?;
    let content = detail.raw.as_ref().map(|raw| {
        json!({
            "raw": String::from_utf8_lossy(raw),
            "text": text::readable(raw),
            "size": raw.len(),
        })
    });
    Ok(Json(json!({
        "report": detail.record,
        "content": content,
        "content_visible": who.can_act(),
    })))
}

/// The raw message (`message/rfc822`), abuse role only, audited.
pub async fn raw(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_abuse(&who)?;
    let detail = fetch_detail(&state, &who, &id).await?;
    let raw = detail.raw.ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

/// An account as the API and pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub account: String,
    pub status: AccountStatus,
    /// Whether sending is restricted (any status but active).
    pub restricted: bool,
    /// When the current block began.
    pub blocked_since: Option<DateTime<Utc>>,
    pub tier: Option<String>,
    pub reason: Option<String>,
    pub report_id: Option<String>,
}

impl AccountView {
    pub fn of(account: &str, state: Option<&AccountState>) -> AccountView {
        match state {
            Some(s) => AccountView {
                account: s.account.clone(),
                status: s.status,
                restricted: s.status.is_blocked(),
                blocked_since: s.status.is_blocked().then_some(s.since),
                tier: s.tier.clone(),
                reason: s.reason.clone(),
                report_id: s.report_id.clone(),
            },
            None => AccountView {
                account: account.to_string(),
                status: AccountStatus::Active,
                restricted: false,
                blocked_since: None,
                tier: None,
                reason: None,
                report_id: None,
            },
        }
    }
}

pub async fn accounts(
    State(state): State<AppState>,
    _who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = db::accounts(&state.store, 1000).await?;
    let views: Vec<AccountView> = list
        .iter()
        .map(|s| AccountView::of(&s.account, Some(s)))
        .collect();
    let limited: Vec<serde_json::Value> = limited_accounts(&state, 1000)
        .await?
        .into_iter()
        .flat_map(|(account, restrictions)| {
            restrictions.into_iter().map(move |r| {
                json!({"account": account, "restriction": r.kind.as_str(), "until": r.until})
            })
        })
        .collect();
    Ok(Json(json!({"accounts": views, "limited": limited})))
}

/// Accounts held back by a volume limit now (prison, the daily budget),
/// by the policy's own reading of their facts.
pub async fn limited_accounts(
    state: &AppState,
    limit: usize,
) -> Result<Vec<(String, Vec<crate::policy::history::LimitRestriction>)>, ApiError> {
    state
        .enforcer
        .limited_accounts(Utc::now(), limit)
        .await
        .map_err(service_error)
}

pub async fn account(
    State(state): State<AppState>,
    _who: Principal,
    Path(account): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = account.to_ascii_lowercase();
    let current = state.store.account_state(&account).await?;
    let unblocks = state.store.unblock_history(&account).await?;
    let audit = state.store.audit_entries(Some(&account), 20).await?;
    let filter = ReportFilter {
        account: Some(account.clone()),
        ..ReportFilter::default()
    };
    let recent = state.store.list_reports(&filter, 20, None).await?;
    let self_service = self_service_check(&state, &account).await?;
    Ok(Json(json!({
        "account": AccountView::of(&account, current.as_ref()),
        "self_service_unblock": match &self_service {
            Ok(()) => json!({"allowed": true}),
            Err(why) => json!({"allowed": false, "why": why.to_string(),
                "detail": refusal("unblock", &account, why).map(|(_, d)| d)}),
        },
        "unblocks": unblocks,
        "audit": audit,
        "recent_reports": recent.reports,
    })))
}

/// The policy's self-service rule for `account` now: `Err` says why a
/// self-service unblock would be refused.
pub async fn self_service_check(
    state: &AppState,
    account: &str,
) -> Result<Result<(), TransitionError>, ApiError> {
    state
        .enforcer
        .self_service_check(account, Utc::now())
        .await
        .map_err(service_error)
}

/// Body of an account action.
#[derive(Debug, Default, Deserialize)]
pub struct ActionBody {
    pub reason: Option<String>,
    /// For `suspend`: the tier to record.
    pub tier: Option<String>,
}

/// The account actions, by URL segment.
pub const ACTIONS: [&str; 4] = ["unblock", "password-reset-done", "suspend", "lift"];

async fn audit(
    state: &AppState,
    who: &Principal,
    account: Option<String>,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    state
        .store
        .audit(&AuditEntry {
            at: Utc::now(),
            actor: actor(who).label(),
            account,
            action: action.to_string(),
            detail,
        })
        .await?;
    Ok(())
}

/// How the policy names a review user in the audit log and unblock history.
fn actor(who: &Principal) -> Actor {
    Actor::Abuse(who.user.clone())
}

/// A failure of the policy's persistence; a refusal has been handled before.
fn service_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Refused(why) => ApiError::BadRequest(why.to_string()),
        other => ApiError::Unavailable(other.to_string()),
    }
}

pub use crate::policy::account::refusal;

/// Apply an account action for `who` (abuse role) through the policy's
/// enforcer: the same rules, audit entries, cache invalidation and
/// customer notifications as the pipeline and `outscore account`. Refusals
/// are audited too and come back as [`ApiError::Refused`].
pub async fn perform(
    state: &AppState,
    who: &Principal,
    account: &str,
    action: &str,
    body: &ActionBody,
) -> Result<AccountView, ApiError> {
    require_abuse(who)?;
    if !ACTIONS.contains(&action) {
        return Err(ApiError::NotFound);
    }
    let account = account.trim().to_ascii_lowercase();
    if account.is_empty() {
        return Err(ApiError::NotFound);
    }
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a reason is required".into()))?
        .to_string();
    let tier: Option<Tier> = match body.tier.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() && action == "suspend" => Some(t.parse().map_err(|_| {
            ApiError::BadRequest(format!("tier must be a tier name like L-SPAM20, got {t:?}"))
        })?),
        _ => None,
    };
    let now = Utc::now();
    let by = actor(who);
    let enforcer = &state.enforcer;
    let result = match action {
        "unblock" => {
            enforcer
                .self_service_unblock(&account, &by, Some(&reason), now)
                .await
        }
        "password-reset-done" => enforcer.reset_done(&account, &by, Some(&reason), now).await,
        "lift" => enforcer.lift(&account, &by, &reason, now).await,
        _ => enforcer.suspend(&account, &by, &reason, tier, now).await,
    };
    let transition = match result {
        Ok(t) => t,
        Err(ServiceError::Refused(why)) => {
            let message = why.to_string();
            let Some((_, detail)) = refusal(action, &account, &why) else {
                return Err(ApiError::BadRequest(message));
            };
            let entry = PolicyAudit {
                at: now,
                actor: by.label(),
                account: account.clone(),
                action: format!("{}_refused", action.replace('-', "_")),
                detail: json!({"reason": reason, "why": message, "refusal": detail["refusal"]}),
            };
            enforcer
                .persist(&[Effect::Audit(entry)])
                .await
                .map_err(service_error)?;
            tracing::info!(actor = %who.user, account = %account, action, why = %message, "account action refused");
            return Err(ApiError::Refused { message, detail });
        }
        Err(e) => return Err(service_error(e)),
    };
    crate::telemetry::HTTP_ACCOUNT_ACTIONS.incr();
    tracing::info!(actor = %who.user, account = %account, action,
        from = transition.from.name(), to = transition.to.name(), "account action");
    let current = state.store.account_state(&account).await?;
    Ok(AccountView::of(&account, current.as_ref()))
}

pub async fn account_action(
    State(state): State<AppState>,
    who: Principal,
    Path((account, action)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let view = perform(&state, &who, &account, &action, &body).await?;
    Ok(Json(json!({"account": view})))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub account: Option<String>,
    pub limit: Option<u32>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    _who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = nonempty(&q.account).map(|a| a.to_ascii_lowercase());
    let entries = state
        .store
        .audit_entries(account.as_deref(), q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({"entries": entries})))
}

/// Messages of one hour.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourStats {
    pub hour: DateTime<Utc>,
    pub messages: u64,
    /// Messages not accepted.
    pub spam: u64,
    pub max_score: f64,
    pub mean_score: f64,
    pub tiers: BTreeMap<String, u64>,
}

/// Scored messages per hour over the last `hours`, oldest first, every
/// hour present.
pub async fn hourly(state: &AppState, hours: i64) -> Result<Vec<HourStats>, ApiError> {
    let now = Utc::now();
    let first = (now - Duration::hours(hours - 1))
        .duration_trunc(Duration::hours(1))
        .unwrap_or(now);
    let points = db::score_points(&state.store, first, 200_000).await?;
    let mut out: Vec<HourStats> = (0..hours)
        .map(|i| HourStats {
            hour: first + Duration::hours(i),
            ..HourStats::default()
        })
        .collect();
    let mut sums = vec![0.0f64; out.len()];
    for p in points {
        let i = (p.at - first).num_hours();
        let Some(h) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        h.messages += 1;
        if p.action != "accept" {
            h.spam += 1;
        }
        if p.score > h.max_score {
            h.max_score = p.score;
        }
        sums[i as usize] += p.score;
        if let Some(t) = p.tier {
            *h.tiers.entry(t).or_default() += 1;
        }
    }
    for (h, sum) in out.iter_mut().zip(sums) {
        if h.messages > 0 {
            h.mean_score = sum / h.messages as f64;
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    pub hours: Option<i64>,
}

pub async fn stats(
    State(state): State<AppState>,
    _who: Principal,
    Query(q): Query<StatsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 7);
    Ok(Json(json!({"hours": hourly(&state, hours).await?})))
}

/// The OpenAPI 3 description of this API (no credential needed).
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
