//! What the policy needs from persistence, as traits: account state with
//! its audit log and unblock records, and volume counters with atomic
//! upsert semantics (exact when two relays race at a limit). The database
//! backends implement them; this module holds no implementation.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::account::{AccountStatus, AuditEntry, Transition, UnblockRecord};
use super::limits::CounterKey;
use super::{Event, MemberOutcome};

/// Why persistence failed (the backend's error, as text with context).
#[derive(Debug, thiserror::Error)]
#[error("policy store ({what}): {detail}")]
pub struct PolicyStoreError {
    pub what: &'static str,
    pub detail: String,
}

/// An account event could not be handed over for delivery.
#[derive(Debug, thiserror::Error)]
#[error("notification not queued: {0}")]
pub struct EventSinkError(pub String);

/// Where the enforcer hands account events (blocked, suspended, unblocked)
/// for delivery. The notification outbox implements it; queuing must be
/// durable, since nothing retries a lost event.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: &Event) -> impl Future<Output = Result<(), EventSinkError>> + Send;
}

/// Account state, audit log and unblock history.
pub trait AccountRepo: Send + Sync {
    /// Current status; `Active` for an account never seen.
    fn status(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<AccountStatus, PolicyStoreError>> + Send;
    /// Persist a transition: the new status, its audit entry and (for an
    /// unblock) the unblock record, together. `Ok(false)` when the account
    /// is no longer in the state the transition starts from (another actor,
    /// or another relay, changed it first): nothing is written then.
    fn apply(
        &self,
        transition: &Transition,
    ) -> impl Future<Output = Result<bool, PolicyStoreError>> + Send;
    /// An audit entry without a state change.
    fn audit(
        &self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<(), PolicyStoreError>> + Send;
    /// The account's audit entries at or after `since`.
    fn audit_since(
        &self,
        account: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, PolicyStoreError>> + Send;
    fn unblocks(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<Vec<UnblockRecord>, PolicyStoreError>> + Send;
    /// Accounts with a volume-limit entry (`prison`, `daily_limit`) in the
    /// audit log at or after `since`, by name.
    fn limited_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<String>, PolicyStoreError>> + Send;
}

/// Volume counters shared by all relays.
pub trait VolumeCounters: Send + Sync {
    /// Add `n` to the cell and return the new value, atomically.
    fn incr_and_get(
        &self,
        key: &CounterKey,
        n: u64,
    ) -> impl Future<Output = Result<u64, PolicyStoreError>> + Send;
    fn get(&self, key: &CounterKey) -> impl Future<Output = Result<u64, PolicyStoreError>> + Send;
    /// Add `member` to the distinct set unless it would grow past `cap`;
    /// atomic, so two racing additions never both take the last place.
    fn add_member_capped(
        &self,
        key: &CounterKey,
        member: &str,
        cap: u64,
    ) -> impl Future<Output = Result<MemberOutcome, PolicyStoreError>> + Send;
}
