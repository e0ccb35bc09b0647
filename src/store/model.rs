//! The values the store keeps and returns: reports, filters and pages,
//! account state, audit entries, outbox items. Plain data; no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::scoring::ScanReport;

/// Hex digits in a report id.
pub const REPORT_ID_LEN: usize = 16;

/// A report id: 16 lowercase hex digits (64 random bits), short enough for
/// an SMTP reply ("see report 7f3a9c0d1e2f3a4b") and unique enough that a
/// collision over a retention window of millions of reports is negligible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReportId(String);

impl ReportId {
    /// A fresh random id.
    pub fn random() -> ReportId {
        ReportId(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not a report id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a report id (want {REPORT_ID_LEN} hex digits): {0:?}")]
pub struct BadReportId(pub String);

impl FromStr for ReportId {
    type Err = BadReportId;
    fn from_str(s: &str) -> Result<ReportId, BadReportId> {
        let ok = s.len() == REPORT_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(ReportId(s.to_ascii_lowercase()))
        } else {
            Err(BadReportId(s.to_string()))
        }
    }
}

impl TryFrom<String> for ReportId {
    type Error = BadReportId;
    fn try_from(s: String) -> Result<ReportId, BadReportId> {
        s.parse()
    }
}

impl From<ReportId> for String {
    fn from(id: ReportId) -> String {
        id.0
    }
}

/// One scored message as the pipeline hands it to the store. `content` is
/// the raw message; the store compresses it (zstd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    pub id: ReportId,
    pub created_at: DateTime<Utc>,
    /// The account the message is charged to: the SASL login, else the
    /// envelope sender (lower-cased).
    pub account: Option<String>,
    pub envelope: Envelope,
    pub report: ScanReport,
    /// `L-SPAM00` … `L-SPAM40`, when a tier applied.
    pub tier: Option<String>,
    /// What was done: `accept`, `reject`, `tempfail`, `discard`…
    pub action: String,
    /// Raw message bytes; never serialised with the rest (the spool and the
    /// database keep it apart).
    #[serde(skip)]
    pub content: Vec<u8>,
}

impl StoredReport {
    /// A report stamped now with a fresh id; the account is the login, else
    /// the envelope sender.
    pub fn new(
        envelope: Envelope,
        report: ScanReport,
        tier: Option<String>,
        action: impl Into<String>,
        content: Vec<u8>,
    ) -> StoredReport {
        let account = account_of(&envelope);
        StoredReport {
            id: ReportId::random(),
            created_at: now_ms(),
            account,
            envelope,
            report,
            tier,
            action: action.into(),
            content,
        }
    }
}

/// What unauthenticated mail is charged to: its claimed sender under this
/// prefix, never the mailbox of that name.
pub const UNAUTHENTICATED: &str = "unauth:";

/// The account an envelope is charged to, lower-cased: the SASL login; for
/// mail without one, `unauth:<envelope sender>` — a separate account, so a
/// forged MAIL FROM (`sendmail -f`, a relay in mynetworks) can never get
/// the mailbox it names blocked; `None` for an anonymous null sender.
pub fn account_of(envelope: &Envelope) -> Option<String> {
    let login = envelope.auth_login.as_deref().map(str::trim);
    match login {
        Some(l) if !l.is_empty() => Some(l.to_ascii_lowercase()),
        _ if !envelope.mail_from.is_empty() => Some(format!(
            "{UNAUTHENTICATED}{}",
            envelope.mail_from.to_ascii_lowercase()
        )),
        _ => None,
    }
}

/// The current time truncated to milliseconds (what the store keeps).
pub fn now_ms() -> DateTime<Utc> {
    from_ms(Utc::now().timestamp_millis())
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A report read back, without its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub id: ReportId,
    pub created_at: DateTime<Utc>,
    pub account: Option<String>,
    pub envelope: Envelope,
    pub report: ScanReport,
    pub tier: Option<String>,
    pub action: String,
    /// Size of the raw message, before compression.
    pub content_size: u64,
}

/// One line of the report list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub id: ReportId,
    pub created_at: DateTime<Utc>,
    pub account: Option<String>,
    pub client_ip: Option<String>,
    pub mail_from: String,
    pub rcpt_count: u64,
    pub queue_id: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub score: f64,
    pub tier: Option<String>,
    pub action: String,
}

/// Which reports to list; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportFilter {
    pub account: Option<String>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    pub tier: Option<String>,
    pub action: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
    /// An envelope recipient (case-insensitive).
    pub recipient: Option<String>,
    /// A part of the account name (case-insensitive; `%` and `_` are
    /// plain characters).
    pub account_contains: Option<String>,
    /// Highest score first (then newest) instead of newest first. This
    /// order has no cursor: one page of at most `limit` reports.
    pub by_score: bool,
}

/// `text` as a SQL `LIKE … ESCAPE '\'` pattern matching any value that
/// contains it: `\`, `%` and `_` lose their special meaning.
pub fn like_contains(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Where a page ends: the last row's `(created_at, id)`. Pages are ordered
/// newest first, so the order is stable while new reports arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub id: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at_ms, self.id)
    }
}

impl FromStr for Cursor {
    type Err = BadReportId;
    fn from_str(s: &str) -> Result<Cursor, BadReportId> {
        let bad = || BadReportId(s.to_string());
        let (ms, id) = s.split_once('.').ok_or_else(bad)?;
        let created_at_ms = ms.parse().map_err(|_| bad())?;
        let id: ReportId = id.parse().map_err(|_| bad())?;
        Ok(Cursor {
            created_at_ms,
            id: id.0,
        })
    }
}

/// One page of the report list.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPage {
    pub reports: Vec<ReportSummary>,
    /// Pass back to get the next page; `None` on the last one.
    pub next: Option<Cursor>,
}

/// The stored message of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The raw message, decompressed.
    Found(Vec<u8>),
    /// The report is older than the retention: content is never served.
    Expired,
    NotFound,
}

/// How much a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    pub reports: u64,
    pub batches: u64,
}

/// Whether an account may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// Blocked until the customer changes the password (low tiers).
    PasswordResetRequired,
    /// Outgoing SMTP suspended (high tiers).
    Suspended,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::PasswordResetRequired => "password_reset_required",
            AccountStatus::Suspended => "suspended",
        }
    }

    pub fn is_blocked(self) -> bool {
        self != AccountStatus::Active
    }
}

impl FromStr for AccountStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<AccountStatus, String> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "password_reset_required" => Ok(AccountStatus::PasswordResetRequired),
            "suspended" => Ok(AccountStatus::Suspended),
            other => Err(format!("unknown account status {other:?}")),
        }
    }
}

/// An account's current state. Accounts never seen are active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    pub account: String,
    pub status: AccountStatus,
    /// When the current status began.
    pub since: DateTime<Utc>,
    pub tier: Option<String>,
    /// The report that caused the current status.
    pub report_id: Option<String>,
    pub reason: Option<String>,
    /// Bumped by every change; lets a caller detect a concurrent change.
    pub version: i64,
}

/// A change of an account's status.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountChange {
    pub account: String,
    pub status: AccountStatus,
    pub at: DateTime<Utc>,
    pub tier: Option<String>,
    pub report_id: Option<String>,
    pub reason: Option<String>,
}

/// One unblock of an account, kept for the 90-day self-service rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unblock {
    pub account: String,
    pub at: DateTime<Utc>,
    /// Who unblocked: the customer's login or an abuse-team member.
    pub by: String,
    pub self_service: bool,
    /// The status the account left.
    pub previous: AccountStatus,
    pub reason: Option<String>,
}

/// An entry for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// `system`, or who acted.
    pub actor: String,
    pub account: Option<String>,
    /// Short verb: `suspend`, `unblock`, `password_reset`…
    pub action: String,
    /// Free-form details (JSON).
    pub detail: serde_json::Value,
}

/// An audit entry read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// A notification waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// `webhook`, `command`, `email`…
    pub kind: String,
    pub payload: serde_json::Value,
    /// Deliveries tried so far, this claim included.
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// The class a message was taught to the content classifier as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Spam,
    Ham,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Spam => "spam",
            Label::Ham => "ham",
        }
    }

    pub fn is_spam(self) -> bool {
        self == Label::Spam
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Label, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "spam" => Ok(Label::Spam),
            "ham" => Ok(Label::Ham),
            other => Err(format!("verdict must be spam or ham, got {other:?}")),
        }
    }
}

/// A verdict the classifier learned from a report (one per report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedVerdict {
    pub report_id: ReportId,
    pub verdict: Label,
    /// Who taught it.
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}
