//! Held-out evaluation of the whole scorer, per source and per language.
//!
//! The labelled corpus is split by the sha256 of each manifest path (first
//! byte < 51: held out, about 20 %). A classifier model is trained on the
//! rest (optionally on a subset of its sources, plus extra manifests such as
//! the project's own `corpus/`), then every held-out message is scored three
//! ways:
//!
//! * the whole scorer without the classifier (rules only),
//! * the whole scorer with the classifier (BAYES_SPAM / BAYES_HAM at the
//!   weights of the built-in `scores/`),
//! * the classifier alone, flagging above the probability at which at most
//!   0.5 % of the held-out ham is flagged.
//!
//! "Refused" for the whole scorer is the daemon's action at the reject
//! score: the same engine and verdict code as `outscore scan`. The output is
//! Markdown and depends only on the inputs (no timings, no dates).
//!
//! ```text
//! cargo run --release --example eval_split -- MANIFEST.tsv
//!     [--train-sources a,b] [--exclude-train a,b] [--train-manifest FILE]…
//!     [--threads N] [--save-model FILE] [--model FILE]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use outscore::classifier::{input, Classifier, Model};
use outscore::scan::input::{EnvelopeFacts, Source};
use outscore::scan::{self, Action, Item, Label, Scanner};
use outscore::scoring::Engine;

/// Largest share of held-out ham the classifier-alone column may flag.
const MAX_FP: f64 = 0.005;
/// Languages with fewer held-out messages than this are reported as "other".
const MIN_LANG: usize = 25;

struct Row {
    rel: String,
    path: PathBuf,
    is_spam: bool,
    source: String,
    lang: String,
}

struct Options {
    manifest: PathBuf,
    only: Option<Vec<String>>,
    exclude: Vec<String>,
    extra: Vec<PathBuf>,
    threads: usize,
    save_model: Option<PathBuf>,
    model: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: eval_split MANIFEST.tsv [--train-sources a,b] [--exclude-train a,b] \
         [--train-manifest FILE]... [--threads N] [--save-model FILE] [--model FILE]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        manifest: PathBuf::new(),
        only: None,
        exclude: Vec::new(),
        extra: Vec::new(),
        threads: 2,
        save_model: None,
        model: None,
    };
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let mut manifest = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--train-sources" => o.only = Some(list(value())),
            "--exclude-train" => o.exclude.extend(list(value())),
            "--train-manifest" => o.extra.push(PathBuf::from(value())),
            "--threads" => o.threads = value().parse().unwrap_or_else(|_| usage()),
            "--save-model" => o.save_model = Some(PathBuf::from(value())),
            "--model" => o.model = Some(PathBuf::from(value())),
            s if s.starts_with("--") => usage(),
            s => manifest = Some(PathBuf::from(s)),
        }
    }
    o.manifest = manifest.unwrap_or_else(|| usage());
    o
}

fn read_rows(manifest: &Path) -> Vec<Row> {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let base = manifest.parent().unwrap_or(Path::new("."));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                rel: c[0].to_string(),
                path: base.join(c[0]),
                is_spam: c.get(1) == Some(&"spam"),
                source: c.get(2).unwrap_or(&"-").to_string(),
                lang: c.get(5).unwrap_or(&"und").to_string(),
            }
        })
        .collect()
}

fn held_out(rel: &str) -> bool {
    Sha256::digest(rel.as_bytes())[0] < 51
}

fn train(o: &Options, rows: &[Row]) -> (Classifier, String) {
    if let Some(path) = &o.model {
        let m = Model::load(path).unwrap_or_else(|e| panic!("{e}"));
        return (Classifier::new(m), format!("model {}", path.display()));
    }
    let mut c = Classifier::new(Model::new(outscore::classifier::model::DEFAULT_BITS, true));
    let mut per_source: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut learn = |path: &Path, is_spam: bool, source: &str| {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if c.add(&data, is_spam) {
            let e = per_source.entry(source.to_string()).or_default();
            if is_spam {
                e.0 += 1
            } else {
                e.1 += 1
            }
        }
    };
    for r in rows.iter().filter(|r| !held_out(&r.rel)) {
        let wanted = o.only.as_ref().is_none_or(|only| only.contains(&r.source))
            && !o.exclude.contains(&r.source);
        if wanted {
            learn(&r.path, r.is_spam, &r.source);
        }
    }
    for m in &o.extra {
        let name = format!("{} (whole)", m.display());
        for row in input::manifest(m).unwrap_or_else(|e| panic!("{e}")) {
            learn(&row.path, row.is_spam, &name);
        }
    }
    c.finish();
    if let Some(path) = &o.save_model {
        c.model()
            .save(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let what = per_source
        .iter()
        .map(|(s, (sp, h))| format!("{s} {sp} spam / {h} ham"))
        .collect::<Vec<_>>()
        .join(", ");
    (c, format!("trained on {what}"))
}

/// Per held-out message: (refused without classifier, refused with it,
/// classifier log-odds).
fn score(o: &Options, test: &[&Row], classifier: Classifier) -> Vec<(bool, bool, f64)> {
    let items: Vec<Item> = test
        .iter()
        .map(|r| Item {
            id: r.rel.clone(),
            path: r.path.display().to_string(),
            label: Some(if r.is_spam { Label::Spam } else { Label::Ham }),
            facts: EnvelopeFacts::default(),
            source: Source::File(r.path.clone()),
        })
        .collect();
    let refused = |scanner: &Scanner| -> Vec<bool> {
        scan::score_all(scanner, &items, o.threads, |_, _| {})
            .iter()
            .map(|out| {
                assert!(out.error.is_none(), "{}: {:?}", out.path, out.error);
                out.action == Action::Reject
            })
            .collect()
    };
    let without = refused(&Scanner::new(Engine::builtin()));
    let classifier = Arc::new(classifier);
    let z = {
        // The classifier's own ranking: normalised log-odds (the probability
        // before the logistic function, which saturates at 1.0).
        let chunks: Vec<&[Item]> = items
            .chunks(items.len().div_ceil(o.threads.max(1)))
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let c = classifier.clone();
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|it| {
                                let raw = it.bytes().expect("readable");
                                let (sum, n) = c.score_parts(&raw).unwrap_or((0.0, 0));
                                sum / (n.max(1) as f64).sqrt()
                            })
                            .collect::<Vec<f64>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("scoring thread"))
                .collect::<Vec<f64>>()
        })
    };
    let classifier = Arc::try_unwrap(classifier).unwrap_or_else(|_| unreachable!());
    let with = refused(&Scanner::new(Engine::builtin()).with_classifier(classifier));
    without
        .into_iter()
        .zip(with)
        .zip(z)
        .map(|((a, b), z)| (a, b, z))
        .collect()
}

/// Spam caught / spam, ham flagged / ham.
#[derive(Default, Clone, Copy)]
struct Cell {
    spam: usize,
    caught: usize,
    ham: usize,
    flagged: usize,
}

impl Cell {
    fn add(&mut self, is_spam: bool, hit: bool) {
        if is_spam {
            self.spam += 1;
            self.caught += hit as usize;
        } else {
            self.ham += 1;
            self.flagged += hit as usize;
        }
    }
}

fn rate(hit: usize, n: usize) -> String {
    if n == 0 {
        "–".into()
    } else {
        format!("{hit}/{n} ({:.1} %)", 100.0 * hit as f64 / n as f64)
    }
}

/// One table: a row per group, detection and FP for the three set-ups.
fn table(title: &str, groups: &BTreeMap<String, [Cell; 3]>, total: &[Cell; 3]) {
    println!("\n### {title}\n");
    println!(
        "| {title} | messages | rules only: detection | rules only: FP | with classifier: detection | with classifier: FP | classifier alone: detection | classifier alone: FP |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let line = |name: &str, c: &[Cell; 3]| {
        let mut s = format!("| {name} | {} |", c[0].spam + c[0].ham);
        for x in c {
            s.push_str(&format!(
                " {} | {} |",
                rate(x.caught, x.spam),
                rate(x.flagged, x.ham)
            ));
        }
        println!("{s}");
    };
    for (name, c) in groups {
        line(name, c);
    }
    line("**all**", total);
}

fn main() {
    let o = options();
    let rows = read_rows(&o.manifest);
    let (classifier, trained) = train(&o, &rows);
    let test: Vec<&Row> = rows.iter().filter(|r| held_out(&r.rel)).collect();
    let scored = score(&o, &test, classifier);

    // Classifier-alone threshold: the (allowed+1)-th highest ham log-odds.
    let mut ham: Vec<f64> = test
        .iter()
        .zip(&scored)
        .filter(|(r, _)| !r.is_spam)
        .map(|(_, s)| s.2)
        .collect();
    ham.sort_by(|a, b| b.total_cmp(a));
    let allowed = (ham.len() as f64 * MAX_FP).floor() as usize;
    let threshold = ham.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let probability = 1.0 / (1.0 + (-threshold).exp());

    let mut lang_count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &test {
        *lang_count.entry(&r.lang).or_default() += 1;
    }
    let lang_of = |l: &str| {
        if lang_count[l] >= MIN_LANG {
            l.to_string()
        } else {
            "other".to_string()
        }
    };
    let others: BTreeSet<&str> = lang_count
        .iter()
        .filter(|(_, n)| **n < MIN_LANG)
        .map(|(l, _)| *l)
        .collect();

    let mut by_source: BTreeMap<String, [Cell; 3]> = BTreeMap::new();
    let mut by_lang: BTreeMap<String, [Cell; 3]> = BTreeMap::new();
    let mut total = [Cell::default(); 3];
    for (r, (without, with, z)) in test.iter().zip(&scored) {
        let hits = [*without, *with, *z > threshold];
        for cells in [
            by_source.entry(r.source.clone()).or_default(),
            by_lang.entry(lang_of(&r.lang)).or_default(),
            &mut total,
        ] {
            for (c, hit) in cells.iter_mut().zip(hits) {
                c.add(r.is_spam, hit);
            }
        }
    }

    println!(
        "- Held-out part: {} messages ({} spam, {} ham), sha256(path)[0] < 51 of {}.",
        test.len(),
        total[0].spam,
        total[0].ham,
        o.manifest.display()
    );
    println!("- Classifier: {trained}.");
    println!(
        "- Classifier alone: flagged above log-odds {threshold:.3} (probability {probability:.6}), \
         at most {allowed} of {} held-out ham ({:.1} %).",
        ham.len(),
        100.0 * MAX_FP
    );
    println!(
        "- Whole scorer: refused = the daemon's reject action (score ≥ {}).",
        Engine::builtin().reject_score()
    );
    table("source", &by_source, &total);
    table("language", &by_lang, &total);
    println!(
        "\n\"other\" languages (fewer than {MIN_LANG} held-out messages each): {}.",
        others.into_iter().collect::<Vec<_>>().join(", ")
    );
}
