//! The policy over the real store, SQLite and PostgreSQL alike: limits are
//! exact when relays race (two stores on one PostgreSQL schema), and the
//! account life cycle (tier → block → reset → relapse → suspension →
//! unblock, 90-day rule) persists and reads back through the database, with
//! its notifications delivered from the database outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outscore::config::{AccountsConfig, LimitsConfig, NotifyConfig};
use outscore::notify::{run_worker, Notifier, OutboxQueue, WorkerOptions};
use outscore::policy::service::{Enforcer, ServiceError};
use outscore::policy::store::{AccountRepo, VolumeCounters};
use outscore::policy::{
    Actor, CounterKey, Directory, Effect, MemberOutcome, Outgoing, Policy, Scored, Tier, TierTable,
    TransitionError,
};
use outscore::smtp::Decision;
use outscore::store::{AuditLog, Store};
use tokio_util::sync::CancellationToken;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Both backends; the second store of a pair is another relay on the same
/// database (PostgreSQL) or another pool on the same file (SQLite).
async fn backends() -> Vec<(
    &'static str,
    Store,
    Store,
    Option<crate::support::store::PgDb>,
)> {
    let mut out = Vec::new();
    let sqlite = crate::support::store::sqlite().await;
    let second = Store::connect(&sqlite.url, crate::support::store::options())
        .await
        .unwrap();
    let first = sqlite.store.clone();
    // Keep the temp dir alive for the test's duration.
    std::mem::forget(sqlite.dir);
    out.push(("sqlite", first, second, None));
    if let Some(pg) = crate::support::store::postgres().await {
        let second = pg.second().await;
        out.push(("postgres", pg.store.clone(), second, Some(pg)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capped_set_is_exact_when_relays_race() {
    for (name, a, b, pg) in backends().await {
        let key = CounterKey {
            key: "ext:racer@hosted.example".into(),
            window_start: 1_000,
        };
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let member = format!("r{i}@x.example");
                let outcome = store.add_member_capped(&key, &member, 25).await.unwrap();
                (member, outcome)
            }));
        }
        let mut added = 0;
        let mut full = 0;
        let mut an_added = String::new();
        let mut a_refused = String::new();
        for task in tasks {
            let (member, outcome) = task.await.unwrap();
            match outcome {
                MemberOutcome::Added(n) => {
                    assert!(n <= 25, "{name}: set grew to {n}");
                    added += 1;
                    an_added = member;
                }
                MemberOutcome::Full(n) => {
                    assert_eq!(n, 25, "{name}");
                    full += 1;
                    a_refused = member;
                }
                MemberOutcome::Known => panic!("{name}: all members are distinct"),
            }
        }
        assert_eq!((added, full), (25, 15), "{name}");
        // A member already in is free; a refused one stays refused.
        assert_eq!(
            a.add_member_capped(&key, &an_added, 25).await.unwrap(),
            MemberOutcome::Known,
            "{name}"
        );
        assert_eq!(
            b.add_member_capped(&key, &a_refused, 25).await.unwrap(),
            MemberOutcome::Full(25),
            "{name}"
        );

        // The rate counter: 300 racing messages, exactly 50 over 250.
        let rate = CounterKey {
            key: "rate:racer@hosted.example".into(),
            window_start: 1_200_000,
        };
        let mut tasks = Vec::new();
        for i in 0..300 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let rate = rate.clone();
            tasks.push(tokio::spawn(async move {
                store.incr_and_get(&rate, 1).await.unwrap()
            }));
        }
        let mut values = HashSet::new();
        for task in tasks {
            values.insert(task.await.unwrap());
        }
        assert_eq!(values.len(), 300, "{name}: every value seen once");
        assert_eq!(values.iter().filter(|&&v| v > 250).count(), 50, "{name}");
        assert_eq!(a.get(&rate).await.unwrap(), 300, "{name}");
        if let Some(pg) = pg {
            b.close().await;
            pg.drop_schema().await;
        }
    }
}

fn policy() -> Policy {
    Policy::new(
        TierTable::builtin(),
        LimitsConfig {
            hosted_domains: vec!["hosted.example".into()],
            ..LimitsConfig::default()
        },
        &AccountsConfig::default(),
        Directory::default(),
    )
}

fn enforcer(store: Store, dir: &std::path::Path) -> outscore::pipeline::StoreEnforcer {
    let out = dir.join("notified.jsonl");
    let script = format!("cat >> '{}'; echo >> '{}'", out.display(), out.display());
    let notify = NotifyConfig {
        command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        retry_initial: Duration::from_millis(100),
        ..NotifyConfig::default()
    };
    Enforcer::new(
        Arc::new(policy()),
        store.clone(),
        store.clone(),
        outscore::notify::EventQueue::new(
            Arc::new(store),
            Arc::new(Notifier::new(notify, 90).unwrap()),
        ),
    )
}

fn spam(score: f64) -> Scored<'static> {
    Scored {
        score,
        reject_score: 15.0,
        symbols: &[],
        refused: false,
    }
}

#[tokio::test]
async fn account_life_cycle_persists_through_the_database() {
    for (name, store, second, pg) in backends().await {
        let tmp = tempfile::tempdir().unwrap();
        let e = enforcer(store.clone(), tmp.path());
        let acct = "victim@hosted.example";
        let mut now = t("2026-11-22T10:00:00Z");

        // Spam-scored message: L-SPAM00, stored as password_reset_required.
        let mut facts = e.facts(acct, now).await.unwrap();
        assert!(!e
            .at_mail(&mut facts, None, now, false)
            .await
            .unwrap()
            .is_refusal());
        let out = e
            .at_eom(
                &mut facts,
                &spam(16.0),
                &Outgoing::sized(100),
                "00000000000000a1",
                now,
                false,
            )
            .await
            .unwrap();
        assert_eq!(out.tier.unwrap().tier, Tier::LSpam00, "{name}");
        // Another relay sees the block at MAIL FROM.
        let other = enforcer(second.clone(), tmp.path());
        now += chrono::Duration::minutes(1);
        let mut facts = other.facts(acct, now).await.unwrap();
        let gate = other.at_mail(&mut facts, None, now, false).await.unwrap();
        match &gate.decision {
            Decision::Reply(r) => {
                assert!(r.to_string().contains("L-SPAM00"), "{name}: {r}");
                assert!(r.to_string().contains("00000000000000a1"), "{name}: {r}");
            }
            d => panic!("{name}: {d:?}"),
        }

        // Reset confirmed; then spam again → L-SPAM20 suspension.
        now += chrono::Duration::hours(1);
        e.reset_done(acct, &Actor::Customer("panel".into()), None, now)
            .await
            .unwrap();
        now += chrono::Duration::hours(1);
        let mut facts = e.facts(acct, now).await.unwrap();
        assert_eq!(facts.history.resets_90d, 1, "{name}");
        let out = e
            .at_eom(
                &mut facts,
                &spam(17.0),
                &Outgoing::sized(100),
                "00000000000000a2",
                now,
                false,
            )
            .await
            .unwrap();
        assert_eq!(out.tier.unwrap().tier, Tier::LSpam20, "{name}");
        assert_eq!(
            AccountRepo::status(&store, acct).await.unwrap().name(),
            "suspended"
        );

        // First self-service unblock works; the second within 90 days is
        // refused; the abuse team can, with a reason.
        now += chrono::Duration::days(1);
        let customer = Actor::Customer("victim".into());
        e.unblock(acct, &customer, None, now).await.unwrap();
        now += chrono::Duration::days(3);
        let mut facts = e.facts(acct, now).await.unwrap();
        let out = e
            .at_eom(
                &mut facts,
                &spam(16.0),
                &Outgoing::sized(100),
                "00000000000000a3",
                now,
                false,
            )
            .await
            .unwrap();
        assert_eq!(out.tier.unwrap().tier, Tier::LSpam31, "{name}");
        let err = e.unblock(acct, &customer, None, now).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Refused(TransitionError::TooSoon { .. })),
            "{name}: {err}"
        );
        e.unblock(acct, &Actor::Abuse("maria".into()), Some("checked"), now)
            .await
            .unwrap();
        assert_eq!(
            AccountRepo::status(&store, acct).await.unwrap().name(),
            "active"
        );

        // The audit log has every change, who and why.
        let audit = store.audit_entries(Some(acct), 100).await.unwrap();
        let actions: Vec<&str> = audit
            .iter()
            .rev()
            .map(|r| r.entry.action.as_str())
            .collect();
        assert_eq!(
            actions,
            ["tier", "reset_done", "tier", "unblock", "tier", "unblock"],
            "{name}"
        );
        assert_eq!(audit[0].entry.actor, "abuse:maria", "{name}");

        // Notifications wait in the database outbox and are delivered.
        let pending = OutboxQueue::pending(&store).await.unwrap();
        assert_eq!(pending, 6, "{name}: 3 blocks, 1 reset, 2 unblocks");
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run_worker(
            Arc::new(store.clone()),
            e.events.notifier(),
            e.events.wake.clone(),
            WorkerOptions {
                poll: Duration::from_millis(50),
                ..WorkerOptions::default()
            },
            stop.clone(),
        ));
        for _ in 0..200 {
            if OutboxQueue::pending(&store).await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        worker.await.unwrap();
        let text = std::fs::read_to_string(tmp.path().join("notified.jsonl")).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds.len(), 6, "{name}: {kinds:?}");
        if let Some(pg) = pg {
            second.close().await;
            pg.drop_schema().await;
        }
    }
}

/// Two reviewers (here on two relays) lift the same block at the same
/// moment: the one whose decision rests on a state already changed writes
/// nothing, notifies nobody and is told so.
#[tokio::test]
async fn a_lost_race_writes_nothing_and_notifies_nobody() {
    for (name, store, second, pg) in backends().await {
        let tmp = tempfile::tempdir().unwrap();
        let a = enforcer(store.clone(), tmp.path());
        let b = enforcer(second.clone(), tmp.path());
        let acct = "racer@hosted.example";
        let now = t("2026-11-22T10:00:00Z");
        let (maria, tom) = (Actor::Abuse("maria".into()), Actor::Abuse("tom".into()));
        a.suspend(acct, &maria, "phishing run", None, now)
            .await
            .unwrap();
        // Relay B reads the account; relay A lifts the block first.
        let stale = b.facts(acct, now).await.unwrap();
        a.lift(acct, &maria, "password changed", now).await.unwrap();
        let (lift, notice) = policy()
            .lift(&stale, &tom, Some("checked too"), now)
            .unwrap();
        let err = b
            .persist(&[Effect::Transition(lift), Effect::Notify(notice)])
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::Refused(TransitionError::Changed { .. })),
            "{name}: {err}"
        );
        let audit = store.audit_entries(Some(acct), 100).await.unwrap();
        let actions: Vec<&str> = audit
            .iter()
            .rev()
            .map(|r| r.entry.action.as_str())
            .collect();
        assert_eq!(actions, ["suspend", "unblock"], "{name}");
        assert_eq!(audit[0].entry.actor, "abuse:maria", "{name}");
        assert_eq!(
            OutboxQueue::pending(&store).await.unwrap(),
            2,
            "{name}: one suspension notice, one unblock notice"
        );
        // Asked again, relay B sees the account is no longer blocked.
        let err = b.lift(acct, &tom, "checked too", now).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Refused(TransitionError::NotBlocked(_))),
            "{name}: {err}"
        );
        if let Some(pg) = pg {
            second.close().await;
            pg.drop_schema().await;
        }
    }
}

/// The complaint period on a controlled clock, on every backend: a
/// first-offence suspension (L-SPAM20 after a reset) cannot be unblocked
/// by the customer for 24 h, can be after; the abuse team lifts at once.
#[tokio::test]
async fn complaint_period_on_a_controlled_clock() {
    for (name, store, _, _) in backends().await {
        let tmp = tempfile::tempdir().unwrap();
        let e = enforcer(store.clone(), tmp.path());
        let customer = Actor::Customer("panel".into());
        let abuse = Actor::Abuse("maria".into());
        let start = t("2026-11-22T10:00:00Z");
        for acct in ["cp-a@hosted.example", "cp-b@hosted.example"] {
            e.suspend(acct, &abuse, "spam run", Some(Tier::LSpam20), start)
                .await
                .unwrap();
        }
        let acct = "cp-a@hosted.example";
        let early = start + chrono::Duration::hours(23);
        match e.unblock(acct, &customer, None, early).await {
            Err(ServiceError::Refused(TransitionError::ComplaintPeriod { next, .. })) => {
                assert_eq!(next, start + chrono::Duration::hours(24), "{name}")
            }
            other => panic!("{name}: expected the complaint period, got {other:?}"),
        }
        let later = start + chrono::Duration::hours(24);
        let t = e.unblock(acct, &customer, None, later).await.unwrap();
        assert!(t.unblock.unwrap().self_service, "{name}");
        let t = e
            .lift("cp-b@hosted.example", &abuse, "verified", start)
            .await
            .unwrap();
        assert_eq!(t.to, outscore::policy::AccountStatus::Active, "{name}");
    }
}
