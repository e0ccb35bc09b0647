//! Cost of the policy decisions per message: tier evaluation with the
//! shipped table, deriving an account's facts from its audit log, and the
//! whole end-of-message decision.

use chrono::{DateTime, Duration, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use outscore::config::{AccountsConfig, LimitsConfig};
use outscore::policy::{
    AccountFacts, AccountStatus, AuditEntry, Directory, History, Outgoing, Policy, Scored,
    SpamCounts, TierTable,
};

fn bench(c: &mut Criterion) {
    let table = TierTable::builtin();
    let symbols = ["KW_PHISHING", "URL_PHISH_PATH", "MISSING_DATE"];
    let history = History {
        spam_last_hour: 4,
        spam_last_day: 12,
        ..History::default()
    };
    c.bench_function("tiers_evaluate_spam", |b| {
        b.iter(|| {
            table.evaluate(
                black_box(&Scored {
                    score: 18.0,
                    reject_score: 15.0,
                    symbols: &symbols,
                    refused: false,
                }),
                black_box(&history),
            )
        })
    });
    c.bench_function("tiers_evaluate_clean", |b| {
        b.iter(|| {
            table.evaluate(
                black_box(&Scored {
                    score: 2.0,
                    reject_score: 15.0,
                    symbols: &symbols,
                    refused: false,
                }),
                black_box(&History::default()),
            )
        })
    });
    let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
    let audit: Vec<AuditEntry> = (0..200)
        .map(|i| AuditEntry {
            at: now - Duration::hours(i),
            actor: "system".into(),
            account: "a@b.example".into(),
            action: if i % 2 == 0 { "prison" } else { "tier" }.into(),
            detail: serde_json::json!({"from": "active", "tier": "L-SPAM00",
                "until": (now - Duration::hours(i) + Duration::minutes(20)).to_rfc3339()}),
        })
        .collect();
    c.bench_function("facts_derive_200_audit_entries", |b| {
        b.iter(|| {
            AccountFacts::derive(
                "a@b.example",
                AccountStatus::Active,
                black_box(&audit),
                Vec::new(),
                SpamCounts::default(),
                Duration::days(30),
                now,
            )
        })
    });
    let policy = Policy::new(
        table.clone(),
        LimitsConfig::default(),
        &AccountsConfig::default(),
        Directory::default(),
    );
    c.bench_function("policy_at_eom_spam", |b| {
        b.iter(|| {
            let mut facts = AccountFacts::fresh("a@b.example");
            policy.at_eom(
                &mut facts,
                black_box(&Scored {
                    score: 18.0,
                    reject_score: 15.0,
                    symbols: &symbols,
                    refused: false,
                }),
                &Outgoing::sized(4096),
                "0123456789abcdef",
                now,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
