//! The policy's persistence traits ([`crate::policy::store`]) and the
//! notification outbox ([`crate::notify::OutboxQueue`]) implemented over the
//! store's SQLite and PostgreSQL backends, so account state, the audit log,
//! volume counters and notifications are shared by every relay using the
//! same database. Knows nothing of the milter or scoring.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::notify::{OutboxError, OutboxItem, OutboxQueue};
use crate::policy::store::{AccountRepo, PolicyStoreError, VolumeCounters};
use crate::policy::UnblockRecord;
use crate::policy::{AccountStatus, AuditEntry, CounterKey, MemberOutcome, Tier, Transition};
use crate::store::{
    self, AccountChange, AccountStore, AuditLog, Counters, Outbox, Store, StoreError,
    UnblockRequest,
};

fn err(what: &'static str) -> impl FnOnce(StoreError) -> PolicyStoreError {
    move |e| PolicyStoreError {
        what,
        detail: e.to_string(),
    }
}

fn sql_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> PolicyStoreError {
    move |e| PolicyStoreError {
        what,
        detail: e.to_string(),
    }
}

fn tier_of(text: Option<&str>) -> Option<Tier> {
    text.and_then(|t| t.parse().ok())
}

/// How many audit entries of one account are read to derive its history.
pub const AUDIT_WINDOW: u32 = 5000;

impl AccountRepo for Store {
    async fn status(&self, account: &str) -> Result<AccountStatus, PolicyStoreError> {
        let Some(state) = self
            .account_state(account)
            .await
            .map_err(err("account state"))?
        else {
            return Ok(AccountStatus::Active);
        };
        Ok(match state.status {
            store::AccountStatus::Active => AccountStatus::Active,
            store::AccountStatus::PasswordResetRequired => AccountStatus::PasswordResetRequired {
                since: state.since,
                tier: tier_of(state.tier.as_deref()).unwrap_or(Tier::LSpam00),
                report_id: state.report_id.unwrap_or_default(),
            },
            store::AccountStatus::Suspended => AccountStatus::Suspended {
                since: state.since,
                tier: tier_of(state.tier.as_deref()),
                report_id: state.report_id,
                reason: state.reason.unwrap_or_default(),
            },
        })
    }

    async fn apply(&self, t: &Transition) -> Result<bool, PolicyStoreError> {
        if let Some(unblock) = &t.unblock {
            let reason = t.audit.detail["reason"].as_str().map(str::to_string);
            let done = self
                .unblock(&UnblockRequest {
                    account: t.account.clone(),
                    at: unblock.at,
                    by: t.audit.actor.clone(),
                    self_service: unblock.self_service,
                    reason,
                })
                .await;
            match done {
                Ok(Some(_)) => {}
                // Unblocked (or changed) by someone else in the meantime.
                Ok(None) | Err(StoreError::Conflict { .. }) => return Ok(false),
                Err(e) => return Err(err("unblock")(e)),
            }
        } else {
            let (status, reason) = match &t.to {
                AccountStatus::Active => (store::AccountStatus::Active, None),
                AccountStatus::PasswordResetRequired { .. } => {
                    (store::AccountStatus::PasswordResetRequired, None)
                }
                AccountStatus::Suspended { reason, .. } => {
                    (store::AccountStatus::Suspended, Some(reason.clone()))
                }
            };
            self.set_account_state(&AccountChange {
                account: t.account.clone(),
                status,
                at: t.audit.at,
                tier: t.to.tier().map(|t| t.as_str().to_string()),
                report_id: t.to.report_id().map(str::to_string),
                reason,
            })
            .await
            .map_err(err("set account state"))?;
        }
        AccountRepo::audit(self, &t.audit).await?;
        Ok(true)
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), PolicyStoreError> {
        AuditLog::audit(
            self,
            &store::AuditEntry {
                at: entry.at,
                actor: entry.actor.clone(),
                account: Some(entry.account.to_ascii_lowercase()),
                action: entry.action.clone(),
                detail: entry.detail.clone(),
            },
        )
        .await
        .map_err(err("audit"))?;
        Ok(())
    }

    async fn audit_since(
        &self,
        account: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>, PolicyStoreError> {
        let records = self
            .audit_entries(Some(account), AUDIT_WINDOW)
            .await
            .map_err(err("audit entries"))?;
        Ok(records
            .into_iter()
            .filter(|r| r.entry.at >= since)
            .map(|r| AuditEntry {
                at: r.entry.at,
                actor: r.entry.actor,
                account: r.entry.account.unwrap_or_default(),
                action: r.entry.action,
                detail: r.entry.detail,
            })
            .collect())
    }

    async fn unblocks(&self, account: &str) -> Result<Vec<UnblockRecord>, PolicyStoreError> {
        Ok(self
            .unblock_history(account)
            .await
            .map_err(err("unblock history"))?
            .into_iter()
            .map(|u| UnblockRecord {
                at: u.at,
                self_service: u.self_service,
            })
            .collect())
    }

    async fn limited_since(&self, since: DateTime<Utc>) -> Result<Vec<String>, PolicyStoreError> {
        let sql = "SELECT DISTINCT account FROM audit_log \
                   WHERE at >= $1 AND action IN ('prison', 'daily_limit') AND account IS NOT NULL \
                   ORDER BY account";
        let since = since.timestamp_millis();
        match self {
            Store::Sqlite(s) => sqlx::query_scalar::<_, String>(sql)
                .bind(since)
                .fetch_all(s.pool())
                .await
                .map_err(sql_err("limited accounts")),
            Store::Postgres(s) => sqlx::query_scalar::<_, String>(sql)
                .bind(since)
                .fetch_all(s.pool())
                .await
                .map_err(sql_err("limited accounts")),
        }
    }
}

/// Insert `member` only while the set has fewer than `cap` members. One
/// statement: SQLite serialises writers, PostgreSQL takes a transaction
/// lock on the set first, so two racing additions never both take the last
/// place.
const CAPPED_INSERT: &str = "INSERT INTO counter_members (key, window_start, member) \
     SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM counter_members \
     WHERE key = $1 AND window_start = $2) < $4 \
     ON CONFLICT DO NOTHING";
const MEMBER_EXISTS: &str =
    "SELECT COUNT(*) FROM counter_members WHERE key = $1 AND window_start = $2 AND member = $3";
const MEMBER_COUNT: &str =
    "SELECT COUNT(*) FROM counter_members WHERE key = $1 AND window_start = $2";

macro_rules! capped_add {
    ($conn:expr, $db:ty, $key:expr, $member:expr, $cap:expr) => {{
        let exists: i64 = sqlx::query_scalar::<$db, i64>(MEMBER_EXISTS)
            .bind($key.key.clone())
            .bind($key.window_start)
            .bind($member.to_string())
            .fetch_one(&mut *$conn)
            .await
            .map_err(sql_err("member lookup"))?;
        if exists > 0 {
            MemberOutcome::Known
        } else {
            let added = sqlx::query::<$db>(CAPPED_INSERT)
                .bind($key.key.clone())
                .bind($key.window_start)
                .bind($member.to_string())
                .bind($cap as i64)
                .execute(&mut *$conn)
                .await
                .map_err(sql_err("capped member insert"))?
                .rows_affected()
                == 1;
            let n: i64 = sqlx::query_scalar::<$db, i64>(MEMBER_COUNT)
                .bind($key.key.clone())
                .bind($key.window_start)
                .fetch_one(&mut *$conn)
                .await
                .map_err(sql_err("member count"))?;
            if added {
                MemberOutcome::Added(n as u64)
            } else if sqlx::query_scalar::<$db, i64>(MEMBER_EXISTS)
                .bind($key.key.clone())
                .bind($key.window_start)
                .bind($member.to_string())
                .fetch_one(&mut *$conn)
                .await
                .map_err(sql_err("member lookup"))?
                > 0
            {
                // Added by a racing relay between the lookup and the insert.
                MemberOutcome::Known
            } else {
                MemberOutcome::Full(n as u64)
            }
        }
    }};
}

impl VolumeCounters for Store {
    async fn incr_and_get(&self, key: &CounterKey, n: u64) -> Result<u64, PolicyStoreError> {
        let v = self
            .add_count(&key.key, key.window_start, n as i64)
            .await
            .map_err(err("counter"))?;
        Ok(v.max(0) as u64)
    }

    async fn get(&self, key: &CounterKey) -> Result<u64, PolicyStoreError> {
        let v = self
            .count(&key.key, key.window_start)
            .await
            .map_err(err("counter"))?;
        Ok(v.max(0) as u64)
    }

    async fn add_member_capped(
        &self,
        key: &CounterKey,
        member: &str,
        cap: u64,
    ) -> Result<MemberOutcome, PolicyStoreError> {
        match self {
            Store::Sqlite(s) => {
                let mut conn = s.pool().acquire().await.map_err(sql_err("acquire"))?;
                Ok(capped_add!(conn, sqlx::Sqlite, key, member, cap))
            }
            Store::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(sql_err("begin"))?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
                    .bind(key.key.clone())
                    .bind(key.window_start)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_err("set lock"))?;
                let outcome = capped_add!(tx, sqlx::Postgres, key, member, cap);
                tx.commit().await.map_err(sql_err("commit"))?;
                Ok(outcome)
            }
        }
    }
}

fn outbox_err(e: StoreError) -> OutboxError {
    OutboxError::Backend(e.to_string())
}

impl OutboxQueue for Store {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<i64, OutboxError> {
        Outbox::enqueue(self, kind, payload, at)
            .await
            .map_err(outbox_err)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, OutboxError> {
        Ok(Outbox::claim_due(self, now, lease, limit)
            .await
            .map_err(outbox_err)?
            .into_iter()
            .map(|i| OutboxItem {
                id: i.id,
                created_at: i.created_at,
                kind: i.kind,
                payload: i.payload,
                attempts: i.attempts,
                last_error: i.last_error,
            })
            .collect())
    }

    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), OutboxError> {
        Outbox::mark_delivered(self, id, at)
            .await
            .map_err(outbox_err)
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        Outbox::mark_failed(self, id, error, next_attempt)
            .await
            .map_err(outbox_err)
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        Outbox::outbox_pending(self).await.map_err(outbox_err)
    }
}
