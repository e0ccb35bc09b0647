//! Saved runs and regression checks: a baseline keeps every message's verdict
//! and the rates, and a new run is compared with it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::summary::{rate, LabelCount, Summary};
use super::{Action, Label, Outcome, ScanError};

/// Bumped when the file layout changes incompatibly.
pub const FORMAT: u32 = 1;

/// One message's verdict as a baseline keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub label: Option<Label>,
    pub score: f64,
    pub action: Action,
    pub tier: Option<String>,
    pub flagged: bool,
}

impl Verdict {
    fn of(o: &Outcome) -> Verdict {
        Verdict {
            label: o.label,
            // Two decimals: enough to see a weight change, stable across
            // platforms' float summation order.
            score: (o.score * 100.0).round() / 100.0,
            action: o.action,
            tier: o.tier.clone(),
            flagged: o.flagged(),
        }
    }

    /// Same decision (scores may differ).
    fn same_decision(&self, other: &Verdict) -> bool {
        self.flagged == other.flagged && self.action == other.action && self.tier == other.tier
    }
}

/// A saved run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub format: u32,
    pub reject_score: f64,
    pub detection_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
    pub labels: BTreeMap<String, LabelCount>,
    /// Keyed by message id (path relative to the scanned input).
    pub verdicts: BTreeMap<String, Verdict>,
}

impl Baseline {
    pub fn new(outcomes: &[Outcome], summary: &Summary, reject_score: f64) -> Baseline {
        Baseline {
            format: FORMAT,
            reject_score,
            detection_rate: summary.detection_rate,
            false_positive_rate: summary.false_positive_rate,
            labels: summary.labels.clone(),
            verdicts: outcomes
                .iter()
                .filter(|o| o.error.is_none())
                .map(|o| (o.id.clone(), Verdict::of(o)))
                .collect(),
        }
    }

    pub fn load(path: &Path) -> Result<Baseline, ScanError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScanError::io(path, e))?;
        let baseline: Baseline = serde_json::from_str(&text).map_err(|e| ScanError::Baseline {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if baseline.format != FORMAT {
            return Err(ScanError::Baseline {
                path: path.display().to_string(),
                message: format!(
                    "format {} is not {FORMAT}; write a new one with --write-baseline",
                    baseline.format
                ),
            });
        }
        Ok(baseline)
    }

    /// Write the baseline as JSON with one line per message, so that a
    /// review of a rule change shows one diff line per changed verdict.
    pub fn save(&self, path: &Path) -> Result<(), ScanError> {
        std::fs::write(path, self.to_json()).map_err(|e| ScanError::io(path, e))
    }

    pub fn to_json(&self) -> String {
        let head = Baseline {
            verdicts: BTreeMap::new(),
            ..self.clone()
        };
        let head = serde_json::to_string_pretty(&head).expect("baseline serialises");
        let lines: Vec<String> = self
            .verdicts
            .iter()
            .map(|(id, v)| {
                format!(
                    "    {}: {}",
                    serde_json::to_string(id).expect("string serialises"),
                    serde_json::to_string(v).expect("verdict serialises")
                )
            })
            .collect();
        let verdicts = if lines.is_empty() {
            "{}".to_string()
        } else {
            format!("{{\n{}\n  }}", lines.join(",\n"))
        };
        let mut text = head.replacen("\"verdicts\": {}", &format!("\"verdicts\": {verdicts}"), 1);
        text.push('\n');
        text
    }
}

/// A message whose decision differs from the baseline's.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    pub before: Verdict,
    pub after: Verdict,
}

/// The result of comparing a run with a baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub detection_before: Option<f64>,
    pub detection_after: Option<f64>,
    pub fp_before: Option<f64>,
    pub fp_after: Option<f64>,
    pub changed: Vec<Change>,
    /// In this run but not in the baseline.
    pub added: Vec<String>,
    /// In the baseline but not in this run: a regression, unless the run
    /// was meant to cover part of the corpus (`allow_subset`).
    pub removed: Vec<String>,
    /// The rates "before" are the baseline's over the messages of this run
    /// only (a subset was scanned).
    pub subset: bool,
    /// Why this run is a regression; empty when it is not.
    pub regressions: Vec<String>,
}

impl Comparison {
    pub fn is_regression(&self) -> bool {
        !self.regressions.is_empty()
    }
}

/// Detection and false-positive rates of a set of saved verdicts.
fn rates<'a>(verdicts: impl Iterator<Item = &'a Verdict>) -> (Option<f64>, Option<f64>) {
    let (mut spam, mut caught, mut ham, mut flagged) = (0, 0, 0, 0);
    for v in verdicts {
        match v.label {
            Some(Label::Spam) => {
                spam += 1;
                caught += usize::from(v.flagged);
            }
            Some(Label::Ham) => {
                ham += 1;
                flagged += usize::from(v.flagged);
            }
            None => {}
        }
    }
    (rate(caught, spam), rate(flagged, ham))
}

/// Compare a run with a baseline. `tolerance` is in percentage points: the
/// detection rate may drop, and the false-positive rate rise, by that much.
/// A message of the baseline missing from the run is a regression unless
/// `allow_subset`; then the run's rates are compared with the baseline's
/// over the same messages.
pub fn compare(
    baseline: &Baseline,
    current: &Baseline,
    tolerance: f64,
    allow_subset: bool,
) -> Comparison {
    let tol = tolerance / 100.0;
    // A hair of slack so that equal rates never count as a change.
    let eps = 1e-9;
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (id, after) in &current.verdicts {
        match baseline.verdicts.get(id) {
            Some(before) if !before.same_decision(after) => changed.push(Change {
                id: id.clone(),
                before: before.clone(),
                after: after.clone(),
            }),
            Some(_) => {}
            None => added.push(id.clone()),
        }
    }
    let removed: Vec<String> = baseline
        .verdicts
        .keys()
        .filter(|id| !current.verdicts.contains_key(*id))
        .cloned()
        .collect();
    let mut regressions = Vec::new();
    let subset = allow_subset && !removed.is_empty();
    let (detection_before, fp_before) = if subset {
        rates(
            baseline
                .verdicts
                .iter()
                .filter(|(id, _)| current.verdicts.contains_key(*id))
                .map(|(_, v)| v),
        )
    } else {
        (baseline.detection_rate, baseline.false_positive_rate)
    };
    if !removed.is_empty() && !allow_subset {
        regressions.push(format!(
            "{} message(s) of the baseline are missing from this run (--allow-subset when scanning part of the corpus)",
            removed.len()
        ));
    }
    if let (Some(before), Some(after)) = (detection_before, current.detection_rate) {
        if after + tol + eps < before {
            regressions.push(format!(
                "detection rate dropped from {:.2}% to {:.2}% (tolerance {tolerance} points)",
                before * 100.0,
                after * 100.0
            ));
        }
    }
    if let (Some(before), Some(after)) = (fp_before, current.false_positive_rate) {
        if after > before + tol + eps {
            regressions.push(format!(
                "false-positive rate rose from {:.2}% to {:.2}% (tolerance {tolerance} points)",
                before * 100.0,
                after * 100.0
            ));
        }
    }
    Comparison {
        detection_before,
        detection_after: current.detection_rate,
        fp_before,
        fp_after: current.false_positive_rate,
        changed,
        added,
        removed,
        subset,
        regressions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(label: Label, flagged: bool) -> Verdict {
        Verdict {
            label: Some(label),
            score: if flagged { 20.0 } else { 1.0 },
            action: if flagged {
                Action::Reject
            } else {
                Action::Accept
            },
            tier: None,
            flagged,
        }
    }

    fn baseline(entries: &[(&str, Label, bool)]) -> Baseline {
        let verdicts: BTreeMap<_, _> = entries
            .iter()
            .map(|(id, l, f)| (id.to_string(), verdict(*l, *f)))
            .collect();
        let count = |label| {
            let of: Vec<_> = verdicts
                .values()
                .filter(|v| v.label == Some(label))
                .collect();
            (of.iter().filter(|v| v.flagged).count(), of.len())
        };
        let (sf, sn) = count(Label::Spam);
        let (hf, hn) = count(Label::Ham);
        Baseline {
            format: FORMAT,
            reject_score: 15.0,
            detection_rate: super::super::summary::rate(sf, sn),
            false_positive_rate: super::super::summary::rate(hf, hn),
            labels: BTreeMap::new(),
            verdicts,
        }
    }

    #[test]
    fn saved_baselines_read_back_equal() {
        let b = baseline(&[
            ("a b/\"q\".eml", Label::Spam, true),
            ("h", Label::Ham, false),
        ]);
        let text = b.to_json();
        assert_eq!(
            text.lines().filter(|l| l.contains("\"flagged\"")).count(),
            2
        );
        let back: Baseline = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        let empty = baseline(&[]);
        assert_eq!(
            serde_json::from_str::<Baseline>(&empty.to_json()).unwrap(),
            empty
        );
    }

    #[test]
    fn a_missed_spam_is_a_regression_beyond_the_tolerance() {
        let before = baseline(&[("a", Label::Spam, true), ("b", Label::Spam, true)]);
        let after = baseline(&[("a", Label::Spam, true), ("b", Label::Spam, false)]);
        let c = compare(&before, &after, 0.0, false);
        assert!(c.is_regression());
        assert_eq!(c.changed.len(), 1);
        assert_eq!(c.changed[0].id, "b");
        assert!(!compare(&before, &after, 60.0, false).is_regression());
    }

    #[test]
    fn a_missing_message_is_a_regression_unless_a_subset_is_allowed() {
        let before = baseline(&[
            ("spam/a", Label::Spam, true),
            ("spam/b", Label::Spam, false),
            ("ham/h", Label::Ham, false),
        ]);
        let part = baseline(&[("spam/a", Label::Spam, true), ("new", Label::Ham, false)]);
        let c = compare(&before, &part, 0.0, false);
        assert_eq!(c.removed, vec!["ham/h", "spam/b"]);
        assert_eq!(c.added, vec!["new"]);
        assert!(c.is_regression());
        assert!(c.regressions[0].contains("2 message(s)"), "{c:?}");
        // A subset: compared with the baseline over the same messages (the
        // detection rate of spam/a alone is 100%, as it is now).
        let c = compare(&before, &part, 0.0, true);
        assert!(!c.is_regression(), "{c:?}");
        assert!(c.subset);
        assert_eq!(c.detection_before, Some(1.0));
    }

    #[test]
    fn a_flagged_ham_is_a_regression_and_better_detection_is_not() {
        let before = baseline(&[("s", Label::Spam, false), ("h", Label::Ham, false)]);
        let better = baseline(&[("s", Label::Spam, true), ("h", Label::Ham, false)]);
        assert!(!compare(&before, &better, 0.0, false).is_regression());
        let worse = baseline(&[("s", Label::Spam, false), ("h", Label::Ham, true)]);
        let c = compare(&before, &worse, 0.0, false);
        assert_eq!(c.regressions.len(), 1, "{:?}", c.regressions);
        assert!(c.regressions[0].contains("false-positive"));
    }
}
