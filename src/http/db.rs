//! The few queries the review interface needs beyond the store traits:
//! credentials, the account list and hourly statistics. Written once for
//! both backends (`$n` placeholders work in SQLite and PostgreSQL).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::{AccountState, AccountStatus, Store, StoreError};

use super::users::{Role, UserRecord};

fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Run the same query text on whichever pool is in force, binding each
/// argument, and apply `$fetch` (`fetch_all`, `execute`…).
macro_rules! on_pool {
    ($store:expr, $sql:expr, [$($arg:expr),*], $fetch:ident, $what:expr, |$rows:ident| $map:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let $rows = sqlx::query($sql)$(.bind($arg))*.$fetch(s.pool()).await.map_err(query_err($what))?;
                $map
            }
            Store::Postgres(s) => {
                let $rows = sqlx::query($sql)$(.bind($arg))*.$fetch(s.pool()).await.map_err(query_err($what))?;
                $map
            }
        }
    };
}

/// Add or replace a user.
pub async fn put_user(store: &Store, user: &UserRecord) -> Result<(), StoreError> {
    let sql = "INSERT INTO http_users (name, role, salt, iterations, hash, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6) \
               ON CONFLICT (name) DO UPDATE SET role = excluded.role, salt = excluded.salt, \
               iterations = excluded.iterations, hash = excluded.hash, created_at = excluded.created_at";
    on_pool!(
        store,
        sql,
        [
            user.name.clone(),
            user.role.as_str(),
            user.salt.clone(),
            user.iterations,
            user.hash.clone(),
            Utc::now().timestamp_millis()
        ],
        execute,
        "put user",
        |_r| Ok(())
    )
}

pub async fn delete_user(store: &Store, name: &str) -> Result<bool, StoreError> {
    let sql = "DELETE FROM http_users WHERE name = $1";
    on_pool!(
        store,
        sql,
        [name.to_string()],
        execute,
        "delete user",
        |r| Ok(r.rows_affected() > 0)
    )
}

pub async fn user(store: &Store, name: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = "SELECT name, role, salt, iterations, hash FROM http_users WHERE name = $1";
    on_pool!(
        store,
        sql,
        [name.to_string()],
        fetch_optional,
        "read user",
        |row| {
            match row {
                None => Ok(None),
                Some(row) => {
                    let role: String = row.try_get("role").map_err(query_err("read user"))?;
                    Ok(Some(UserRecord {
                        name: row.try_get("name").map_err(query_err("read user"))?,
                        role: role.parse().map_err(|detail| StoreError::Corrupt {
                            what: "user role",
                            detail,
                        })?,
                        salt: row.try_get("salt").map_err(query_err("read user"))?,
                        iterations: row.try_get("iterations").map_err(query_err("read user"))?,
                        hash: row.try_get("hash").map_err(query_err("read user"))?,
                    }))
                }
            }
        }
    )
}

/// How many users exist (a fresh install has none).
pub async fn user_count(store: &Store) -> Result<i64, StoreError> {
    let sql = "SELECT COUNT(*) AS n FROM http_users";
    on_pool!(store, sql, [], fetch_one, "count users", |row| row
        .try_get::<i64, _>("n")
        .map_err(query_err("count users")))
}

/// `(name, role)` of every user.
pub async fn users(store: &Store) -> Result<Vec<(String, Role)>, StoreError> {
    let sql = "SELECT name, role FROM http_users ORDER BY name";
    on_pool!(store, sql, [], fetch_all, "list users", |rows| {
        let mut out = Vec::new();
        for row in rows {
            let role: String = row.try_get("role").map_err(query_err("list users"))?;
            let role = role.parse().map_err(|detail| StoreError::Corrupt {
                what: "user role",
                detail,
            })?;
            out.push((row.try_get("name").map_err(query_err("list users"))?, role));
        }
        Ok(out)
    })
}

/// Every account with a recorded state, blocked ones first, then by name.
pub async fn accounts(store: &Store, limit: u32) -> Result<Vec<AccountState>, StoreError> {
    let sql = "SELECT account, status, since, tier, report_id, reason, version FROM account_state \
               ORDER BY CASE WHEN status = 'active' THEN 1 ELSE 0 END, account LIMIT $1";
    on_pool!(
        store,
        sql,
        [limit as i64],
        fetch_all,
        "list accounts",
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                let status: String = row.try_get("status").map_err(query_err("list accounts"))?;
                let status: AccountStatus =
                    status.parse().map_err(|detail| StoreError::Corrupt {
                        what: "account status",
                        detail,
                    })?;
                out.push(AccountState {
                    account: row.try_get("account").map_err(query_err("list accounts"))?,
                    status,
                    since: from_ms(row.try_get("since").map_err(query_err("list accounts"))?),
                    tier: row.try_get("tier").map_err(query_err("list accounts"))?,
                    report_id: row
                        .try_get("report_id")
                        .map_err(query_err("list accounts"))?,
                    reason: row.try_get("reason").map_err(query_err("list accounts"))?,
                    version: row.try_get("version").map_err(query_err("list accounts"))?,
                });
            }
            Ok(out)
        }
    )
}

/// One scored message, as the hourly statistics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePoint {
    pub at: DateTime<Utc>,
    pub score: f64,
    pub tier: Option<String>,
    pub action: String,
}

/// Scored messages since `since` (oldest first), at most `limit`.
pub async fn score_points(
    store: &Store,
    since: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ScorePoint>, StoreError> {
    let sql = "SELECT created_at, score, tier, action FROM reports WHERE created_at >= $1 \
               ORDER BY created_at LIMIT $2";
    on_pool!(
        store,
        sql,
        [since.timestamp_millis(), limit as i64],
        fetch_all,
        "score points",
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                out.push(ScorePoint {
                    at: from_ms(
                        row.try_get("created_at")
                            .map_err(query_err("score points"))?,
                    ),
                    score: row.try_get("score").map_err(query_err("score points"))?,
                    tier: row.try_get("tier").map_err(query_err("score points"))?,
                    action: row.try_get("action").map_err(query_err("score points"))?,
                });
            }
            Ok(out)
        }
    )
}

/// An account seen in the reports kept (within retention).
#[derive(Debug, Clone, PartialEq)]
pub struct SeenAccount {
    pub account: String,
    pub messages: i64,
    pub last: DateTime<Utc>,
}

/// Accounts that sent mail since `since`, by name, at most `limit`.
pub async fn traffic_accounts(
    store: &Store,
    since: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<SeenAccount>, StoreError> {
    let sql = "SELECT account, COUNT(*) AS n, MAX(created_at) AS last FROM reports \
               WHERE created_at >= $1 AND account IS NOT NULL \
               GROUP BY account ORDER BY account LIMIT $2";
    on_pool!(
        store,
        sql,
        [since.timestamp_millis(), limit as i64],
        fetch_all,
        "accounts in traffic",
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                out.push(SeenAccount {
                    account: row
                        .try_get("account")
                        .map_err(query_err("accounts in traffic"))?,
                    messages: row.try_get("n").map_err(query_err("accounts in traffic"))?,
                    last: from_ms(
                        row.try_get("last")
                            .map_err(query_err("accounts in traffic"))?,
                    ),
                });
            }
            Ok(out)
        }
    )
}
