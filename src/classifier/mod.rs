//! Learned content classifier: a naive Bayes model over hashed word, word-pair,
//! CJK-bigram and header/structure features that turns a message into a spam
//! probability and the `BAYES_SPAM` / `BAYES_HAM` symbols. No network I/O; the
//! only files it touches are the model file (load/save) and training inputs.
//! It does not know weights, tiers or the store.
//!
//! ```no_run
//! use outscore::classifier::{Classifier, Model};
//! let model = Model::new(20, true);
//! let c = Classifier::new(model);
//! if let Some(v) = c.classify(b"Subject: hi\r\n\r\nhello") {
//!     for s in outscore::classifier::symbols(&v) {
//!         println!("{} {:.2} {:?}", s.name, s.factor, s.evidence);
//!     }
//! }
//! ```

pub mod input;
pub mod model;
pub mod tokenize;

use std::path::{Path, PathBuf};

use crate::message::normalize::normalize;
use crate::message::{self, ParsedMessage};

pub use model::{Model, ModelStats};
pub use tokenize::View;
use tokenize::{Kind, Sink};

/// Symbol emitted when the probability is high.
pub const BAYES_SPAM: &str = "BAYES_SPAM";
/// Symbol emitted when the probability is low.
pub const BAYES_HAM: &str = "BAYES_HAM";
/// Below this many learned messages of either class the classifier stays
/// silent (its statistics would be noise).
pub const MIN_LEARNED: u64 = 50;
/// At most this many distinct features are scored per message.
const MAX_FEATURES: usize = 4096;
/// How many of the strongest tokens a verdict keeps as evidence.
const TOP_TOKENS: usize = 8;
/// Scale of the normalised log-odds before the logistic function.
const SCALE: f64 = 1.0;

/// Why a model could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file truncated ({len} bytes)")]
    Truncated { len: usize },
    #[error("not an outscore model file (bad magic)")]
    BadMagic,
    #[error(
        "model format version {found} is not supported (expected {})",
        model::VERSION
    )]
    Version { found: u32 },
    #[error("model checksum mismatch (file damaged)")]
    Checksum,
    #[error("model table size 2^{bits} out of range (2^12..2^24)")]
    Bits { bits: u8 },
    #[error("model entry {n} is damaged or out of range")]
    Entry { n: u64 },
    #[error("{bytes} unexpected bytes after the model entries")]
    Trailing { bytes: usize },
}

/// The model file's name inside the data directory.
pub const MODEL_FILE: &str = "model.bin";

/// The default model compiled into the binary (`models/default.bin`, built by
/// `scripts/train-default-model`), so a fresh install classifies from the
/// start.
pub fn builtin_model() -> Model {
    // The file is produced and checked by the repository's own script; a
    // damaged copy would fail the test suite, and an empty model here only
    // keeps the symbols silent.
    Model::from_bytes(include_bytes!("../../models/default.bin"))
        .unwrap_or_else(|_| Model::new(model::DEFAULT_BITS, true))
}

/// Where a model comes from, for logs and `outscore check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    File(PathBuf),
    Builtin,
}

/// The model the daemon uses: `<data_dir>/model.bin` when it exists (trained
/// or imported by the operator), else the built-in default. A model file that
/// exists but cannot be read is an error, not a silent fallback.
pub fn load_model(data_dir: &Path) -> Result<(Model, ModelSource), ModelError> {
    let path = data_dir.join(MODEL_FILE);
    if path.exists() {
        Ok((Model::load(&path)?, ModelSource::File(path)))
    } else {
        Ok((builtin_model(), ModelSource::Builtin))
    }
}

/// The classifier's answer for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Probability that the message is spam, 0..1.
    pub probability: f64,
    /// The strongest tokens, strongest first: (token, log-odds weight;
    /// positive = spammy).
    pub top_tokens: Vec<(String, f32)>,
    /// Distinct features seen / with a non-zero weight.
    pub features: u32,
    pub informative: u32,
}

/// A symbol as the scoring engine takes it from outside the rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct BayesSymbol {
    pub name: &'static str,
    /// 0..1, multiplied with the symbol's weight from `scores/`.
    pub factor: f64,
    pub evidence: Vec<String>,
}

/// Spam probability at which `BAYES_SPAM` starts (factor 0) and the one at
/// which it reaches full strength.
pub const SPAM_FROM: f64 = 0.9;
pub const SPAM_FULL: f64 = 0.99;
/// Mirror points for `BAYES_HAM`.
pub const HAM_FROM: f64 = 0.1;
pub const HAM_FULL: f64 = 0.01;

/// Maps a verdict to the symbols it fires (none in the uncertain middle).
pub fn symbols(v: &Verdict) -> Vec<BayesSymbol> {
    let p = v.probability;
    let (name, factor) = if p > SPAM_FROM {
        (
            BAYES_SPAM,
            ((p - SPAM_FROM) / (SPAM_FULL - SPAM_FROM)).min(1.0),
        )
    } else if p < HAM_FROM {
        (BAYES_HAM, ((HAM_FROM - p) / (HAM_FROM - HAM_FULL)).min(1.0))
    } else {
        return Vec::new();
    };
    let mut evidence = vec![format!("probability {p:.4}")];
    let want_spam = name == BAYES_SPAM;
    let tokens: Vec<String> = v
        .top_tokens
        .iter()
        .filter(|(_, w)| (*w > 0.0) == want_spam)
        .map(|(t, w)| format!("{t} ({w:+.2})"))
        .collect();
    if !tokens.is_empty() {
        evidence.push(format!("tokens: {}", tokens.join(", ")));
    }
    vec![BayesSymbol {
        name,
        factor,
        evidence,
    }]
}

/// A loaded model ready to classify and learn.
pub struct Classifier {
    model: Model,
}

impl Classifier {
    pub fn new(model: Model) -> Classifier {
        Classifier { model }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn into_model(self) -> Model {
        self.model
    }

    /// True when both classes have enough learned messages to classify.
    pub fn ready(&self) -> bool {
        self.model.spam_messages() >= MIN_LEARNED && self.model.ham_messages() >= MIN_LEARNED
    }

    /// Classifies raw message bytes (parsed with [`message::parse`]); `None`
    /// when the model is not ready or the bytes are not a message.
    pub fn classify(&self, raw: &[u8]) -> Option<Verdict> {
        if !self.ready() {
            return None;
        }
        self.classify_parsed(&message::parse(raw))
    }

    /// Classifies an already parsed message (normalises its text).
    pub fn classify_parsed(&self, msg: &ParsedMessage) -> Option<Verdict> {
        if !self.ready() {
            return None;
        }
        with_view(msg, |view| self.classify_view(view))
    }

    /// Classifies a parsed message whose text is already normalised (the
    /// keyword rules' normalised text: nothing is parsed or normalised again).
    pub fn classify_view(&self, view: View<'_>) -> Option<Verdict> {
        if !self.ready() || view.msg.unparsed {
            return None;
        }
        let mut acc = Scorer::new(&self.model);
        tokenize::message_features(view, self.model.bigrams(), &mut acc);
        Some(acc.verdict())
    }

    /// Raw score parts (sum of weights, informative feature count) for
    /// evaluation tools.
    pub fn score_parts(&self, raw: &[u8]) -> Option<(f64, u32)> {
        let msg = message::parse(raw);
        if msg.unparsed {
            return None;
        }
        let mut acc = Scorer::new(&self.model);
        with_view(&msg, |view| {
            tokenize::message_features(view, self.model.bigrams(), &mut acc)
        });
        Some((acc.sum(), acc.informative))
    }

    /// Learns one message as spam or ham and refreshes the weights. Returns
    /// false when the bytes are not a message.
    pub fn learn(&mut self, raw: &[u8], is_spam: bool) -> bool {
        if !self.add(raw, is_spam) {
            return false;
        }
        self.model.refresh();
        self.model.set_trained_at(chrono::Utc::now().timestamp());
        true
    }

    /// Counts one message without refreshing the weights (batch training:
    /// call [`Classifier::finish`] at the end). Returns false when the bytes
    /// are not a message.
    pub fn add(&mut self, raw: &[u8], is_spam: bool) -> bool {
        let msg = message::parse(raw);
        if msg.unparsed {
            return false;
        }
        self.add_parsed(&msg, is_spam);
        true
    }

    /// Counts one parsed message (see [`Classifier::add`]).
    pub fn add_parsed(&mut self, msg: &ParsedMessage, is_spam: bool) {
        let buckets = with_view(msg, |view| distinct_buckets(&self.model, view));
        self.model.add(&buckets, is_spam);
    }

    /// Takes back a message learned earlier as `was_spam` and refreshes the
    /// weights (the first half of reversing a verdict). Returns false when
    /// the bytes are not a message.
    pub fn forget(&mut self, raw: &[u8], was_spam: bool) -> bool {
        let msg = message::parse(raw);
        if msg.unparsed {
            return false;
        }
        let buckets = with_view(&msg, |view| distinct_buckets(&self.model, view));
        self.model.remove(&buckets, was_spam);
        self.model.refresh();
        true
    }

    /// Refreshes weights after a batch of [`Classifier::add`].
    pub fn finish(&mut self) {
        self.model.refresh();
        self.model.set_trained_at(chrono::Utc::now().timestamp());
    }
}

/// Runs `f` on a message's [`View`], normalising its subject and body.
fn with_view<T>(msg: &ParsedMessage, f: impl FnOnce(View<'_>) -> T) -> T {
    let subject = normalize(msg.subject.as_deref().unwrap_or(""));
    let body = normalize(&msg.text);
    f(View {
        msg,
        subject: &subject,
        body: &body,
    })
}

/// The distinct buckets of a message's features (at most `MAX_FEATURES`).
fn distinct_buckets(model: &Model, view: View<'_>) -> Vec<u32> {
    let mut set = BucketSet::new();
    let mut out = Vec::new();
    tokenize::message_features(
        view,
        model.bigrams(),
        &mut |h: u64, _k: Kind, _t: &dyn Fn() -> String| {
            let b = model.bucket(h);
            if out.len() < MAX_FEATURES && set.insert(b) {
                out.push(b);
            }
        },
    );
    out
}

/// A small open-addressing set of bucket numbers (each message's features
/// count once).
struct BucketSet {
    slots: Box<[u32; 2 * MAX_FEATURES]>,
}

impl BucketSet {
    fn new() -> Self {
        BucketSet {
            slots: Box::new([u32::MAX; 2 * MAX_FEATURES]),
        }
    }

    /// True if `b` was not in the set yet.
    #[inline]
    fn insert(&mut self, b: u32) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = (b.wrapping_mul(0x9E37_79B1) as usize) & mask;
        loop {
            let s = self.slots[i];
            if s == b {
                return false;
            }
            if s == u32::MAX {
                self.slots[i] = b;
                return true;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Accumulates the weights of distinct features and the strongest tokens.
struct Scorer<'m> {
    model: &'m Model,
    set: BucketSet,
    distinct: u32,
    informative: u32,
    /// Sum of the quantised weights.
    qsum: i64,
    top: Vec<(String, f32)>,
    /// Smallest |weight| in a full `top`; 0 while it has room.
    weakest: f32,
}

impl<'m> Scorer<'m> {
    fn new(model: &'m Model) -> Self {
        Scorer {
            model,
            set: BucketSet::new(),
            distinct: 0,
            informative: 0,
            qsum: 0,
            top: Vec::with_capacity(TOP_TOKENS + 1),
            weakest: 0.0,
        }
    }

    fn sum(&self) -> f64 {
        self.qsum as f64 / model::WEIGHT_STEPS as f64
    }

    fn verdict(mut self) -> Verdict {
        self.top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        Verdict {
            probability: probability(self.sum(), self.informative),
            top_tokens: self.top,
            features: self.distinct,
            informative: self.informative,
        }
    }
}

/// The normalised log-odds → probability: the sum over informative tokens
/// divided by the square root of their number (dampens the over-confidence
/// of correlated tokens), through the logistic function.
pub fn probability(sum: f64, informative: u32) -> f64 {
    let z = SCALE * sum / (informative.max(1) as f64).sqrt();
    1.0 / (1.0 + (-z).exp())
}

impl Sink for Scorer<'_> {
    #[inline]
    fn feature(&mut self, hash: u64, kind: Kind, text: &dyn Fn() -> String) {
        if self.distinct as usize >= MAX_FEATURES {
            return;
        }
        let b = self.model.bucket(hash);
        if !self.set.insert(b) {
            return;
        }
        self.distinct += 1;
        let q = self.model.weight_steps(b);
        if q == 0 {
            return;
        }
        self.informative += 1;
        self.qsum += q as i64;
        let w = q as f32 / model::WEIGHT_STEPS;
        if w.abs() > self.weakest {
            let weakest = self.weakest;
            if self.top.len() >= TOP_TOKENS {
                if let Some(pos) = self.top.iter().position(|t| t.1.abs() == weakest) {
                    self.top.swap_remove(pos);
                }
            }
            self.top.push((format!("{}{}", kind.prefix(), text()), w));
            if self.top.len() >= TOP_TOKENS {
                self.weakest = self
                    .top
                    .iter()
                    .map(|t| t.1.abs())
                    .fold(f32::INFINITY, f32::min);
            }
        }
    }
}
