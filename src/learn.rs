//! Learning from verdicts: a reviewer marks a stored report as spam or ham
//! and the content classifier learns that message. The service loads the
//! report's content from the store (within retention only), updates a copy
//! of the model in force (`<data_dir>/model.bin`, else the built-in one),
//! saves it atomically, records the verdict in the store and swaps the new
//! model into the running pipeline. A verdict is learned once per report; the
//! opposite verdict first takes the earlier counts back. Every learn is
//! audited.
//!
//! Learns are serialised: within one process by a mutex, across processes
//! (the daemon and `outscore learn` / `outscore model import` on the same
//! data dir) by an advisory lock on `<data_dir>/model.lock`. The model file
//! is the source of truth: each learn starts from what is on disk, so a
//! learn by the command line is never overwritten by the daemon.
//!
//! It knows the store traits, the classifier and the pipeline; no HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::classifier::{self, Classifier, Model, ModelError, ModelStats, MODEL_FILE};
use crate::pipeline::Pipeline;
use crate::store::{
    AuditEntry, AuditLog, Content, Label, LearnedVerdict, LearnedVerdicts, ReportId, ReportStore,
    StoreError,
};

/// The lock file beside the model that serialises writers across processes.
pub const LOCK_FILE: &str = "model.lock";

/// A reviewer's verdict on a stored report.
#[derive(Debug, Clone)]
pub struct LearnRequest {
    pub report_id: ReportId,
    pub verdict: Label,
    /// Who decided (review user, or the command line's `--by`).
    pub actor: String,
    pub reason: String,
}

/// What a learn did.
#[derive(Debug, Clone, Serialize)]
pub struct Learned {
    pub report_id: ReportId,
    pub verdict: Label,
    /// The earlier verdict whose counts were taken back first, if any.
    pub reversed: Option<Label>,
    /// The message's spam probability before and after; `None` while the
    /// model has learned too few messages to classify.
    pub probability_before: Option<f64>,
    pub probability: Option<f64>,
    pub spam_messages: u64,
    pub ham_messages: u64,
    /// The model file written.
    pub model_path: PathBuf,
    /// Whether a running pipeline uses the new model already (otherwise the
    /// daemon picks it up on SIGHUP).
    pub in_use: bool,
}

/// Why a report was not learned.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("a reason is required")]
    NoReason,
    #[error("no report {0}")]
    Unknown(ReportId),
    #[error("report {0} is past retention: its content is no longer kept")]
    Expired(ReportId),
    #[error("report {0} has no stored content to learn from")]
    NoContent(ReportId),
    #[error("report {} was already learned as {} by {} at {}", .0.report_id, .0.verdict, .0.actor, .0.at.format("%Y-%m-%d %H:%M:%S UTC"))]
    AlreadyLearned(Box<LearnedVerdict>),
    #[error("report {0}: the stored content is not a message the classifier can read")]
    NotAMessage(ReportId),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the model update stopped: {0}")]
    Task(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LearnError {
    /// A short stable name for API clients and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            LearnError::NoReason => "reason_required",
            LearnError::Unknown(_) | LearnError::NoContent(_) => "unknown_report",
            LearnError::Expired(_) => "past_retention",
            LearnError::AlreadyLearned(_) => "already_learned",
            LearnError::NotAMessage(_) => "not_a_message",
            LearnError::Lock { .. } | LearnError::Task(_) | LearnError::Model(_) => "model_error",
            LearnError::Store(_) => "store_error",
        }
    }
}

/// Teaches the classifier from reports kept in `S`.
pub struct Learner<S> {
    store: S,
    data_dir: PathBuf,
    pipeline: Option<Arc<Pipeline>>,
    serial: tokio::sync::Mutex<()>,
}

impl<S> Learner<S>
where
    S: ReportStore + LearnedVerdicts + AuditLog,
{
    /// A learner writing `<data_dir>/model.bin`; without a pipeline (the
    /// command line) the daemon picks the model up on SIGHUP.
    pub fn new(store: S, data_dir: impl Into<PathBuf>) -> Learner<S> {
        Learner {
            store,
            data_dir: data_dir.into(),
            pipeline: None,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Swap every learned model into this running pipeline.
    pub fn with_pipeline(mut self, pipeline: Arc<Pipeline>) -> Learner<S> {
        self.pipeline = Some(pipeline);
        self
    }

    pub fn model_path(&self) -> PathBuf {
        self.data_dir.join(MODEL_FILE)
    }

    /// The verdict a report was learned with, if any.
    pub async fn learned(&self, id: &ReportId) -> Result<Option<LearnedVerdict>, StoreError> {
        self.store.learned(id).await
    }

    /// Learn one report (see the module documentation).
    pub async fn learn(&self, req: &LearnRequest) -> Result<Learned, LearnError> {
        let reason = req.reason.trim();
        if reason.is_empty() {
            return Err(LearnError::NoReason);
        }
        let id = &req.report_id;
        let _serial = self.serial.lock().await;
        let _lock = lock_data_dir(&self.data_dir).await?;

        let record = self.store.report(id).await?;
        let raw = match self.store.content(id).await? {
            Content::Found(raw) if record.is_some() => raw,
            Content::Expired => return Err(LearnError::Expired(id.clone())),
            // The report row is past retention although the content row
            // has not been purged yet (or is missing): same answer as for
            // the report itself.
            Content::Found(_) | Content::NotFound if record.is_none() => {
                return Err(LearnError::Unknown(id.clone()))
            }
            Content::Found(_) | Content::NotFound => return Err(LearnError::NoContent(id.clone())),
        };
        let account = record.and_then(|r| r.account);

        let earlier = self.store.learned(id).await?;
        if let Some(earlier) = earlier.as_ref().filter(|e| e.verdict == req.verdict) {
            self.audit(
                &req.actor,
                account.clone(),
                "learn_refused",
                json!({"report_id": id, "verdict": req.verdict, "reason": reason,
                       "why": "already_learned", "learned_by": earlier.actor}),
            )
            .await;
            return Err(LearnError::AlreadyLearned(Box::new(earlier.clone())));
        }
        let reversed = earlier.map(|e| e.verdict);

        let data_dir = self.data_dir.clone();
        let verdict = req.verdict;
        let update =
            tokio::task::spawn_blocking(move || update_model(&data_dir, &raw, verdict, reversed))
                .await
                .map_err(|e| LearnError::Task(e.to_string()))?;
        let update = update.map_err(|e| match e {
            UpdateError::NotAMessage => LearnError::NotAMessage(id.clone()),
            UpdateError::Model(e) => LearnError::Model(e),
        })?;

        let entry = LearnedVerdict {
            report_id: id.clone(),
            verdict,
            actor: req.actor.clone(),
            reason: reason.to_string(),
            at: Utc::now(),
        };
        if let Err(e) = self.store.record_learned(&entry).await {
            // Put the previous model back so the file and the store agree.
            let path = self.model_path();
            let previous = update.previous;
            let restored =
                tokio::task::spawn_blocking(move || restore(&path, previous.as_ref())).await;
            if !matches!(restored, Ok(Ok(()))) {
                tracing::error!(report = %id, "learn: the verdict could not be recorded and the previous model could not be restored");
            }
            return Err(e.into());
        }

        let stats = update.classifier.model().stats();
        let in_use = match &self.pipeline {
            Some(p) => {
                p.replace_classifier(update.classifier);
                true
            }
            None => false,
        };
        self.audit(
            &req.actor,
            account,
            "learn",
            json!({"report_id": id, "verdict": verdict, "reason": reason,
                   "reversed": reversed, "probability": update.after,
                   "probability_before": update.before}),
        )
        .await;
        crate::telemetry::CLASSIFIER_LEARNED.incr();
        tracing::info!(actor = %req.actor, report = %id, verdict = %verdict,
            reversed = ?reversed, probability = ?update.after, "classifier learned a verdict");
        Ok(Learned {
            report_id: id.clone(),
            verdict,
            reversed,
            probability_before: update.before,
            probability: update.after,
            spam_messages: stats.spam_messages,
            ham_messages: stats.ham_messages,
            model_path: self.model_path(),
            in_use,
        })
    }

    /// The learn already took effect; an audit write that fails is logged
    /// with everything it would have said rather than undoing the learn.
    async fn audit(
        &self,
        actor: &str,
        account: Option<String>,
        action: &str,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            at: Utc::now(),
            actor: actor.to_string(),
            account,
            action: action.to_string(),
            detail,
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::error!(error = %e, actor, action, detail = %entry.detail,
                "learn: cannot write the audit entry");
        }
    }
}

/// The model after one learn, and the one it replaced on disk.
struct Update {
    classifier: Classifier,
    /// `None` when no model file existed (the built-in model was in force).
    previous: Option<Model>,
    before: Option<f64>,
    after: Option<f64>,
}

enum UpdateError {
    NotAMessage,
    Model(ModelError),
}

/// Load the model in force, take back `reversed`, learn `verdict`, save.
fn update_model(
    data_dir: &Path,
    raw: &[u8],
    verdict: Label,
    reversed: Option<Label>,
) -> Result<Update, UpdateError> {
    let (model, source) = classifier::load_model(data_dir).map_err(UpdateError::Model)?;
    let previous = matches!(source, classifier::ModelSource::File(_)).then(|| model.clone());
    let mut c = Classifier::new(model);
    let before = c.classify(raw).map(|v| v.probability);
    if let Some(earlier) = reversed {
        if !c.forget(raw, earlier.is_spam()) {
            return Err(UpdateError::NotAMessage);
        }
    }
    if !c.learn(raw, verdict.is_spam()) {
        return Err(UpdateError::NotAMessage);
    }
    let after = c.classify(raw).map(|v| v.probability);
    c.model()
        .save(&data_dir.join(MODEL_FILE))
        .map_err(UpdateError::Model)?;
    Ok(Update {
        classifier: c,
        previous,
        before,
        after,
    })
}

fn restore(path: &Path, previous: Option<&Model>) -> Result<(), ModelError> {
    match previous {
        Some(m) => m.save(path),
        None => std::fs::remove_file(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Holds the data dir's model lock until dropped.
pub struct ModelLock {
    _file: std::fs::File,
}

/// Take the model lock of `data_dir` (waiting for another process that
/// holds it), creating the directory if needed.
pub fn lock_data_dir_blocking(data_dir: &Path) -> Result<ModelLock, LearnError> {
    let path = data_dir.join(LOCK_FILE);
    let err = |source| LearnError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(ModelLock { _file: file })
}

async fn lock_data_dir(data_dir: &Path) -> Result<ModelLock, LearnError> {
    let dir = data_dir.to_path_buf();
    let path = dir.join(LOCK_FILE);
    tokio::task::spawn_blocking(move || lock_data_dir_blocking(&dir))
        .await
        .map_err(|e| LearnError::Lock {
            path,
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Write the model in force in `data_dir` (its file, else the built-in
/// one) to `dest`, atomically. Returns its counts.
pub fn export_model(data_dir: &Path, dest: &Path) -> Result<ModelStats, ModelError> {
    let (model, _) = classifier::load_model(data_dir)?;
    model.save(dest)?;
    Ok(model.stats())
}

/// Why a model file was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable model ({source}); the model in force is unchanged")]
    Invalid { path: PathBuf, source: ModelError },
    #[error(transparent)]
    Lock(#[from] LearnError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Validate a model file and install it as `<data_dir>/model.bin`
/// atomically (under the model lock). A damaged file changes nothing.
pub fn import_model(data_dir: &Path, src: &Path) -> Result<ModelStats, ImportError> {
    let data = std::fs::read(src).map_err(|source| ImportError::Read {
        path: src.to_path_buf(),
        source,
    })?;
    let model = Model::from_bytes(&data).map_err(|source| ImportError::Invalid {
        path: src.to_path_buf(),
        source,
    })?;
    let _lock = lock_data_dir_blocking(data_dir)?;
    model.save(&data_dir.join(MODEL_FILE))?;
    Ok(model.stats())
}
