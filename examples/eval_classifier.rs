//! Evaluates the classifier on a labelled corpus: a fixed 80/20 split by the
//! sha256 of each manifest path, training on the 80 %, and the detection rate
//! at a false-positive rate of at most 0.5 % on the 20 %, per source and per
//! language.
//!
//! cargo run --release --example eval_classifier -- MANIFEST.tsv
//!     [--exclude-train SOURCE]… [--bits N] [--no-bigrams]

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use outscore::classifier::{input, probability, Classifier, Model};

/// Target false-positive rate on the held-out ham.
const MAX_FP: f64 = 0.005;

struct Row {
    path: PathBuf,
    is_spam: bool,
    source: String,
    lang: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut manifest = None;
    let mut exclude = Vec::new();
    let mut bits = outscore::classifier::model::DEFAULT_BITS;
    let mut bigrams = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--exclude-train" => {
                i += 1;
                exclude.push(args[i].clone());
            }
            "--bits" => {
                i += 1;
                bits = args[i].parse().expect("--bits N");
            }
            "--no-bigrams" => bigrams = false,
            other => manifest = Some(PathBuf::from(other)),
        }
        i += 1;
    }
    let manifest = manifest.expect("usage: eval_classifier MANIFEST.tsv [options]");
    let rows: Vec<Row> = input::manifest(&manifest)
        .expect("manifest")
        .into_iter()
        .map(|r| Row {
            source: r.extra.first().cloned().unwrap_or_default(),
            lang: r.extra.get(3).cloned().unwrap_or_default(),
            path: r.path,
            is_spam: r.is_spam,
        })
        .collect();
    let is_test = |r: &Row| {
        let rel = r
            .path
            .strip_prefix(manifest.parent().unwrap_or(std::path::Path::new(".")))
            .unwrap_or(&r.path);
        Sha256::digest(rel.to_string_lossy().as_bytes())[0] % 5 == 0
    };
    let mut c = Classifier::new(Model::new(bits, bigrams));
    let t0 = std::time::Instant::now();
    let mut trained = 0;
    for r in rows.iter().filter(|r| !is_test(r)) {
        if exclude.contains(&r.source) {
            continue;
        }
        let data = std::fs::read(&r.path).expect("read");
        if c.add(&data, r.is_spam) {
            trained += 1;
        }
    }
    c.finish();
    let train_s = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    // (is_spam, source, lang, sum, informative)
    let mut scored = Vec::new();
    for r in rows.iter().filter(|r| is_test(r)) {
        let data = std::fs::read(&r.path).expect("read");
        let (sum, n) = c.score_parts(&data).unwrap_or((0.0, 0));
        scored.push((r.is_spam, r.source.clone(), r.lang.clone(), sum, n));
    }
    let test_s = t1.elapsed().as_secs_f64();
    let stats = c.model().stats();
    println!(
        "trained on {trained} messages ({} spam, {} ham) in {train_s:.1} s; excluded from training: {:?}; bits {bits}, bigrams {bigrams}; {} buckets used; model file {} bytes",
        stats.spam_messages,
        stats.ham_messages,
        exclude,
        stats.buckets_used,
        c.model().to_bytes().len()
    );
    println!(
        "test set: {} messages, scored in {test_s:.1} s",
        scored.len()
    );
    symbol_rates(&scored);
    // How a message's (sum of weights, informative features) become a score.
    type Mode = (&'static str, fn(f64, u32) -> f64);
    let modes: [Mode; 3] = [
        ("sum/sqrt(n) [shipped]", |s, n| probability(s, n)),
        ("sum", |s, _| s),
        ("mean", |s, n| s / n.max(1) as f64),
    ];
    for (name, f) in modes {
        let scores: Vec<(bool, &str, &str, f64)> = scored
            .iter()
            .map(|(sp, so, la, s, n)| (*sp, so.as_str(), la.as_str(), f(*s, *n)))
            .collect();
        report(name, &scores);
    }
}

/// How often BAYES_SPAM / BAYES_HAM fire on held-out spam and ham, and
/// their mean factor (what a weight in scores/ gets multiplied with).
fn symbol_rates(scored: &[(bool, String, String, f64, u32)]) {
    use outscore::classifier::{symbols, Verdict};
    let mut fired: BTreeMap<(&str, bool), (usize, f64)> = BTreeMap::new();
    let (mut n_spam, mut n_ham) = (0usize, 0usize);
    for (is_spam, _, _, sum, n) in scored {
        if *is_spam {
            n_spam += 1;
        } else {
            n_ham += 1;
        }
        let v = Verdict {
            probability: probability(*sum, *n),
            top_tokens: Vec::new(),
            features: *n,
            informative: *n,
        };
        for s in symbols(&v) {
            let e = fired.entry((s.name, *is_spam)).or_default();
            e.0 += 1;
            e.1 += s.factor;
        }
    }
    println!("symbols on the test set (fired / messages, mean factor when fired):");
    for ((name, is_spam), (count, factor)) in &fired {
        let total = if *is_spam { n_spam } else { n_ham };
        println!(
            "  {name:<10} on {:<4} {count}/{total} ({:.1} %), mean factor {:.2}",
            if *is_spam { "spam" } else { "ham" },
            100.0 * *count as f64 / total.max(1) as f64,
            factor / *count as f64
        );
    }
}

fn report(name: &str, scores: &[(bool, &str, &str, f64)]) {
    let mut ham: Vec<f64> = scores.iter().filter(|s| !s.0).map(|s| s.3).collect();
    ham.sort_by(|a, b| b.total_cmp(a));
    let allowed = (ham.len() as f64 * MAX_FP).floor() as usize;
    // Flag when score > threshold; the threshold is the (allowed+1)-th highest ham score.
    let threshold = ham.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let fp = ham.iter().filter(|&&h| h > threshold).count();
    let spam_total = scores.iter().filter(|s| s.0).count();
    let caught = scores.iter().filter(|s| s.0 && s.3 > threshold).count();
    println!(
        "\n== {name}: threshold {threshold:.4}; FP {fp}/{} ({:.2} %); detection {caught}/{spam_total} ({:.1} %)",
        ham.len(),
        100.0 * fp as f64 / ham.len().max(1) as f64,
        100.0 * caught as f64 / spam_total.max(1) as f64
    );
    let mut by_source: BTreeMap<(&str, bool), (usize, usize)> = BTreeMap::new();
    let mut by_lang: BTreeMap<(&str, bool), (usize, usize)> = BTreeMap::new();
    for (sp, so, la, s) in scores {
        let hit = *s > threshold;
        for (map, key) in [(&mut by_source, *so), (&mut by_lang, *la)] {
            let e = map.entry((key, *sp)).or_default();
            e.0 += 1;
            e.1 += hit as usize;
        }
    }
    for (title, map) in [("source", &by_source), ("language", &by_lang)] {
        println!("  per {title}:  spam detected | ham flagged (FP)");
        let keys: std::collections::BTreeSet<&str> = map.keys().map(|k| k.0).collect();
        for k in keys {
            let s = map.get(&(k, true));
            let h = map.get(&(k, false));
            let fmt = |v: Option<&(usize, usize)>| match v {
                Some((n, hit)) => format!("{hit}/{n} ({:.1} %)", 100.0 * *hit as f64 / *n as f64),
                None => "-".into(),
            };
            println!("    {k:<16} {:<22} | {}", fmt(s), fmt(h));
        }
    }
}
