//! The notification outbox: a queue that survives restarts. The trait is
//! what the worker needs; [`FileOutbox`] keeps it in an append-only JSONL
//! journal (fsynced on every change) for set-ups without a database outbox.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A notification waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// `webhook`, `command` or `email`.
    pub kind: String,
    pub payload: serde_json::Value,
    /// Deliveries tried so far, this claim included.
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Why the outbox could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox {path}:{line}: {detail}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("outbox: {0}")]
    Backend(String),
}

/// A persistent queue of notifications, claimed with a lease.
pub trait OutboxQueue: Send + Sync {
    fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, OutboxError>> + Send;
    /// Claim up to `limit` due items for `lease`; each claim counts an attempt.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxItem>, OutboxError>> + Send;
    fn mark_delivered(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;
    /// Release a claimed item for another try at `next_attempt`.
    fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;
    /// Items not yet delivered.
    fn pending(&self) -> impl Future<Output = Result<u64, OutboxError>> + Send;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Add {
        id: i64,
        created_at: DateTime<Utc>,
        kind: String,
        payload: serde_json::Value,
    },
    Attempt {
        id: i64,
        attempts: i64,
        locked_until: DateTime<Utc>,
    },
    Done {
        id: i64,
        at: DateTime<Utc>,
    },
    Failed {
        id: i64,
        error: String,
        next_attempt: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    item: OutboxItem,
    next_attempt: DateTime<Utc>,
    locked_until: DateTime<Utc>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    next_id: i64,
    pending: BTreeMap<i64, Pending>,
    records: usize,
}

/// The outbox as a JSONL journal. One process owns the file.
#[derive(Debug)]
pub struct FileOutbox {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl FileOutbox {
    /// Open (creating) the journal and replay it; compacts it to the items
    /// still pending.
    pub fn open(path: &Path) -> Result<FileOutbox, OutboxError> {
        let io = |source| OutboxError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
        let mut next_id = 1;
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: Record = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    // A torn last line after a crash: the change it
                    // described never completed.
                    Err(e) if e.is_eof() => break,
                    Err(e) => {
                        return Err(OutboxError::Corrupt {
                            path: path.to_path_buf(),
                            line: n + 1,
                            detail: e.to_string(),
                        })
                    }
                };
                apply(&mut pending, &mut next_id, record);
            }
        }
        // Compact: rewrite the pending items only, then swap atomically.
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut out = File::create(&tmp).map_err(io)?;
            for p in pending.values() {
                let mut records = vec![Record::Add {
                    id: p.item.id,
                    created_at: p.item.created_at,
                    kind: p.item.kind.clone(),
                    payload: p.item.payload.clone(),
                }];
                if p.item.attempts > 0 {
                    records.push(Record::Attempt {
                        id: p.item.id,
                        attempts: p.item.attempts,
                        locked_until: DateTime::<Utc>::MIN_UTC,
                    });
                }
                if let Some(e) = &p.item.last_error {
                    records.push(Record::Failed {
                        id: p.item.id,
                        error: e.clone(),
                        next_attempt: p.next_attempt,
                    });
                }
                for r in records {
                    writeln!(out, "{}", serde_json::to_string(&r).expect("json")).map_err(io)?;
                }
            }
            out.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        // Leases do not survive a restart: everything pending is due.
        for p in pending.values_mut() {
            p.locked_until = DateTime::<Utc>::MIN_UTC;
        }
        Ok(FileOutbox {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                next_id,
                records: pending.len(),
                pending,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, inner: &mut Inner, record: &Record) -> Result<(), OutboxError> {
        let io = |source| OutboxError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        inner.file.write_all(line.as_bytes()).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        inner.records += 1;
        Ok(())
    }
}

fn apply(pending: &mut BTreeMap<i64, Pending>, next_id: &mut i64, record: Record) {
    match record {
        Record::Add {
            id,
            created_at,
            kind,
            payload,
        } => {
            *next_id = (*next_id).max(id + 1);
            pending.insert(
                id,
                Pending {
                    item: OutboxItem {
                        id,
                        created_at,
                        kind,
                        payload,
                        attempts: 0,
                        last_error: None,
                    },
                    next_attempt: created_at,
                    locked_until: DateTime::<Utc>::MIN_UTC,
                },
            );
        }
        Record::Attempt {
            id,
            attempts,
            locked_until,
        } => {
            if let Some(p) = pending.get_mut(&id) {
                p.item.attempts = attempts;
                p.locked_until = locked_until;
            }
        }
        Record::Done { id, .. } => {
            pending.remove(&id);
        }
        Record::Failed {
            id,
            error,
            next_attempt,
        } => {
            if let Some(p) = pending.get_mut(&id) {
                p.item.last_error = Some(error);
                p.next_attempt = next_attempt;
                p.locked_until = DateTime::<Utc>::MIN_UTC;
            }
        }
    }
}

impl OutboxQueue for FileOutbox {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<i64, OutboxError> {
        let mut inner = self.inner.lock().expect("outbox lock");
        let id = inner.next_id;
        let record = Record::Add {
            id,
            created_at: at,
            kind: kind.to_string(),
            payload: payload.clone(),
        };
        self.write(&mut inner, &record)?;
        inner.next_id += 1;
        let mut next = inner.next_id;
        apply(&mut inner.pending, &mut next, record);
        Ok(id)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, OutboxError> {
        let mut inner = self.inner.lock().expect("outbox lock");
        let due: Vec<i64> = inner
            .pending
            .values()
            .filter(|p| p.next_attempt <= now && p.locked_until <= now)
            .take(limit as usize)
            .map(|p| p.item.id)
            .collect();
        let locked_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let mut claimed = Vec::new();
        for id in due {
            let attempts = inner.pending[&id].item.attempts + 1;
            let record = Record::Attempt {
                id,
                attempts,
                locked_until,
            };
            self.write(&mut inner, &record)?;
            let mut next = inner.next_id;
            apply(&mut inner.pending, &mut next, record);
            claimed.push(inner.pending[&id].item.clone());
        }
        Ok(claimed)
    }

    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), OutboxError> {
        let mut inner = self.inner.lock().expect("outbox lock");
        let record = Record::Done { id, at };
        self.write(&mut inner, &record)?;
        let mut next = inner.next_id;
        apply(&mut inner.pending, &mut next, record);
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let mut inner = self.inner.lock().expect("outbox lock");
        let record = Record::Failed {
            id,
            error: error.to_string(),
            next_attempt,
        };
        self.write(&mut inner, &record)?;
        let mut next = inner.next_id;
        apply(&mut inner.pending, &mut next, record);
        Ok(())
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        Ok(self.inner.lock().expect("outbox lock").pending.len() as u64)
    }
}
