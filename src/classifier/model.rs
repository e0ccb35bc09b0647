//! The naive Bayes model: per-bucket spam/ham document counts over hashed
//! features, the per-bucket weights derived from them, and the compact binary
//! file format. Knows nothing of mail parsing.

use std::io::Write;
use std::path::Path;

use super::ModelError;

/// File magic: "OSBAYES" + NUL.
pub const MAGIC: &[u8; 8] = b"OSBAYES\0";
/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Default table size: 2^20 buckets (12 MB in memory).
pub const DEFAULT_BITS: u8 = 20;
/// Feature flag: word bigrams are part of the features.
pub const FLAG_BIGRAMS: u8 = 1;
/// Robinson's strength of the 0.5 prior for rarely seen tokens.
const PRIOR_STRENGTH: f64 = 1.0;
/// Tokens whose spam probability is within this distance of 0.5 are ignored.
const MIN_DEVIATION: f64 = 0.1;
/// Token probabilities are clamped to [FLOOR, 1 - FLOOR].
const FLOOR: f64 = 0.01;
/// Quantisation of the weights: steps per unit of log-odds (|ln(0.99/0.01)|
/// × 25 = 115 fits an i8).
pub const WEIGHT_STEPS: f32 = 25.0;

/// Counts and derived weights.
#[derive(Clone)]
pub struct Model {
    bits: u8,
    flags: u8,
    n_spam: u64,
    n_ham: u64,
    /// Unix seconds of the last training run or learn.
    trained_at: i64,
    spam: Vec<u32>,
    ham: Vec<u32>,
    /// ln(f / (1 - f)) per bucket times [`WEIGHT_STEPS`], 0 for
    /// uninformative buckets. One byte per bucket keeps the table that every
    /// classification reads small enough to stay in cache.
    weights: Vec<i8>,
}

/// What `outscore check` shows about a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStats {
    pub bits: u8,
    pub bigrams: bool,
    pub spam_messages: u64,
    pub ham_messages: u64,
    /// Buckets with at least one count.
    pub buckets_used: u64,
    pub trained_at: i64,
}

impl Model {
    /// An empty model with `2^bits` buckets.
    pub fn new(bits: u8, bigrams: bool) -> Model {
        let bits = bits.clamp(12, 24);
        let n = 1usize << bits;
        Model {
            bits,
            flags: if bigrams { FLAG_BIGRAMS } else { 0 },
            n_spam: 0,
            n_ham: 0,
            trained_at: 0,
            spam: vec![0; n],
            ham: vec![0; n],
            weights: vec![0; n],
        }
    }

    pub fn bigrams(&self) -> bool {
        self.flags & FLAG_BIGRAMS != 0
    }

    /// Bucket of a feature hash (its top bits).
    #[inline]
    pub fn bucket(&self, hash: u64) -> u32 {
        (hash >> (64 - self.bits as u32)) as u32
    }

    #[inline]
    pub fn weight(&self, bucket: u32) -> f32 {
        // Buckets come from `bucket()`, so always in range.
        self.weights[bucket as usize] as f32 / WEIGHT_STEPS
    }

    /// The quantised weight (log-odds × [`WEIGHT_STEPS`]).
    #[inline]
    pub fn weight_steps(&self, bucket: u32) -> i8 {
        self.weights[bucket as usize]
    }

    pub fn spam_messages(&self) -> u64 {
        self.n_spam
    }

    pub fn ham_messages(&self) -> u64 {
        self.n_ham
    }

    pub fn trained_at(&self) -> i64 {
        self.trained_at
    }

    pub fn set_trained_at(&mut self, unix: i64) {
        self.trained_at = unix;
    }

    /// Counts one message given its distinct buckets; weights are not
    /// refreshed (call [`Model::refresh`] after a batch).
    pub fn add(&mut self, buckets: &[u32], is_spam: bool) {
        let table = if is_spam {
            self.n_spam += 1;
            &mut self.spam
        } else {
            self.n_ham += 1;
            &mut self.ham
        };
        for &b in buckets {
            let c = &mut table[b as usize];
            *c = c.saturating_add(1);
        }
    }

    /// Takes back one message counted with [`Model::add`] (same buckets,
    /// same class), e.g. when a verdict is reversed. Counts saturate at zero,
    /// so a model that never saw the message is not driven negative; weights
    /// are not refreshed.
    pub fn remove(&mut self, buckets: &[u32], is_spam: bool) {
        let table = if is_spam {
            self.n_spam = self.n_spam.saturating_sub(1);
            &mut self.spam
        } else {
            self.n_ham = self.n_ham.saturating_sub(1);
            &mut self.ham
        };
        for &b in buckets {
            if let Some(c) = table.get_mut(b as usize) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// Recomputes every weight from the counts.
    pub fn refresh(&mut self) {
        let ns = self.n_spam.max(1) as f64;
        let nh = self.n_ham.max(1) as f64;
        for i in 0..self.weights.len() {
            self.weights[i] = token_weight(self.spam[i], self.ham[i], ns, nh);
        }
    }

    pub fn stats(&self) -> ModelStats {
        ModelStats {
            bits: self.bits,
            bigrams: self.bigrams(),
            spam_messages: self.n_spam,
            ham_messages: self.n_ham,
            buckets_used: self
                .spam
                .iter()
                .zip(&self.ham)
                .filter(|(s, h)| **s > 0 || **h > 0)
                .count() as u64,
            trained_at: self.trained_at,
        }
    }

    /// Encodes the model: header, then the non-empty buckets as
    /// (index delta, spam count, ham count) varints, then an FNV-1a checksum
    /// of everything before it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(self.bits);
        out.push(self.flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.n_spam.to_le_bytes());
        out.extend_from_slice(&self.n_ham.to_le_bytes());
        out.extend_from_slice(&self.trained_at.to_le_bytes());
        let used: Vec<usize> = (0..self.spam.len())
            .filter(|&i| self.spam[i] > 0 || self.ham[i] > 0)
            .collect();
        out.extend_from_slice(&(used.len() as u64).to_le_bytes());
        let mut last = 0usize;
        for i in used {
            put_varint(&mut out, (i - last) as u64);
            put_varint(&mut out, self.spam[i] as u64);
            put_varint(&mut out, self.ham[i] as u64);
            last = i;
        }
        let sum = fnv(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes and validates a model file's bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Model, ModelError> {
        const HEADER: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8;
        if data.len() < HEADER + 8 {
            return Err(ModelError::Truncated { len: data.len() });
        }
        if &data[..8] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let version = u32::from_le_bytes(data[8..12].try_into().unwrap_or([0; 4]));
        if version != VERSION {
            return Err(ModelError::Version { found: version });
        }
        let (body, tail) = data.split_at(data.len() - 8);
        let stored = u64::from_le_bytes(tail.try_into().unwrap_or([0; 8]));
        if fnv(body) != stored {
            return Err(ModelError::Checksum);
        }
        let bits = data[12];
        if !(12..=24).contains(&bits) {
            return Err(ModelError::Bits { bits });
        }
        let flags = data[13];
        let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or([0; 8]));
        let mut m = Model::new(bits, flags & FLAG_BIGRAMS != 0);
        m.flags = flags;
        m.n_spam = u64_at(16);
        m.n_ham = u64_at(24);
        m.trained_at = u64_at(32) as i64;
        let used = u64_at(40);
        let mut pos = HEADER;
        let mut idx = 0u64;
        let size = m.spam.len() as u64;
        for n in 0..used {
            let delta = get_varint(body, &mut pos).ok_or(ModelError::Entry { n })?;
            let s = get_varint(body, &mut pos).ok_or(ModelError::Entry { n })?;
            let h = get_varint(body, &mut pos).ok_or(ModelError::Entry { n })?;
            idx += delta;
            if idx >= size {
                return Err(ModelError::Entry { n });
            }
            m.spam[idx as usize] = s.min(u32::MAX as u64) as u32;
            m.ham[idx as usize] = h.min(u32::MAX as u64) as u32;
        }
        if pos != body.len() {
            return Err(ModelError::Trailing {
                bytes: body.len() - pos,
            });
        }
        m.refresh();
        Ok(m)
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let data = std::fs::read(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Model::from_bytes(&data)
    }

    /// Writes the model atomically: a temporary file beside it, flushed to
    /// disk, renamed over the old one, and the directory flushed so the
    /// rename survives a crash. Readers see the old or the new model, never
    /// a part.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&self.to_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

/// Robinson's smoothed token probability turned into a quantised log-odds
/// weight.
fn token_weight(s: u32, h: u32, ns: f64, nh: f64) -> i8 {
    let n = s as f64 + h as f64;
    if n == 0.0 {
        return 0;
    }
    let ps = s as f64 / ns;
    let ph = h as f64 / nh;
    let p = ps / (ps + ph);
    let f = ((PRIOR_STRENGTH * 0.5 + n * p) / (PRIOR_STRENGTH + n)).clamp(FLOOR, 1.0 - FLOOR);
    if (f - 0.5).abs() < MIN_DEVIATION {
        return 0;
    }
    ((f / (1.0 - f)).ln() * WEIGHT_STEPS as f64)
        .round()
        .clamp(-127.0, 127.0) as i8
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
