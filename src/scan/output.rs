//! How a scan run is printed: one JSON object per message (`jsonl`) or an
//! aligned table for people, then the summary and the baseline comparison.

use std::io::{self, Write};

use super::baseline::Comparison;
use super::summary::Summary;
use super::{Label, Outcome};

/// Output format of the per-message lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Table,
}

pub fn jsonl_line(out: &mut impl Write, o: &Outcome) -> io::Result<()> {
    serde_json::to_writer(&mut *out, o).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

pub fn table_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<5} {:>8} {:<8} {:<9} {:<50} SYMBOLS",
        "LABEL", "SCORE", "ACTION", "TIER", "PATH"
    )
}

pub fn table_line(out: &mut impl Write, o: &Outcome) -> io::Result<()> {
    let mark = match (o.label, o.flagged()) {
        (Some(Label::Ham), true) => " FP",
        (Some(Label::Spam), false) => " MISS",
        _ => "",
    };
    let symbols = match &o.error {
        Some(e) => format!("ERROR: {e}"),
        None => o
            .symbols
            .iter()
            .map(|s| format!("{}({:.2})", s.name, s.score))
            .collect::<Vec<_>>()
            .join(" "),
    };
    writeln!(
        out,
        "{:<5} {:>8.2} {:<8} {:<9} {:<50} {symbols}{mark}",
        o.label.map_or("-", Label::as_str),
        o.score,
        o.action.as_str(),
        o.tier.as_deref().unwrap_or("-"),
        o.path,
    )
}

fn pct(rate: Option<f64>) -> String {
    rate.map_or("n/a".into(), |r| format!("{:.2}%", r * 100.0))
}

pub fn summary(out: &mut impl Write, s: &Summary, reject_score: f64) -> io::Result<()> {
    writeln!(out, "\n== summary ==")?;
    writeln!(
        out,
        "messages: {} ({} bytes), errors: {}, threads: {}",
        s.messages, s.bytes, s.errors, s.threads
    )?;
    for (label, c) in &s.labels {
        writeln!(
            out,
            "  {label:<10} {:>6} messages, {:>6} flagged",
            c.messages, c.flagged
        )?;
    }
    writeln!(
        out,
        "detection rate:      {} (spam at or above the first tier; reject score {reject_score})",
        pct(s.detection_rate)
    )?;
    writeln!(out, "false-positive rate: {}", pct(s.false_positive_rate))?;
    let tiers: Vec<String> = s.tiers.iter().map(|(t, n)| format!("{t}={n}")).collect();
    let actions: Vec<String> = s.actions.iter().map(|(a, n)| format!("{a}={n}")).collect();
    writeln!(out, "tiers:   {}", tiers.join(" "))?;
    writeln!(out, "actions: {}", actions.join(" "))?;
    if !s.symbols.is_empty() {
        writeln!(
            out,
            "symbols (hits on spam / ham / unlabelled):\n  {:<36} {:>6} {:>6} {:>6}",
            "SYMBOL", "SPAM", "HAM", "OTHER"
        )?;
        let mut symbols: Vec<_> = s.symbols.iter().collect();
        symbols.sort_by(|a, b| {
            (b.1.spam + b.1.ham + b.1.unlabelled)
                .cmp(&(a.1.spam + a.1.ham + a.1.unlabelled))
                .then(a.0.cmp(b.0))
        });
        for (name, c) in symbols {
            writeln!(
                out,
                "  {name:<36} {:>6} {:>6} {:>6}",
                c.spam, c.ham, c.unlabelled
            )?;
        }
    }
    if !s.slowest.is_empty() {
        writeln!(out, "slowest:")?;
        for slow in &s.slowest {
            writeln!(
                out,
                "  {:>9.3} ms  {}",
                slow.scan_us as f64 / 1000.0,
                slow.path
            )?;
        }
    }
    writeln!(
        out,
        "speed: {:.1} messages/s ({:.3} s wall clock)",
        s.messages_per_second, s.wall_seconds
    )
}

/// The first 20 ids of a list, and how many more there are.
fn some_of(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = ids[..ids.len().min(SHOWN)].join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(", … and {} more", ids.len() - SHOWN));
    }
    text
}

pub fn comparison(out: &mut impl Write, c: &Comparison) -> io::Result<()> {
    writeln!(out, "\n== baseline ==")?;
    writeln!(
        out,
        "detection rate:      {} -> {}",
        pct(c.detection_before),
        pct(c.detection_after)
    )?;
    writeln!(
        out,
        "false-positive rate: {} -> {}",
        pct(c.fp_before),
        pct(c.fp_after)
    )?;
    if !c.changed.is_empty() {
        writeln!(out, "verdicts changed ({}):", c.changed.len())?;
        for ch in &c.changed {
            let describe = |v: &super::baseline::Verdict| {
                format!(
                    "{} {:.2}{}",
                    v.action.as_str(),
                    v.score,
                    v.tier
                        .as_deref()
                        .map(|t| format!(" {t}"))
                        .unwrap_or_default()
                )
            };
            writeln!(
                out,
                "  {:<5} {}: {} -> {}",
                ch.after.label.map_or("-", Label::as_str),
                ch.id,
                describe(&ch.before),
                describe(&ch.after)
            )?;
        }
    }
    if c.subset {
        writeln!(
            out,
            "(a subset: the baseline's rates over the messages of this run)"
        )?;
    }
    if !c.added.is_empty() {
        writeln!(
            out,
            "new, not in the baseline ({}): {}",
            c.added.len(),
            some_of(&c.added)
        )?;
    }
    if !c.removed.is_empty() {
        writeln!(
            out,
            "missing from this run ({}): {}",
            c.removed.len(),
            some_of(&c.removed)
        )?;
    }
    if c.is_regression() {
        for r in &c.regressions {
            writeln!(out, "REGRESSION: {r}")?;
        }
    } else {
        writeln!(out, "no regression")?;
    }
    Ok(())
}
