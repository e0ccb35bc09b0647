//! Scoring speed on corpus messages: parse+score messages/s (and MB/s),
//! parse+classify+score (the daemon's whole content path), and
//! the multi-pattern engines' MB/s on the same texts: the Aho-Corasick
//! keyword automaton, Hyperscan and the pure-Rust regex-set fallback.
//!
//! `cargo bench --bench scoring` (corpus: `$OUTSCORE_CORPUS`, default
//! ../shared/corpus beside the checkout; a built-in sample is used when it is missing).

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use outscore::classifier::{builtin_model, Classifier};
use outscore::envelope::Envelope;
use outscore::message::parse;
use outscore::rules::matcher::{MatcherKind, RegexRules};
use outscore::rules::Context;
use outscore::scan::input::{EnvelopeFacts, Source};
use outscore::scan::{Item, Scanner};
use outscore::scoring::scores::{self, parse_regex_rules, BUILTIN};
use outscore::scoring::Engine;

/// Every 8th corpus message (about 1,150), so a run stays short.
fn sample() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(
        std::env::var("OUTSCORE_CORPUS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus").into()),
    );
    let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST.tsv")) else {
        return vec![
            b"From: a@b.example\r\nSubject: Cheap VIAGRA\r\n\r\nOnline pharmacy, no prescription\r\n".to_vec(),
            b"From: a@b.example\r\nSubject: Meeting\r\n\r\nSee you on Tuesday.\r\n".to_vec(),
        ];
    };
    manifest
        .lines()
        .skip(1)
        .step_by(8)
        .filter_map(|l| std::fs::read(dir.join(l.split('\t').next()?)).ok())
        .collect()
}

fn bench(c: &mut Criterion) {
    let messages = sample();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let engine = Engine::builtin();
    let envelope = Envelope::default();

    let mut g = c.benchmark_group("parse_score");
    g.sample_size(10);
    g.throughput(Throughput::Elements(messages.len() as u64));
    g.bench_function("messages", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(engine.scan(&envelope, m));
            }
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("bytes", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(engine.scan(&envelope, m));
            }
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(parse(m));
            }
        })
    });
    g.finish();

    // What the daemon does per message: the classifier (the shipped default
    // model) and the rules, through the same code as `outscore scan`.
    let scanner = Scanner::new(engine.clone()).with_classifier(Classifier::new(builtin_model()));
    let items: Vec<Item> = messages
        .iter()
        .enumerate()
        .map(|(n, m)| Item {
            id: n.to_string(),
            path: n.to_string(),
            label: None,
            facts: EnvelopeFacts::default(),
            source: Source::Bytes(Arc::from(m.as_slice())),
        })
        .collect();
    let mut g = c.benchmark_group("parse_classify_score");
    g.sample_size(10);
    g.throughput(Throughput::Elements(messages.len() as u64));
    g.bench_function("messages", |b| {
        b.iter(|| {
            for item in &items {
                black_box(scanner.score(item));
            }
        })
    });
    g.finish();

    // The texts the matchers see: normalised subject + body + URLs.
    let parsed: Vec<_> = messages.iter().map(|m| parse(m)).collect();
    let haystacks: Vec<String> = parsed
        .iter()
        .map(|m| RegexRules::haystack(&Context::new(m)))
        .collect();
    let hay_bytes: usize = haystacks.iter().map(String::len).sum();
    let compiled = scores::builtin().expect("built-in scores");
    let text = BUILTIN.iter().find(|(n, _)| *n == "regex.toml").unwrap().1;
    let rules = parse_regex_rules(text).unwrap();

    let mut g = c.benchmark_group("engines");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(hay_bytes as u64));
    g.bench_function("aho_corasick_keywords", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for h in &haystacks {
                compiled.keywords.find(h, |_, _| n += 1);
            }
            black_box(n)
        })
    });
    let mut seen = Vec::new();
    for kind in [MatcherKind::Hyperscan, MatcherKind::RegexSet] {
        let r = RegexRules::with_kind(rules.clone(), kind).unwrap();
        // Without the hyperscan feature both kinds are the regex-set engine.
        if seen.contains(&r.engine()) {
            continue;
        }
        seen.push(r.engine());
        g.bench_function(format!("regex_{}", r.engine()), |b| {
            b.iter(|| {
                let mut n = 0usize;
                for h in &haystacks {
                    n += r.matching(h).len();
                }
                black_box(n)
            })
        });
    }
    g.finish();
    // Normalisation alone, for reference.
    let mut g = c.benchmark_group("normalise");
    g.sample_size(10);
    let texts: Vec<&str> = parsed.iter().map(|m| m.text.as_str()).collect();
    g.throughput(Throughput::Bytes(
        texts.iter().map(|t| t.len()).sum::<usize>() as u64,
    ));
    g.bench_function("nfkc_casefold", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(outscore::message::Normalized::new(t));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
