//! Sender identity cost per message: the identity rules alone, the whole
//! check with a warm DNS cache (goal: under 50 µs), a cold cache against a
//! loopback dnsmasq, and a silent DNS server (bounded by the budget).

// Shared with the integration tests; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/support/identity.rs"]
mod identity_support;

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use identity_support::{Dns, SilentDns, EGRESS};
use outscore::auth::identity::IdentityChecker;
use outscore::config::Config;
use outscore::envelope::Envelope;

const RAW: &[u8] = b"From: PayPal <support@paypal.com>\r\nTo: victim@example.net\r\n\
Subject: Your account\r\nMessage-ID: <1@x>\r\n\r\nVerify now.\r\n";

fn checker(resolver: std::net::SocketAddr, budget: &str) -> IdentityChecker {
    let text = format!(
        "[spf]\negress_ips = [\"{EGRESS}\"]\nresolver = \"{resolver}\"\n\
         lookup_timeout = \"{budget}\"\nbudget = \"{budget}\"\n"
    );
    let config = Config::parse(Path::new("bench.toml"), &text).expect("config");
    IdentityChecker::from_config(&config).expect("checker")
}

fn envelope() -> Envelope {
    Envelope {
        auth_login: Some("alice@customer.example".into()),
        mail_from: "ceo@bank.example".into(),
        rcpts: vec!["victim@example.net".into()],
        ..Envelope::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dns = Dns::start();
    let env = envelope();

    let warm = checker(dns.addr, "2s");
    let first = rt.block_on(warm.check(&env, RAW));
    assert_eq!(first.symbols.len(), 5, "{:?}", first.symbols);
    let mut group = c.benchmark_group("identity");
    group.bench_function("warm_cache_check", |b| {
        b.iter(|| rt.block_on(warm.check(&env, RAW)))
    });
    let facts = first.facts.clone();
    let sender = first.sender.clone();
    group.bench_function("rules_only", |b| {
        b.iter(|| {
            let from = outscore::rules::identity::header_from_addresses(RAW);
            outscore::rules::identity::evaluate(
                &env,
                &from,
                &facts,
                sender.as_ref(),
                Default::default(),
            )
        })
    });
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("cold_cache_check_loopback_dns", |b| {
        b.iter_batched(
            || checker(dns.addr, "2s"),
            |cold| rt.block_on(cold.check(&env, RAW)),
            criterion::BatchSize::PerIteration,
        )
    });
    let silent = SilentDns::start();
    let stuck = checker(silent.addr, "50ms");
    group.sample_size(10);
    group.bench_function("silent_dns_budget_50ms", |b| {
        b.iter(|| rt.block_on(stuck.check(&env, RAW)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
