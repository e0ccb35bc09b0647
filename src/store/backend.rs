//! The SQL both backends share. SQLite and PostgreSQL accept the same
//! statements here (`$n` parameters, `ON CONFLICT`, `RETURNING`, row-value
//! comparison, epoch-millisecond integers), so one macro implements the
//! store traits for each pool type. Knows nothing of the writer or spool.

use chrono::{DateTime, Utc};

use super::model::{from_ms, StoredReport};
use super::StoreError;

/// Rows per multi-row INSERT, under both backends' bind-parameter limits.
pub(crate) const REPORT_CHUNK: usize = 500;
pub(crate) const RCPT_CHUNK: usize = 2000;
pub(crate) const CONTENT_CHUNK: usize = 500;

/// zstd level for stored content: fast, ~4x on mail.
const ZSTD_LEVEL: i32 = 3;

/// A report ready for the database: JSON encoded, content compressed.
pub(crate) struct Prepared {
    pub id: String,
    pub created_at: i64,
    pub account: Option<String>,
    pub client_ip: Option<String>,
    pub client_host: Option<String>,
    pub helo: Option<String>,
    pub auth_login: Option<String>,
    pub mail_from: String,
    pub rcpt_count: i64,
    pub queue_id: Option<String>,
    pub hdr_from: Option<String>,
    pub hdr_to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub hdr_date: Option<String>,
    pub score: f64,
    pub tier: Option<String>,
    pub action: String,
    pub total_us: i64,
    pub envelope: String,
    pub report: String,
    pub rcpts: Vec<String>,
    pub raw_size: i64,
    pub data: Vec<u8>,
}

pub(crate) fn prepare(r: &StoredReport) -> Result<Prepared, StoreError> {
    let envelope = serde_json::to_string(&r.envelope).map_err(|e| StoreError::Corrupt {
        what: "envelope",
        detail: e.to_string(),
    })?;
    let report = serde_json::to_string(&r.report).map_err(|e| StoreError::Corrupt {
        what: "report",
        detail: e.to_string(),
    })?;
    let data = zstd::bulk::compress(&r.content, ZSTD_LEVEL).map_err(|e| StoreError::Corrupt {
        what: "content compression",
        detail: e.to_string(),
    })?;
    let mut rcpts: Vec<String> = r
        .envelope
        .rcpts
        .iter()
        .map(|a| clean(&a.to_ascii_lowercase()))
        .collect();
    rcpts.sort();
    rcpts.dedup();
    let m = &r.report.message;
    let env = &r.envelope;
    Ok(Prepared {
        id: r.id.as_str().to_string(),
        created_at: r.created_at.timestamp_millis(),
        account: clean_opt(&r.account),
        client_ip: env.client.addr.map(|a| a.to_string()),
        client_host: (!env.client.hostname.is_empty()).then(|| clean(&env.client.hostname)),
        helo: clean_opt(&env.client.helo),
        auth_login: clean_opt(&env.auth_login),
        mail_from: clean(&env.mail_from),
        rcpt_count: env.rcpts.len() as i64,
        queue_id: clean_opt(&env.queue_id),
        hdr_from: clean_opt(&m.from),
        hdr_to: (!m.to.is_empty()).then(|| clean(&m.to.join(", "))),
        subject: clean_opt(&m.subject),
        message_id: m
            .message_id
            .as_deref()
            .map(|id| clean(&normalize_message_id(id))),
        hdr_date: clean_opt(&m.date),
        score: if r.report.score.is_finite() {
            r.report.score
        } else {
            0.0
        },
        tier: clean_opt(&r.tier),
        action: clean(&r.action),
        total_us: r.report.timings.total_us.min(i64::MAX as u64) as i64,
        envelope,
        report,
        rcpts,
        raw_size: r.content.len() as i64,
        data,
    })
}

/// PostgreSQL text cannot hold NUL; mail can. The JSON copies keep them
/// (escaped), the indexed columns drop them.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

fn clean_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(clean)
}

/// Message-IDs are kept and searched without angle brackets.
pub(crate) fn normalize_message_id(id: &str) -> String {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id)
        .to_string()
}

pub(crate) fn decompress(
    data: &[u8],
    compression: &str,
    raw_size: i64,
) -> Result<Vec<u8>, StoreError> {
    match compression {
        "zstd" => zstd::bulk::decompress(data, raw_size.max(0) as usize).map_err(|e| {
            StoreError::Corrupt {
                what: "content",
                detail: e.to_string(),
            }
        }),
        "none" => Ok(data.to_vec()),
        other => Err(StoreError::Corrupt {
            what: "content",
            detail: format!("unknown compression {other:?}"),
        }),
    }
}

pub(crate) fn cutoff_ms(retention: std::time::Duration) -> i64 {
    let now = Utc::now().timestamp_millis();
    now.saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64)
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    from_ms(ms)
}

fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(corrupt(what))
}

pub(crate) fn parse_status(s: &str) -> Result<super::AccountStatus, StoreError> {
    s.parse().map_err(|detail| StoreError::Corrupt {
        what: "account status",
        detail,
    })
}

/// Implements every store trait for `$store` (a struct with `pool` and
/// `options` fields) over database `$db`.
macro_rules! sql_store {
    ($store:ident, $db:ty) => {
        use std::collections::HashSet;

        use chrono::{DateTime, Utc};
        use sqlx::{QueryBuilder, Row};

        use crate::store::backend::{
            cutoff_ms, decompress, ms, normalize_message_id, parse_json, parse_status, prepare,
            time, Prepared, CONTENT_CHUNK, RCPT_CHUNK, REPORT_CHUNK,
        };
        use crate::store::model::*;
        use crate::store::{
            query_err, AccountStore, AuditLog, Counters, LearnedVerdicts, Outbox, ReportStore,
            StoreError, UnblockRequest,
        };

        fn account_row(row: &<$db as sqlx::Database>::Row) -> Result<AccountState, StoreError> {
            let status: String = row.try_get("status").map_err(query_err("account row"))?;
            Ok(AccountState {
                account: row.try_get("account").map_err(query_err("account row"))?,
                status: parse_status(&status)?,
                since: time(row.try_get("since").map_err(query_err("account row"))?),
                tier: row.try_get("tier").map_err(query_err("account row"))?,
                report_id: row.try_get("report_id").map_err(query_err("account row"))?,
                reason: row.try_get("reason").map_err(query_err("account row"))?,
                version: row.try_get("version").map_err(query_err("account row"))?,
            })
        }

        impl $store {
            /// One purge statement: `$1` is the cutoff, `$2` the batch size.
            async fn delete_batch(
                &self,
                sql: &'static str,
                what: &'static str,
                cutoff: i64,
                batch: i64,
            ) -> Result<u64, StoreError> {
                Ok(sqlx::query::<$db>(sql)
                    .bind(cutoff)
                    .bind(batch)
                    .execute(&self.pool)
                    .await
                    .map_err(query_err(what))?
                    .rows_affected())
            }
        }

        impl ReportStore for $store {
            async fn insert_reports(&self, reports: &[StoredReport]) -> Result<u64, StoreError> {
                if reports.is_empty() {
                    return Ok(0);
                }
                let rows = reports.iter().map(prepare).collect::<Result<Vec<Prepared>, _>>()?;
                let mut tx = self.pool.begin().await.map_err(query_err("begin"))?;
                let mut inserted: HashSet<String> = HashSet::new();
                for chunk in rows.chunks(REPORT_CHUNK) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO reports (id, created_at, account, client_ip, client_host, \
                         helo, auth_login, mail_from, rcpt_count, queue_id, hdr_from, hdr_to, \
                         subject, message_id, hdr_date, score, tier, action, total_us, envelope, \
                         report) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id.clone())
                            .push_bind(r.created_at)
                            .push_bind(r.account.clone())
                            .push_bind(r.client_ip.clone())
                            .push_bind(r.client_host.clone())
                            .push_bind(r.helo.clone())
                            .push_bind(r.auth_login.clone())
                            .push_bind(r.mail_from.clone())
                            .push_bind(r.rcpt_count)
                            .push_bind(r.queue_id.clone())
                            .push_bind(r.hdr_from.clone())
                            .push_bind(r.hdr_to.clone())
                            .push_bind(r.subject.clone())
                            .push_bind(r.message_id.clone())
                            .push_bind(r.hdr_date.clone())
                            .push_bind(r.score)
                            .push_bind(r.tier.clone())
                            .push_bind(r.action.clone())
                            .push_bind(r.total_us)
                            .push_bind(r.envelope.clone())
                            .push_bind(r.report.clone());
                    });
                    qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
                    let ids: Vec<String> = qb
                        .build_query_scalar()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(query_err("insert reports"))?;
                    inserted.extend(ids);
                }
                let fresh: Vec<&Prepared> =
                    rows.iter().filter(|r| inserted.contains(&r.id)).collect();
                let rcpts: Vec<(&str, &str, i64)> = fresh
                    .iter()
                    .flat_map(|r| r.rcpts.iter().map(|a| (r.id.as_str(), a.as_str(), r.created_at)))
                    .collect();
                for chunk in rcpts.chunks(RCPT_CHUNK) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO report_rcpts (report_id, rcpt, created_at) ",
                    );
                    qb.push_values(chunk, |mut b, (id, rcpt, at)| {
                        b.push_bind(id.to_string())
                            .push_bind(rcpt.to_string())
                            .push_bind(*at);
                    });
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(query_err("insert recipients"))?;
                }
                for chunk in fresh.chunks(CONTENT_CHUNK) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO report_content (report_id, created_at, compression, \
                         raw_size, data) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id.clone())
                            .push_bind(r.created_at)
                            .push_bind("zstd")
                            .push_bind(r.raw_size)
                            .push_bind(r.data.clone());
                    });
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(query_err("insert content"))?;
                }
                tx.commit().await.map_err(query_err("commit reports"))?;
                Ok(inserted.len() as u64)
            }

            async fn report(&self, id: &ReportId) -> Result<Option<ReportRecord>, StoreError> {
                let row = sqlx::query::<$db>(
                    "SELECT r.id, r.created_at, r.account, r.tier, r.action, r.envelope, \
                     r.report, COALESCE(c.raw_size, 0) AS raw_size \
                     FROM reports r LEFT JOIN report_content c ON c.report_id = r.id \
                     WHERE r.id = $1 AND r.created_at >= $2",
                )
                .bind(id.as_str().to_string())
                .bind(cutoff_ms(self.options.retention))
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("get report"))?;
                let Some(row) = row else { return Ok(None) };
                let e = query_err("report row");
                let envelope: String = row.try_get("envelope").map_err(query_err("report row"))?;
                let report: String = row.try_get("report").map_err(query_err("report row"))?;
                let raw_size: i64 = row.try_get("raw_size").map_err(query_err("report row"))?;
                Ok(Some(ReportRecord {
                    id: id.clone(),
                    created_at: time(row.try_get("created_at").map_err(query_err("report row"))?),
                    account: row.try_get("account").map_err(query_err("report row"))?,
                    tier: row.try_get("tier").map_err(query_err("report row"))?,
                    action: row.try_get("action").map_err(e)?,
                    envelope: parse_json("envelope", &envelope)?,
                    report: parse_json("report", &report)?,
                    content_size: raw_size.max(0) as u64,
                }))
            }

            async fn list_reports(
                &self,
                filter: &ReportFilter,
                limit: u32,
                after: Option<&Cursor>,
            ) -> Result<ReportPage, StoreError> {
                let limit = limit.clamp(1, 10_000);
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT id, created_at, account, client_ip, mail_from, rcpt_count, queue_id, \
                     subject, message_id, score, tier, action FROM reports WHERE created_at >= ",
                );
                let mut cutoff = cutoff_ms(self.options.retention);
                if let Some(since) = filter.since {
                    cutoff = cutoff.max(ms(since));
                }
                qb.push_bind(cutoff);
                if let Some(until) = filter.until {
                    qb.push(" AND created_at < ").push_bind(ms(until));
                }
                if let Some(account) = &filter.account {
                    qb.push(" AND account = ").push_bind(account.to_ascii_lowercase());
                }
                if let Some(tier) = &filter.tier {
                    qb.push(" AND tier = ").push_bind(tier.clone());
                }
                if let Some(action) = &filter.action {
                    qb.push(" AND action = ").push_bind(action.clone());
                }
                if let Some(min) = filter.min_score {
                    qb.push(" AND score >= ").push_bind(min);
                }
                if let Some(max) = filter.max_score {
                    qb.push(" AND score <= ").push_bind(max);
                }
                if let Some(queue_id) = &filter.queue_id {
                    qb.push(" AND queue_id = ").push_bind(queue_id.clone());
                }
                if let Some(message_id) = &filter.message_id {
                    qb.push(" AND message_id = ")
                        .push_bind(normalize_message_id(message_id));
                }
                if let Some(rcpt) = &filter.recipient {
                    qb.push(" AND id IN (SELECT report_id FROM report_rcpts WHERE rcpt = ")
                        .push_bind(rcpt.trim().to_ascii_lowercase())
                        .push(")");
                }
                if let Some(part) = &filter.account_contains {
                    // Accounts are stored in lower case.
                    qb.push(" AND account LIKE ")
                        .push_bind(crate::store::model::like_contains(&part.to_lowercase()))
                        .push(" ESCAPE '\\'");
                }
                if filter.by_score {
                    qb.push(" ORDER BY score DESC, created_at DESC, id DESC LIMIT ")
                        .push_bind(i64::from(limit));
                } else {
                    if let Some(c) = after {
                        qb.push(" AND (created_at, id) < (")
                            .push_bind(c.created_at_ms)
                            .push(", ")
                            .push_bind(c.id.clone())
                            .push(")");
                    }
                    qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                        .push_bind(i64::from(limit) + 1);
                }
                let rows = qb
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err("list reports"))?;
                let mut reports = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: String = row.try_get("id").map_err(query_err("list row"))?;
                    let rcpt_count: i64 =
                        row.try_get("rcpt_count").map_err(query_err("list row"))?;
                    reports.push(ReportSummary {
                        id: id.parse().map_err(|e: BadReportId| StoreError::Corrupt {
                            what: "report id",
                            detail: e.to_string(),
                        })?,
                        created_at: time(row.try_get("created_at").map_err(query_err("list row"))?),
                        account: row.try_get("account").map_err(query_err("list row"))?,
                        client_ip: row.try_get("client_ip").map_err(query_err("list row"))?,
                        mail_from: row.try_get("mail_from").map_err(query_err("list row"))?,
                        rcpt_count: rcpt_count.max(0) as u64,
                        queue_id: row.try_get("queue_id").map_err(query_err("list row"))?,
                        subject: row.try_get("subject").map_err(query_err("list row"))?,
                        message_id: row.try_get("message_id").map_err(query_err("list row"))?,
                        score: row.try_get("score").map_err(query_err("list row"))?,
                        tier: row.try_get("tier").map_err(query_err("list row"))?,
                        action: row.try_get("action").map_err(query_err("list row"))?,
                    });
                }
                let next = if reports.len() > limit as usize {
                    reports.truncate(limit as usize);
                    reports.last().map(|r| Cursor {
                        created_at_ms: ms(r.created_at),
                        id: r.id.as_str().to_string(),
                    })
                } else {
                    None
                };
                Ok(ReportPage { reports, next })
            }

            async fn content(&self, id: &ReportId) -> Result<Content, StoreError> {
                let row = sqlx::query::<$db>(
                    "SELECT created_at, compression, raw_size, data FROM report_content \
                     WHERE report_id = $1",
                )
                .bind(id.as_str().to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("get content"))?;
                let Some(row) = row else {
                    return Ok(Content::NotFound);
                };
                let created_at: i64 = row.try_get("created_at").map_err(query_err("content"))?;
                if created_at < cutoff_ms(self.options.retention) {
                    return Ok(Content::Expired);
                }
                let compression: String =
                    row.try_get("compression").map_err(query_err("content"))?;
                let raw_size: i64 = row.try_get("raw_size").map_err(query_err("content"))?;
                let data: Vec<u8> = row.try_get("data").map_err(query_err("content"))?;
                Ok(Content::Found(decompress(&data, &compression, raw_size)?))
            }

            async fn purge_reports_before(
                &self,
                cutoff: DateTime<Utc>,
                batch: u32,
            ) -> Result<PurgeStats, StoreError> {
                let cutoff = ms(cutoff);
                let batch = i64::from(batch.max(1));
                let mut stats = PurgeStats::default();
                // Bounded: every round deletes `batch` rows or ends the loop.
                loop {
                    let reports = self
                        .delete_batch(
                            "DELETE FROM reports WHERE id IN \
                             (SELECT id FROM reports WHERE created_at < $1 LIMIT $2)",
                            "purge reports",
                            cutoff,
                            batch,
                        )
                        .await?;
                    let content = self
                        .delete_batch(
                            "DELETE FROM report_content WHERE report_id IN \
                             (SELECT report_id FROM report_content WHERE created_at < $1 LIMIT $2)",
                            "purge content",
                            cutoff,
                            batch,
                        )
                        .await?;
                    let rcpts = self
                        .delete_batch(
                            "DELETE FROM report_rcpts WHERE report_id IN \
                             (SELECT report_id FROM report_rcpts WHERE created_at < $1 LIMIT $2)",
                            "purge recipients",
                            cutoff,
                            batch,
                        )
                        .await?;
                    // A verdict is learned after its report was received, so
                    // one learned before the cutoff belongs to a purged report.
                    let learned = self
                        .delete_batch(
                            "DELETE FROM learned WHERE report_id IN \
                             (SELECT report_id FROM learned WHERE learned_at < $1 LIMIT $2)",
                            "purge learned",
                            cutoff,
                            batch,
                        )
                        .await?;
                    stats.reports += reports;
                    stats.batches += 1;
                    let b = batch as u64;
                    if reports < b && content < b && rcpts < b && learned < b {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Ok(stats)
            }

            async fn count_reports(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar::<$db, i64>("SELECT COUNT(*) FROM reports")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(query_err("count reports"))?;
                Ok(n.max(0) as u64)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query::<$db>("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(query_err("ping"))?;
                Ok(())
            }

            async fn ensure_schema(&self) -> Result<(), StoreError> {
                self.migrate().await
            }
        }

        impl AccountStore for $store {
            async fn account_state(
                &self,
                account: &str,
            ) -> Result<Option<AccountState>, StoreError> {
                let row = sqlx::query::<$db>(
                    "SELECT account, status, since, tier, report_id, reason, version \
                     FROM account_state WHERE account = $1",
                )
                .bind(account.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("account state"))?;
                row.as_ref().map(account_row).transpose()
            }

            async fn set_account_state(
                &self,
                change: &AccountChange,
            ) -> Result<AccountState, StoreError> {
                let at = ms(change.at);
                let row = sqlx::query::<$db>(
                    "INSERT INTO account_state (account, status, since, tier, report_id, \
                     reason, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $3, 1) \
                     ON CONFLICT (account) DO UPDATE SET status = excluded.status, \
                     since = CASE WHEN account_state.status = excluded.status \
                       THEN account_state.since ELSE excluded.since END, \
                     tier = excluded.tier, report_id = excluded.report_id, \
                     reason = excluded.reason, updated_at = excluded.updated_at, \
                     version = account_state.version + 1 \
                     RETURNING account, status, since, tier, report_id, reason, version",
                )
                .bind(change.account.to_ascii_lowercase())
                .bind(change.status.as_str())
                .bind(at)
                .bind(change.tier.clone())
                .bind(change.report_id.clone())
                .bind(change.reason.clone())
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("set account state"))?;
                account_row(&row)
            }

            async fn unblock(
                &self,
                request: &UnblockRequest,
            ) -> Result<Option<AccountState>, StoreError> {
                let account = request.account.to_ascii_lowercase();
                let Some(current) = self.account_state(&account).await? else {
                    return Ok(None);
                };
                if !current.status.is_blocked() {
                    return Ok(None);
                }
                let at = ms(request.at);
                let mut tx = self.pool.begin().await.map_err(query_err("begin"))?;
                // Optimistic: the version check refuses a concurrent change.
                let row = sqlx::query::<$db>(
                    "UPDATE account_state SET status = 'active', since = $3, tier = NULL, \
                     report_id = NULL, reason = $4, updated_at = $3, version = version + 1 \
                     WHERE account = $1 AND version = $2 \
                     RETURNING account, status, since, tier, report_id, reason, version",
                )
                .bind(account.clone())
                .bind(current.version)
                .bind(at)
                .bind(request.reason.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("unblock"))?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict { account });
                };
                let state = account_row(&row)?;
                sqlx::query::<$db>(
                    "INSERT INTO account_unblocks (account, at, by_whom, self_service, \
                     previous, reason) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(account.clone())
                .bind(at)
                .bind(request.by.clone())
                .bind(request.self_service)
                .bind(current.status.as_str())
                .bind(request.reason.clone())
                .execute(&mut *tx)
                .await
                .map_err(query_err("record unblock"))?;
                tx.commit().await.map_err(query_err("commit unblock"))?;
                Ok(Some(state))
            }

            async fn unblock_history(&self, account: &str) -> Result<Vec<Unblock>, StoreError> {
                let rows = sqlx::query::<$db>(
                    "SELECT account, at, by_whom, self_service, previous, reason \
                     FROM account_unblocks WHERE account = $1 ORDER BY at DESC, id DESC",
                )
                .bind(account.to_ascii_lowercase())
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("unblock history"))?;
                rows.iter()
                    .map(|row| {
                        let previous: String =
                            row.try_get("previous").map_err(query_err("unblock row"))?;
                        Ok(Unblock {
                            account: row.try_get("account").map_err(query_err("unblock row"))?,
                            at: time(row.try_get("at").map_err(query_err("unblock row"))?),
                            by: row.try_get("by_whom").map_err(query_err("unblock row"))?,
                            self_service: row
                                .try_get("self_service")
                                .map_err(query_err("unblock row"))?,
                            previous: parse_status(&previous)?,
                            reason: row.try_get("reason").map_err(query_err("unblock row"))?,
                        })
                    })
                    .collect()
            }

            async fn blocked_accounts(&self, limit: u32) -> Result<Vec<AccountState>, StoreError> {
                let rows = sqlx::query::<$db>(
                    "SELECT account, status, since, tier, report_id, reason, version \
                     FROM account_state WHERE status <> 'active' \
                     ORDER BY since DESC, account LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("blocked accounts"))?;
                rows.iter().map(account_row).collect()
            }
        }

        impl AuditLog for $store {
            async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
                sqlx::query_scalar::<$db, i64>(
                    "INSERT INTO audit_log (at, actor, account, action, detail) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(ms(entry.at))
                .bind(entry.actor.clone())
                .bind(entry.account.as_deref().map(str::to_ascii_lowercase))
                .bind(entry.action.clone())
                .bind(entry.detail.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("audit"))
            }

            async fn audit_entries(
                &self,
                account: Option<&str>,
                limit: u32,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT id, at, actor, account, action, detail FROM audit_log",
                );
                if let Some(account) = account {
                    qb.push(" WHERE account = ").push_bind(account.to_ascii_lowercase());
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                let rows = qb
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err("audit entries"))?;
                rows.iter()
                    .map(|row| {
                        let detail: String = row.try_get("detail").map_err(query_err("audit row"))?;
                        Ok(AuditRecord {
                            id: row.try_get("id").map_err(query_err("audit row"))?,
                            entry: AuditEntry {
                                at: time(row.try_get("at").map_err(query_err("audit row"))?),
                                actor: row.try_get("actor").map_err(query_err("audit row"))?,
                                account: row.try_get("account").map_err(query_err("audit row"))?,
                                action: row.try_get("action").map_err(query_err("audit row"))?,
                                detail: parse_json("audit detail", &detail)?,
                            },
                        })
                    })
                    .collect()
            }

            async fn purge_audit_before(
                &self,
                cutoff: DateTime<Utc>,
                batch: u32,
            ) -> Result<u64, StoreError> {
                let cutoff = ms(cutoff);
                let batch = i64::from(batch.max(1));
                let mut total = 0;
                loop {
                    let audit = self
                        .delete_batch(
                            "DELETE FROM audit_log WHERE id IN \
                             (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
                            "purge audit",
                            cutoff,
                            batch,
                        )
                        .await?;
                    let unblocks = self
                        .delete_batch(
                            "DELETE FROM account_unblocks WHERE id IN \
                             (SELECT id FROM account_unblocks WHERE at < $1 LIMIT $2)",
                            "purge unblocks",
                            cutoff,
                            batch,
                        )
                        .await?;
                    total += audit + unblocks;
                    if audit < batch as u64 && unblocks < batch as u64 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Ok(total)
            }
        }

        impl LearnedVerdicts for $store {
            async fn learned(&self, id: &ReportId) -> Result<Option<LearnedVerdict>, StoreError> {
                let row = sqlx::query::<$db>(
                    "SELECT verdict, actor, reason, learned_at FROM learned WHERE report_id = $1",
                )
                .bind(id.as_str().to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("get learned"))?;
                let Some(row) = row else { return Ok(None) };
                let verdict: String = row.try_get("verdict").map_err(query_err("learned row"))?;
                Ok(Some(LearnedVerdict {
                    report_id: id.clone(),
                    verdict: verdict.parse().map_err(|detail| StoreError::Corrupt {
                        what: "learned verdict",
                        detail,
                    })?,
                    actor: row.try_get("actor").map_err(query_err("learned row"))?,
                    reason: row.try_get("reason").map_err(query_err("learned row"))?,
                    at: time(row.try_get("learned_at").map_err(query_err("learned row"))?),
                }))
            }

            async fn record_learned(&self, v: &LearnedVerdict) -> Result<(), StoreError> {
                sqlx::query::<$db>(
                    "INSERT INTO learned (report_id, verdict, actor, reason, learned_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (report_id) DO UPDATE SET \
                     verdict = excluded.verdict, actor = excluded.actor, \
                     reason = excluded.reason, learned_at = excluded.learned_at",
                )
                .bind(v.report_id.as_str().to_string())
                .bind(v.verdict.as_str())
                .bind(v.actor.clone())
                .bind(v.reason.clone())
                .bind(ms(v.at))
                .execute(&self.pool)
                .await
                .map_err(query_err("record learned"))?;
                Ok(())
            }
        }

        impl Outbox for $store {
            async fn enqueue(
                &self,
                kind: &str,
                payload: &serde_json::Value,
                at: DateTime<Utc>,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar::<$db, i64>(
                    "INSERT INTO outbox (created_at, kind, payload, attempts, next_attempt_at, \
                     locked_until) VALUES ($1, $2, $3, 0, $1, 0) RETURNING id",
                )
                .bind(ms(at))
                .bind(kind.to_string())
                .bind(payload.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("enqueue"))
            }

            async fn claim_due(
                &self,
                now: DateTime<Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<OutboxItem>, StoreError> {
                let now = ms(now);
                let until = now.saturating_add(lease.as_millis().min(i64::MAX as u128) as i64);
                // The conditions are repeated outside the sub-select so a row
                // another relay claimed meanwhile is re-checked and skipped.
                let rows = sqlx::query::<$db>(
                    "UPDATE outbox SET locked_until = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM outbox WHERE done_at IS NULL \
                       AND next_attempt_at <= $1 AND locked_until <= $1 ORDER BY id LIMIT $3) \
                     AND done_at IS NULL AND locked_until <= $1 \
                     RETURNING id, created_at, kind, payload, attempts, last_error",
                )
                .bind(now)
                .bind(until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("claim outbox"))?;
                let mut items = rows
                    .iter()
                    .map(|row| {
                        let payload: String =
                            row.try_get("payload").map_err(query_err("outbox row"))?;
                        Ok(OutboxItem {
                            id: row.try_get("id").map_err(query_err("outbox row"))?,
                            created_at: time(
                                row.try_get("created_at").map_err(query_err("outbox row"))?,
                            ),
                            kind: row.try_get("kind").map_err(query_err("outbox row"))?,
                            payload: parse_json("outbox payload", &payload)?,
                            attempts: row.try_get("attempts").map_err(query_err("outbox row"))?,
                            last_error: row
                                .try_get("last_error")
                                .map_err(query_err("outbox row"))?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                items.sort_by_key(|i| i.id);
                Ok(items)
            }

            async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query::<$db>("UPDATE outbox SET done_at = $2, locked_until = 0 WHERE id = $1")
                    .bind(id)
                    .bind(ms(at))
                    .execute(&self.pool)
                    .await
                    .map_err(query_err("outbox delivered"))?;
                Ok(())
            }

            async fn mark_failed(
                &self,
                id: i64,
                error: &str,
                next_attempt: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query::<$db>(
                    "UPDATE outbox SET last_error = $2, next_attempt_at = $3, locked_until = 0 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(error.to_string())
                .bind(ms(next_attempt))
                .execute(&self.pool)
                .await
                .map_err(query_err("outbox failed"))?;
                Ok(())
            }

            async fn outbox_pending(&self) -> Result<u64, StoreError> {
                let n = sqlx::query_scalar::<$db, i64>(
                    "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("outbox pending"))?;
                Ok(n.max(0) as u64)
            }
        }

        impl Counters for $store {
            async fn add_count(
                &self,
                key: &str,
                window_start: i64,
                n: i64,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar::<$db, i64>(
                    "INSERT INTO counters (key, window_start, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (key, window_start) \
                     DO UPDATE SET count = counters.count + excluded.count RETURNING count",
                )
                .bind(key.to_string())
                .bind(window_start)
                .bind(n)
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("add count"))
            }

            async fn count(&self, key: &str, window_start: i64) -> Result<i64, StoreError> {
                let n = sqlx::query_scalar::<$db, i64>(
                    "SELECT count FROM counters WHERE key = $1 AND window_start = $2",
                )
                .bind(key.to_string())
                .bind(window_start)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("count"))?;
                Ok(n.unwrap_or(0))
            }

            async fn add_member(
                &self,
                key: &str,
                window_start: i64,
                member: &str,
            ) -> Result<(bool, i64), StoreError> {
                let added = sqlx::query::<$db>(
                    "INSERT INTO counter_members (key, window_start, member) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(key.to_string())
                .bind(window_start)
                .bind(member.to_string())
                .execute(&self.pool)
                .await
                .map_err(query_err("add member"))?
                .rows_affected()
                    == 1;
                let n = sqlx::query_scalar::<$db, i64>(
                    "SELECT COUNT(*) FROM counter_members WHERE key = $1 AND window_start = $2",
                )
                .bind(key.to_string())
                .bind(window_start)
                .fetch_one(&self.pool)
                .await
                .map_err(query_err("count members"))?;
                Ok((added, n))
            }

            async fn purge_counters_before(&self, window_start: i64) -> Result<u64, StoreError> {
                let a = sqlx::query::<$db>("DELETE FROM counters WHERE window_start < $1")
                    .bind(window_start)
                    .execute(&self.pool)
                    .await
                    .map_err(query_err("purge counters"))?
                    .rows_affected();
                let b = sqlx::query::<$db>("DELETE FROM counter_members WHERE window_start < $1")
                    .bind(window_start)
                    .execute(&self.pool)
                    .await
                    .map_err(query_err("purge members"))?
                    .rows_affected();
                Ok(a + b)
            }
        }
    };
}

pub(crate) use sql_store;
