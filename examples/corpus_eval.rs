//! Score a labelled corpus (`MANIFEST.tsv` with `path` and `label` columns)
//! and print detection rate (spam at or above reject_score) and
//! false-positive rate (ham at or above it), per source and per symbol.
//!
//! ```text
//! cargo run --release --example corpus_eval -- [CORPUS_DIR] [--show-fp] [--show-fn N]
//!     [--show-ham-above SCORE] [--evidence SYMBOL] [--factors] [--text FILE]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use outscore::envelope::Envelope;
use outscore::scoring::Engine;

#[derive(Default)]
struct Tally {
    n: usize,
    over: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.iter()
            .find(|a| std::path::Path::new(a).is_dir())
            .cloned()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus").into()),
    );
    let show_fp = args.iter().any(|a| a == "--show-fp");
    let show_fn: usize = args
        .iter()
        .position(|a| a == "--show-fn")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // --text FILE: print what the rules see of one message, then stop.
    if let Some(file) = args
        .iter()
        .position(|a| a == "--text")
        .and_then(|i| args.get(i + 1))
    {
        let raw = std::fs::read(dir.join(file)).expect("message file");
        let m = outscore::message::parse(&raw);
        println!(
            "subject: {:?}\nurls: {}\n{}",
            m.subject,
            m.urls.len(),
            m.text
        );
        return;
    }
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let engine = Engine::builtin();
    let threshold = engine.reject_score();
    println!(
        "regex engine: {}; reject_score {threshold}",
        engine.regex_engine()
    );
    let mut by_source: BTreeMap<(String, String), Tally> = BTreeMap::new();
    // symbol → (ham hits, spam hits)
    let mut by_symbol: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    // Optional: count evidence strings of one symbol (--evidence NAME).
    let evidence_of = args
        .iter()
        .position(|a| a == "--evidence")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut evidence: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut factors: BTreeMap<(String, i64), (usize, usize)> = BTreeMap::new();
    let mut histogram: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, label, source) = (cols[0], cols[1], cols[2]);
        let Ok(raw) = std::fs::read(dir.join(path)) else {
            continue;
        };
        bytes += raw.len();
        let report = engine.scan(&Envelope::default(), &raw);
        let over = report.score >= threshold;
        let t = by_source
            .entry((label.to_string(), source.to_string()))
            .or_default();
        t.n += 1;
        t.over += usize::from(over);
        *histogram
            .entry((
                label.to_string(),
                (report.score / 2.5).floor().clamp(0.0, 8.0) as i64,
            ))
            .or_default() += 1;
        for s in &report.symbols {
            if evidence_of.as_deref() == Some(s.name.as_str()) {
                for ev in &s.evidence {
                    let key: String = ev.split(" as \"").next().unwrap_or(ev).to_string();
                    let e = evidence.entry(key).or_default();
                    if label == "ham" {
                        e.0 += 1
                    } else {
                        e.1 += 1
                    }
                }
            }
            if s.name.starts_with("KW_") {
                let b = (s.factor * 4.0).round() as i64;
                let f = factors.entry((s.name.clone(), b)).or_default();
                if label == "ham" {
                    f.0 += 1
                } else {
                    f.1 += 1
                }
            }
            let e = by_symbol.entry(s.name.clone()).or_default();
            if label == "ham" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let near = args
            .iter()
            .position(|a| a == "--show-ham-above")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok());
        if label == "ham" && !over && near.is_some_and(|n| report.score >= n) {
            println!("HAM {path} {:.1} {}", report.score, report.symbols_line());
        }
        if label == "ham" && over && show_fp {
            println!("FP {path} {:.1} {}", report.score, report.symbols_line());
            for s in &report.symbols {
                println!("    {} {:?}", s.name, s.evidence);
            }
        }
        if label == "spam" && !over && misses.len() < show_fn {
            misses.push(format!(
                "FN {path} {:.1} {}",
                report.score,
                report.symbols_line()
            ));
        }
    }
    let elapsed = started.elapsed();
    for m in &misses {
        println!("{m}");
    }
    let mut total: BTreeMap<&str, Tally> = BTreeMap::new();
    println!(
        "\n{:<6} {:<16} {:>6} {:>6} {:>7}",
        "label", "source", "msgs", "over", "rate"
    );
    for ((label, source), t) in &by_source {
        println!(
            "{label:<6} {source:<16} {:>6} {:>6} {:>6.2}%",
            t.n,
            t.over,
            100.0 * t.over as f64 / t.n as f64
        );
        let tt = total.entry(label.as_str()).or_default();
        tt.n += t.n;
        tt.over += t.over;
    }
    for (label, t) in &total {
        let what = if *label == "ham" {
            "false-positive rate"
        } else {
            "detection rate"
        };
        println!(
            "{label}: {what} {:.2}% ({} of {})",
            100.0 * t.over as f64 / t.n as f64,
            t.over,
            t.n
        );
    }
    println!("\n{:<28} {:>6} {:>6}", "symbol", "ham", "spam");
    for (name, (ham, spam)) in &by_symbol {
        println!("{name:<28} {ham:>6} {spam:>6}");
    }
    println!("\nscore histogram (bucket of 2.5 points: ham, spam)");
    for b in 0..=8 {
        let h = histogram.get(&("ham".to_string(), b)).unwrap_or(&0);
        let sp = histogram.get(&("spam".to_string(), b)).unwrap_or(&0);
        println!("  >= {:>5.1}: {h:>5} {sp:>5}", b as f64 * 2.5);
    }
    if args.iter().any(|a| a == "--factors") {
        println!("\nkeyword factors (quarters): ham spam");
        for ((name, b), (h, sp)) in &factors {
            println!("  {name:<18} {:>5.2} {h:>5} {sp:>5}", *b as f64 / 4.0);
        }
    }
    if !evidence.is_empty() {
        let mut v: Vec<_> = evidence.into_iter().collect();
        v.sort_by_key(|(_, (h, s))| std::cmp::Reverse(h * 1000 + s));
        for (ev, (h, s)) in v.iter().take(60) {
            println!("  ham {h:>5} spam {s:>5}  {ev}");
        }
    }
    let n: usize = total.values().map(|t| t.n).sum();
    println!(
        "\n{n} messages, {:.1} MB in {:.2}s: {:.0} msg/s (single thread, including file reads)",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}
