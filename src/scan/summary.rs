//! The accuracy and speed summary of one scan run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Label, Outcome};

/// How many messages of one label were scanned and how many were flagged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    pub messages: usize,
    pub flagged: usize,
}

/// How often a symbol fired, per label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolCount {
    pub spam: usize,
    pub ham: usize,
    pub unlabelled: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slow {
    pub path: String,
    pub scan_us: u64,
}

/// Totals over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub messages: usize,
    pub errors: usize,
    pub bytes: u64,
    /// `spam`, `ham`, `unlabelled`.
    pub labels: BTreeMap<String, LabelCount>,
    /// Share of spam at or above the first tier; `None` without spam.
    pub detection_rate: Option<f64>,
    /// Share of ham at or above the first tier; `None` without ham.
    pub false_positive_rate: Option<f64>,
    /// Messages per tier (`none` below the first tier).
    pub tiers: BTreeMap<String, usize>,
    pub actions: BTreeMap<String, usize>,
    pub symbols: BTreeMap<String, SymbolCount>,
    pub slowest: Vec<Slow>,
    pub wall_seconds: f64,
    pub messages_per_second: f64,
    pub threads: usize,
}

/// Share of `part` in `whole`, `None` when there is nothing to divide.
pub fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Summary {
    pub fn new(outcomes: &[Outcome], wall: Duration, threads: usize) -> Summary {
        let mut labels: BTreeMap<String, LabelCount> = BTreeMap::new();
        let mut tiers: BTreeMap<String, usize> = BTreeMap::new();
        let mut actions: BTreeMap<String, usize> = BTreeMap::new();
        let mut symbols: BTreeMap<String, SymbolCount> = BTreeMap::new();
        let mut errors = 0;
        let mut bytes = 0;
        for o in outcomes {
            if o.error.is_some() {
                errors += 1;
                continue;
            }
            bytes += o.size;
            let key = o.label.map_or("unlabelled", Label::as_str);
            let count = labels.entry(key.to_string()).or_default();
            count.messages += 1;
            count.flagged += usize::from(o.flagged());
            *tiers
                .entry(o.tier.clone().unwrap_or_else(|| "none".into()))
                .or_default() += 1;
            *actions.entry(o.action.as_str().to_string()).or_default() += 1;
            for s in &o.symbols {
                let c = symbols.entry(s.name.clone()).or_default();
                match o.label {
                    Some(Label::Spam) => c.spam += 1,
                    Some(Label::Ham) => c.ham += 1,
                    None => c.unlabelled += 1,
                }
            }
        }
        let mut by_time: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
        by_time.sort_by(|a, b| b.scan_us.cmp(&a.scan_us).then(a.path.cmp(&b.path)));
        let slowest = by_time
            .iter()
            .take(5)
            .map(|o| Slow {
                path: o.path.clone(),
                scan_us: o.scan_us,
            })
            .collect();
        let spam = labels.get("spam").copied().unwrap_or_default();
        let ham = labels.get("ham").copied().unwrap_or_default();
        let wall_seconds = wall.as_secs_f64();
        Summary {
            messages: outcomes.len(),
            errors,
            bytes,
            detection_rate: rate(spam.flagged, spam.messages),
            false_positive_rate: rate(ham.flagged, ham.messages),
            labels,
            tiers,
            actions,
            symbols,
            slowest,
            wall_seconds,
            messages_per_second: if wall_seconds > 0.0 {
                outcomes.len() as f64 / wall_seconds
            } else {
                0.0
            },
            threads,
        }
    }
}
