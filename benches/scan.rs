//! Scoring speed on the repository corpus, the way `outscore scan` scores it:
//! one pass over every message of `corpus/` on one thread (median time per
//! pass; criterion reports messages/s), and the same pass on all cores.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outscore::scan::{self, Scanner};
use outscore::scoring::Engine;

fn corpus_pass(c: &mut Criterion) {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let items = scan::collect(&[corpus]).expect("corpus/ is readable");
    assert!(!items.is_empty());
    let scanner = Scanner::new(Engine::builtin());
    let mut group = c.benchmark_group("scan_corpus");
    group.throughput(Throughput::Elements(items.len() as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            items
                .iter()
                .map(|item| scanner.score(item).score)
                .sum::<f64>()
        })
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    group.bench_function("all_cores", |b| {
        b.iter(|| scan::score_all(&scanner, &items, cores, |_, _| {}).len())
    });
    group.finish();
}

criterion_group!(benches, corpus_pass);
criterion_main!(benches);
