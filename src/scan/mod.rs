//! Offline corpus scoring (`outscore scan`): find labelled messages, score
//! them in parallel through the daemon's own engine and verdict, summarise the
//! accuracy and compare it with a saved baseline. Reads files; knows no
//! sockets, milter sessions or store.
//!
//! ```text
//! inputs ─▶ input::collect ─▶ [Item] ─▶ Scanner::score (threads) ─▶ [Outcome]
//!                                                     │
//!                       summary::Summary ◀────────────┤
//!                       baseline::compare ◀───────────┘
//! ```

pub mod baseline;
pub mod input;
pub mod output;
pub mod progress;
pub mod summary;

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::classifier::Classifier;
use crate::envelope::Envelope;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::policy::{History, Scored, TierTable};
use crate::scoring::{Engine, ScanReport};
use crate::smtp::{Decision, EomVerdict};

pub use baseline::{Baseline, Comparison};
pub use input::{collect, Item, Label};
pub use summary::Summary;

/// Why a scan could not do its job (bad inputs, unreadable files).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Input(Vec<String>),
    #[error("baseline {path}: {message}")]
    Baseline { path: String, message: String },
}

impl ScanError {
    pub fn io(path: &Path, source: std::io::Error) -> ScanError {
        ScanError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What the daemon would have done with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Reject,
    Tempfail,
    Discard,
    Quarantine,
}

impl Action {
    fn of(verdict: &EomVerdict) -> Action {
        match &verdict.decision {
            Decision::Reject => Action::Reject,
            Decision::Tempfail => Action::Tempfail,
            Decision::Reply(reply) if reply.code() < 500 => Action::Tempfail,
            Decision::Reply(_) => Action::Reject,
            Decision::Discard => Action::Discard,
            Decision::Accept | Decision::Continue if verdict.quarantine.is_some() => {
                Action::Quarantine
            }
            Decision::Accept | Decision::Continue => Action::Accept,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
            Action::Discard => "discard",
            Action::Quarantine => "quarantine",
        }
    }
}

/// One symbol in a scan line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolHit {
    pub name: String,
    pub score: f64,
    pub evidence: Vec<String>,
}

/// The envelope facts a scan line shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeShown {
    pub login: Option<String>,
    pub mail_from: String,
    pub client_ip: Option<IpAddr>,
    pub rcpts: Vec<String>,
    pub local: bool,
}

impl EnvelopeShown {
    fn of(envelope: &Envelope) -> EnvelopeShown {
        EnvelopeShown {
            login: envelope.auth_login.clone(),
            mail_from: envelope.mail_from.clone(),
            client_ip: envelope.client.addr,
            rcpts: envelope.rcpts.clone(),
            local: envelope.local_submission,
        }
    }
}

/// The result of scoring one corpus message: one `--format jsonl` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub path: String,
    pub id: String,
    pub label: Option<Label>,
    pub score: f64,
    /// L-SPAM tier a first offence gets (no account history offline).
    pub tier: Option<String>,
    pub action: Action,
    pub symbols: Vec<SymbolHit>,
    /// The envelope the message was scored with (sidecar, manifest or headers).
    pub envelope: EnvelopeShown,
    pub size: u64,
    /// Time spent scoring (not reading) the message.
    pub scan_us: u64,
    /// Set when the message could not be read or scoring panicked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Outcome {
    /// The line for a message before (or instead of) scoring it.
    fn unscored(item: &Item, error: Option<String>) -> Outcome {
        Outcome {
            path: item.path.clone(),
            id: item.id.clone(),
            label: item.label,
            score: 0.0,
            tier: None,
            action: Action::Accept,
            symbols: Vec::new(),
            envelope: EnvelopeShown::default(),
            size: 0,
            scan_us: 0,
            error,
        }
    }

    /// At or above the first tier: what the detection and false-positive
    /// rates count.
    pub fn flagged(&self) -> bool {
        self.tier.is_some() || !matches!(self.action, Action::Accept)
    }
}

/// Scores messages exactly as the daemon does: the same engine, then the
/// pipeline's verdict on its report.
pub struct Scanner {
    engine: Engine,
    pipeline: Pipeline,
    tiers: Option<TierTable>,
}

impl Scanner {
    pub fn new(engine: Engine) -> Scanner {
        let pipeline = Pipeline::new(
            engine.clone(),
            PipelineOptions {
                add_headers: false,
                header_prefix: "X-Outscore".into(),
            },
        );
        Scanner {
            engine,
            pipeline,
            tiers: None,
        }
    }

    /// Score content with the daemon's classifier model too.
    pub fn with_classifier(mut self, classifier: Classifier) -> Scanner {
        self.pipeline = self.pipeline.with_classifier(classifier);
        self
    }

    /// Name the tier each message would get as a first offence (an account
    /// with no history): the daemon's tier table with an empty history.
    pub fn with_tiers(mut self, tiers: TierTable) -> Scanner {
        self.tiers = Some(tiers);
        self
    }

    pub fn reject_score(&self) -> f64 {
        self.engine.reject_score()
    }

    /// Score one message. A read failure or a panic in the engine becomes an
    /// outcome with `error` set, so one bad file never stops a run.
    pub fn score(&self, item: &Item) -> Outcome {
        let mut outcome = Outcome::unscored(item, None);
        let raw = match item.bytes() {
            Ok(raw) => raw,
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        };
        outcome.size = raw.len() as u64;
        let envelope = item.facts.envelope(&raw);
        outcome.envelope = EnvelopeShown::of(&envelope);
        let started = Instant::now();
        let scored = catch_unwind(AssertUnwindSafe(|| {
            let report = self.pipeline.scan_content(&envelope, &raw, &[]);
            let threshold = self.engine.reject_score_for(&envelope);
            let (verdict, refusal) =
                self.pipeline
                    .verdict_offline(&report, &envelope, threshold, raw.len() as u64);
            let tier = self.tiers.as_ref().and_then(|tiers| {
                let names: Vec<&str> = report.symbols.iter().map(|s| s.name.as_str()).collect();
                let scored = Scored {
                    score: report.score,
                    reject_score: threshold,
                    symbols: &names,
                    refused: refusal.is_some(),
                };
                tiers.evaluate(&scored, &History::default())
            });
            (report, verdict, tier)
        }));
        outcome.scan_us = started.elapsed().as_micros() as u64;
        match scored {
            Ok((report, verdict, tier)) => {
                outcome.tier = tier.map(|t| t.tier.to_string());
                fill(&mut outcome, report);
                outcome.action = Action::of(&verdict);
            }
            Err(_) => outcome.error = Some("scoring panicked".into()),
        }
        outcome
    }
}

/// Counts a worker out and wakes the caller when it ends, even by a panic,
/// so the caller never waits for a worker that is gone.
struct WorkerExit<'a> {
    running: &'a AtomicUsize,
    caller: std::thread::Thread,
}

impl Drop for WorkerExit<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Release);
        self.caller.unpark();
    }
}

fn fill(outcome: &mut Outcome, report: ScanReport) {
    // `+ 0.0` turns the empty sum's -0.0 into 0.0.
    outcome.score = report.score + 0.0;
    outcome.symbols = report
        .symbols
        .into_iter()
        .map(|s| SymbolHit {
            name: s.name,
            score: s.score,
            evidence: s.evidence,
        })
        .collect();
}

/// Score every item on `threads` threads, in input order. `progress` is
/// called from the calling thread up to ten times a second with
/// (done, total), and once at the end.
pub fn score_all(
    scanner: &Scanner,
    items: &[Item],
    threads: usize,
    mut progress: impl FnMut(usize, usize),
) -> Vec<Outcome> {
    let total = items.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<OnceLock<Outcome>> = (0..total).map(|_| OnceLock::new()).collect();
    let workers = threads.clamp(1, total.max(1));
    let running = AtomicUsize::new(workers);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let exit = WorkerExit {
                running: &running,
                caller: std::thread::current(),
            };
            let (next, done, slots) = (&next, &done, &slots);
            scope.spawn(move || {
                let _exit = exit;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let _ = slots[i].set(scanner.score(item));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while running.load(Ordering::Acquire) > 0 {
            progress(done.load(Ordering::Relaxed), total);
            std::thread::park_timeout(Duration::from_millis(100));
        }
    });
    progress(done.load(Ordering::Relaxed), total);
    slots
        .into_iter()
        .zip(items)
        .map(|(slot, item)| {
            slot.into_inner()
                .unwrap_or_else(|| Outcome::unscored(item, Some("worker thread died".into())))
        })
        .collect()
}
