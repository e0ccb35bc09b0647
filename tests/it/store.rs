//! The store test suite: every test runs against SQLite and PostgreSQL
//! alike (a fresh file / a fresh schema each). When PostgreSQL cannot be
//! reached the PostgreSQL half says so on stderr and does not run, unless
//! `OUTSCORE_REQUIRE_POSTGRES=1`, which makes it fail.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::support::store::*;
use chrono::Utc;
use outscore::store::{
    now_ms, purge_once, spawn_writer_with, AccountChange, AccountStatus, AccountStore, AuditEntry,
    AuditLog, Content, Counters, Outbox, ReportFilter, ReportId, ReportStore, Spool, Store,
    Submitted, UnblockRequest, WriterOptions,
};

both_backends!(
    reports_round_trip_and_idempotent_insert,
    list_filters_and_stable_paging,
    retention_hides_then_purges,
    account_state_and_unblocks,
    audit_log,
    outbox_claims_with_a_lease,
    counters_add_up_under_concurrency,
    writer_batches_every_report,
    spool_is_replayed_first_at_start_up,
    full_queue_overflows_to_the_spool,
    refused_report_is_set_aside_not_blocking,
    purge_task_removes_expired_reports,
);

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

async fn reports_round_trip_and_idempotent_insert(store: &Store) {
    let now = now_ms();
    let mut reports: Vec<_> = (0..3)
        .map(|i| report(i, "Alice@Example.com", now, 7.5, Some("L-SPAM10")))
        .collect();
    // Mail can carry NUL bytes; PostgreSQL text cannot. The report keeps them.
    reports[1].report.message.subject = Some("nul\0inside".into());
    assert_eq!(store.insert_reports(&reports).await.unwrap(), 3);
    // The same reports again (a replay) add nothing.
    assert_eq!(store.insert_reports(&reports).await.unwrap(), 0);
    assert_eq!(store.count_reports().await.unwrap(), 3);

    let got = store.report(&reports[1].id).await.unwrap().expect("stored");
    assert_eq!(got.id, reports[1].id);
    assert_eq!(got.created_at, now);
    assert_eq!(got.account.as_deref(), Some("alice@example.com"));
    assert_eq!(got.envelope, reports[1].envelope);
    assert_eq!(got.report, reports[1].report);
    assert_eq!(got.tier.as_deref(), Some("L-SPAM10"));
    assert_eq!(got.action, "reject");
    assert_eq!(got.content_size, reports[1].content.len() as u64);
    assert_eq!(
        got.report.symbols[0].evidence,
        vec!["keyword 'viagra' in Subject (report 1)".to_string()]
    );

    match store.content(&reports[2].id).await.unwrap() {
        Content::Found(bytes) => assert_eq!(bytes, reports[2].content),
        other => panic!("content: {other:?}"),
    }
    let missing = ReportId::random();
    assert!(store.report(&missing).await.unwrap().is_none());
    assert_eq!(store.content(&missing).await.unwrap(), Content::NotFound);
}

async fn list_filters_and_stable_paging(store: &Store) {
    let base = now_ms() - hours(10);
    let mut all = Vec::new();
    for i in 0..30 {
        let account = if i % 3 == 0 {
            "bob@example.com"
        } else {
            "carol@example.com"
        };
        let tier = (i % 4 == 0).then_some("L-SPAM20");
        // Pairs share a timestamp so the id breaks ties.
        let at = base + chrono::Duration::minutes((i / 2) as i64);
        all.push(report(i, account, at, i as f64, tier));
    }
    store.insert_reports(&all).await.unwrap();

    let ids = |page: &outscore::store::ReportPage| -> Vec<String> {
        page.reports.iter().map(|r| r.id.to_string()).collect()
    };
    let list = |filter: ReportFilter| async move {
        store.list_reports(&filter, 1000, None).await.unwrap()
    };

    let bob = list(ReportFilter {
        account: Some("BOB@example.com".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(bob.reports.len(), 10);
    assert!(bob
        .reports
        .iter()
        .all(|r| r.account.as_deref() == Some("bob@example.com")));

    let tiered = list(ReportFilter {
        tier: Some("L-SPAM20".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(tiered.reports.len(), 8);

    let scored = list(ReportFilter {
        min_score: Some(10.0),
        max_score: Some(19.5),
        ..Default::default()
    })
    .await;
    assert_eq!(scored.reports.len(), 10);

    let window = list(ReportFilter {
        since: Some(base + chrono::Duration::minutes(2)),
        until: Some(base + chrono::Duration::minutes(4)),
        ..Default::default()
    })
    .await;
    assert_eq!(window.reports.len(), 4, "minutes 2 and 3, two reports each");

    let by_queue = list(ReportFilter {
        queue_id: Some("Q000017".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_queue), vec![all[17].id.to_string()]);

    let by_msgid = list(ReportFilter {
        message_id: Some("<msg23@example.com>".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_msgid), vec![all[23].id.to_string()]);
    assert_eq!(by_msgid.reports[0].subject.as_deref(), Some("subject 23"));

    let by_rcpt = list(ReportFilter {
        recipient: Some("RCPT3@example.org".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_rcpt.reports.len(), 6);
    let shared = list(ReportFilter {
        recipient: Some("shared@example.org".into()),
        action: Some("reject".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(shared.reports.len(), 30);
    let none = list(ReportFilter {
        action: Some("accept".into()),
        ..Default::default()
    })
    .await;
    assert!(none.reports.is_empty());

    // Pages of 7 walk every report once, newest first, even when newer
    // reports arrive between pages.
    let mut seen = Vec::new();
    let mut cursor = None;
    for page_no in 0..10 {
        let page = store
            .list_reports(&ReportFilter::default(), 7, cursor.as_ref())
            .await
            .unwrap();
        seen.extend(
            page.reports
                .iter()
                .map(|r| (r.created_at, r.id.to_string())),
        );
        if page_no == 1 {
            store
                .insert_reports(&[report(99, "late@example.com", now_ms(), 1.0, None)])
                .await
                .unwrap();
        }
        match page.next {
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<_> = {
        let mut v: Vec<_> = all
            .iter()
            .map(|r| (r.created_at, r.id.to_string()))
            .collect();
        v.sort();
        v.reverse();
        v
    };
    assert_eq!(seen, expected);
}

async fn retention_hides_then_purges(store: &Store) {
    let retention = store.options().retention;
    let old_at = now_ms() - chrono::Duration::from_std(retention).unwrap() - hours(1);
    let old: Vec<_> = (0..5)
        .map(|i| report(i, "old@example.com", old_at, 1.0, None))
        .collect();
    let fresh = report(9, "new@example.com", now_ms(), 1.0, None);
    store.insert_reports(&old).await.unwrap();
    store
        .insert_reports(std::slice::from_ref(&fresh))
        .await
        .unwrap();
    assert_eq!(store.count_reports().await.unwrap(), 6);

    // Past retention but not yet purged: never served.
    assert!(store.report(&old[0].id).await.unwrap().is_none());
    assert_eq!(store.content(&old[0].id).await.unwrap(), Content::Expired);
    let listed = store
        .list_reports(&ReportFilter::default(), 100, None)
        .await
        .unwrap();
    assert_eq!(listed.reports.len(), 1);

    // Purged in batches of 2: three rounds for five reports.
    let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap();
    let stats = store.purge_reports_before(cutoff, 2).await.unwrap();
    assert_eq!(stats.reports, 5);
    assert!(stats.batches >= 3, "{stats:?}");
    assert_eq!(store.count_reports().await.unwrap(), 1);
    assert_eq!(store.content(&old[0].id).await.unwrap(), Content::NotFound);
    assert!(matches!(
        store.content(&fresh.id).await.unwrap(),
        Content::Found(_)
    ));
    // The recipients went with them.
    let by_rcpt = store
        .list_reports(
            &ReportFilter {
                recipient: Some("shared@example.org".into()),
                since: Some(old_at - hours(1)),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_rcpt.reports.len(), 1);
    // The whole pass (as `outscore purge` runs it) has nothing left to do.
    let again = purge_once(store, store.options()).await.unwrap();
    assert_eq!(again.reports.reports, 0);
}

async fn account_state_and_unblocks(store: &Store) {
    let t0 = now_ms() - hours(3);
    assert!(store
        .account_state("dave@example.com")
        .await
        .unwrap()
        .is_none());
    let change = |status, at, tier: &str| AccountChange {
        account: "Dave@Example.com".into(),
        status,
        at,
        tier: Some(tier.into()),
        report_id: Some("0123456789abcdef".into()),
        reason: Some("spam".into()),
    };
    let s1 = store
        .set_account_state(&change(
            AccountStatus::PasswordResetRequired,
            t0,
            "L-SPAM00",
        ))
        .await
        .unwrap();
    assert_eq!(s1.status, AccountStatus::PasswordResetRequired);
    assert_eq!(s1.since, t0);
    assert_eq!(s1.version, 1);
    // Same status again: `since` stays, the version moves.
    let s2 = store
        .set_account_state(&change(
            AccountStatus::PasswordResetRequired,
            t0 + hours(1),
            "L-SPAM10",
        ))
        .await
        .unwrap();
    assert_eq!(s2.since, t0);
    assert_eq!(s2.tier.as_deref(), Some("L-SPAM10"));
    assert_eq!(s2.version, 2);
    // Escalation: a new status starts a new `since`.
    let s3 = store
        .set_account_state(&change(AccountStatus::Suspended, t0 + hours(2), "L-SPAM30"))
        .await
        .unwrap();
    assert_eq!(s3.since, t0 + hours(2));
    assert_eq!(s3.account, "dave@example.com");

    let blocked = store.blocked_accounts(10).await.unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].status, AccountStatus::Suspended);

    let request = UnblockRequest {
        account: "dave@example.com".into(),
        at: t0 + hours(3),
        by: "abuse-team".into(),
        self_service: false,
        reason: Some("customer cleaned the PC".into()),
    };
    let after = store.unblock(&request).await.unwrap().expect("was blocked");
    assert_eq!(after.status, AccountStatus::Active);
    assert!(after.tier.is_none());
    // Not blocked any more: nothing to unblock, nothing recorded.
    assert!(store.unblock(&request).await.unwrap().is_none());
    let history = store.unblock_history("dave@example.com").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].previous, AccountStatus::Suspended);
    assert_eq!(history[0].at, t0 + hours(3));
    assert!(!history[0].self_service);
    assert!(store.blocked_accounts(10).await.unwrap().is_empty());
}

async fn audit_log(store: &Store) {
    let now = now_ms();
    for (i, account) in ["a@x.org", "b@x.org", "a@x.org"].iter().enumerate() {
        store
            .audit(&AuditEntry {
                at: now - hours(24 * 500) + hours(24 * 250 * i as i64),
                actor: "system".into(),
                account: Some(account.to_string()),
                action: "suspend".into(),
                detail: serde_json::json!({"tier": "L-SPAM20", "n": i}),
            })
            .await
            .unwrap();
    }
    let a = store.audit_entries(Some("A@x.org"), 10).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].entry.detail["n"], 2, "newest first");
    assert_eq!(store.audit_entries(None, 10).await.unwrap().len(), 3);
    // 400-day audit retention: the 500-day-old entry goes.
    let cutoff = Utc::now() - chrono::Duration::from_std(store.options().audit_retention).unwrap();
    assert_eq!(store.purge_audit_before(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.audit_entries(None, 10).await.unwrap().len(), 2);
}

async fn outbox_claims_with_a_lease(store: &Store) {
    let now = now_ms();
    let a = store
        .enqueue("email", &serde_json::json!({"to": "a@x.org"}), now)
        .await
        .unwrap();
    let b = store
        .enqueue(
            "webhook",
            &serde_json::json!({"url": "http://127.0.0.1/"}),
            now,
        )
        .await
        .unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|i| i.id).collect::<Vec<_>>(), vec![a, b]);
    assert!(claimed.iter().all(|i| i.attempts == 1));
    assert_eq!(claimed[0].payload["to"], "a@x.org");
    // Leased: nobody else gets them.
    assert!(store.claim_due(now, lease, 10).await.unwrap().is_empty());
    store.mark_delivered(a, now).await.unwrap();
    store
        .mark_failed(b, "connection refused", now + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert!(
        store.claim_due(now, lease, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    let retry = store
        .claim_due(now + chrono::Duration::seconds(31), lease, 10)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].id, b);
    assert_eq!(retry[0].attempts, 2);
    assert_eq!(retry[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
}

async fn counters_add_up_under_concurrency(store: &Store) {
    let window = 1_700_000_000_000;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.add_count("msgs:alice", window, 1).await.unwrap();
            s.add_member("rcpts:alice", window, "x@y.org")
                .await
                .unwrap()
        }));
    }
    let mut new_members = 0;
    for t in tasks {
        let (added, n) = t.await.unwrap();
        new_members += usize::from(added);
        assert_eq!(n, 1);
    }
    assert_eq!(new_members, 1, "one distinct member, added once");
    assert_eq!(store.count("msgs:alice", window).await.unwrap(), 40);
    assert_eq!(store.count("msgs:alice", window + 1).await.unwrap(), 0);
    assert_eq!(store.add_count("msgs:alice", window, 5).await.unwrap(), 45);
    assert_eq!(
        store
            .add_member("rcpts:alice", window, "z@y.org")
            .await
            .unwrap(),
        (true, 2)
    );
    assert_eq!(store.purge_counters_before(window + 1).await.unwrap(), 3);
    assert_eq!(store.count("msgs:alice", window).await.unwrap(), 0);
}

fn fast_writer() -> WriterOptions {
    WriterOptions {
        batch_size: 64,
        write_timeout: Duration::from_secs(3),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        spool_rotate_bytes: 64 * 1024,
        ..WriterOptions::default()
    }
}

async fn stored_ids(store: &Store) -> BTreeSet<String> {
    let page = store
        .list_reports(&ReportFilter::default(), 10_000, None)
        .await
        .unwrap();
    page.reports.iter().map(|r| r.id.to_string()).collect()
}

async fn writer_batches_every_report(store: &Store) {
    let spool_dir = tempfile::tempdir().unwrap();
    let (sink, writer) = spawn_writer_with(store.clone(), spool_dir.path(), fast_writer()).unwrap();
    let mut ids = BTreeSet::new();
    for i in 0..500 {
        let r = report(i, "eve@example.com", now_ms(), 2.0, None);
        ids.insert(r.id.to_string());
        assert_eq!(sink.submit(r), Submitted::Queued);
    }
    writer.shutdown().await;
    assert_eq!(stored_ids(store).await, ids);
    assert_eq!(store.count_reports().await.unwrap(), 500);
    assert!(!Spool::open(spool_dir.path(), 1)
        .unwrap()
        .has_pending()
        .unwrap());
}

async fn spool_is_replayed_first_at_start_up(store: &Store) {
    let spool_dir = tempfile::tempdir().unwrap();
    let reports: Vec<_> = (0..40)
        .map(|i| report(i, "frank@example.com", now_ms(), 3.0, None))
        .collect();
    // A previous run spooled them all, but five had reached the database
    // before it died: the replay must not duplicate those.
    Spool::open(spool_dir.path(), 4096)
        .unwrap()
        .append(&reports)
        .unwrap();
    store.insert_reports(&reports[..5]).await.unwrap();
    let (sink, writer) = spawn_writer_with(store.clone(), spool_dir.path(), fast_writer()).unwrap();
    let later = report(100, "frank@example.com", now_ms(), 3.0, None);
    sink.submit(later.clone());
    writer.shutdown().await;
    let mut want: BTreeSet<String> = reports.iter().map(|r| r.id.to_string()).collect();
    want.insert(later.id.to_string());
    assert_eq!(stored_ids(store).await, want);
    assert_eq!(store.count_reports().await.unwrap(), 41);
    assert!(!Spool::open(spool_dir.path(), 1)
        .unwrap()
        .has_pending()
        .unwrap());
}

async fn full_queue_overflows_to_the_spool(store: &Store) {
    let spool_dir = tempfile::tempdir().unwrap();
    let options = WriterOptions {
        queue_capacity: 2,
        ..fast_writer()
    };
    let (sink, writer) =
        spawn_writer_with(store.clone(), spool_dir.path(), options.clone()).unwrap();
    let mut ids = HashSet::new();
    let mut spooled = 0;
    for i in 0..300 {
        let r = report(i, "gina@example.com", now_ms(), 1.0, None);
        ids.insert(r.id.to_string());
        if sink.submit(r) == Submitted::Spooled {
            spooled += 1;
        }
    }
    assert!(spooled > 0, "a queue of 2 must overflow under 300 submits");
    writer.shutdown().await;
    // What overflowed is replayed by the next writer (or was already).
    let (_sink, writer) = spawn_writer_with(store.clone(), spool_dir.path(), options).unwrap();
    writer.shutdown().await;
    let stored: HashSet<String> = stored_ids(store).await.into_iter().collect();
    assert_eq!(stored, ids);
    assert_eq!(store.count_reports().await.unwrap(), 300);
}

async fn purge_task_removes_expired_reports(store: &Store) {
    let old_at = now_ms() - hours(73);
    let old: Vec<_> = (0..3)
        .map(|i| report(i, "kim@example.com", old_at, 1.0, None))
        .collect();
    let fresh = report(5, "kim@example.com", now_ms(), 1.0, None);
    store.insert_reports(&old).await.unwrap();
    store
        .insert_reports(std::slice::from_ref(&fresh))
        .await
        .unwrap();
    let purger = outscore::store::spawn_purger_every(
        store.clone(),
        store.options().clone(),
        Duration::from_secs(1),
    );
    // The first pass runs at once; wait for it (bounded).
    for _ in 0..100 {
        if store.count_reports().await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    purger.stop().await;
    assert_eq!(store.count_reports().await.unwrap(), 1);
    assert!(store.report(&fresh.id).await.unwrap().is_some());
}

/// Make the database refuse one report (a trigger on both backends).
async fn refuse_subject(store: &Store, subject: &str) {
    match store {
        Store::Sqlite(s) => {
            let sql = format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON reports WHEN NEW.subject = '{subject}' \
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(s.pool())
                .await
                .unwrap();
        }
        Store::Postgres(s) => {
            let f = format!(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                 IF NEW.subject = '{subject}' THEN RAISE EXCEPTION 'refused by test'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            );
            sqlx::query(sqlx::AssertSqlSafe(f))
                .execute(s.pool())
                .await
                .unwrap();
            sqlx::query(
                "CREATE TRIGGER refuse BEFORE INSERT ON reports \
                 FOR EACH ROW EXECUTE FUNCTION refuse()",
            )
            .execute(s.pool())
            .await
            .unwrap();
        }
    }
}

async fn refused_report_is_set_aside_not_blocking(store: &Store) {
    refuse_subject(store, "subject 7").await;
    let spool_dir = tempfile::tempdir().unwrap();
    // Some reports come from the spool (a previous run), some are new.
    let spooled: Vec<_> = (0..10)
        .map(|i| report(i, "hank@example.com", now_ms(), 1.0, None))
        .collect();
    Spool::open(spool_dir.path(), 1 << 20)
        .unwrap()
        .append(&spooled)
        .unwrap();
    let (sink, writer) = spawn_writer_with(store.clone(), spool_dir.path(), fast_writer()).unwrap();
    let fresh: Vec<_> = (0..20)
        .map(|i| report(i, "hank@example.com", now_ms(), 1.0, None))
        .collect();
    for r in &fresh {
        sink.submit(r.clone());
    }
    writer.shutdown().await;
    let stats = sink.stats();
    assert_eq!(
        outscore::store::SinkStats::get(&stats.rejected),
        2,
        "{stats:?}"
    );
    assert_eq!(outscore::store::SinkStats::get(&stats.lost), 0);
    assert_eq!(store.count_reports().await.unwrap(), 28);
    let stored = stored_ids(store).await;
    assert!(!stored.contains(spooled[7].id.as_str()));
    assert!(!stored.contains(fresh[7].id.as_str()));
    assert!(!Spool::open(spool_dir.path(), 1)
        .unwrap()
        .has_pending()
        .unwrap());
    // The refused ones are kept for inspection.
    let kept = Spool::open(&spool_dir.path().join("rejected"), 1)
        .unwrap()
        .seal()
        .unwrap();
    let mut reader = outscore::store::SpoolReader::open(&kept[0]).unwrap();
    let back = reader.next_batch(10).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].id, spooled[7].id);
}

/// Two relays on one PostgreSQL: counters add up without double counting,
/// a suspension made by one is seen by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_one_postgres() {
    let Some(db) = postgres().await else { return };
    let relay_a = db.store.clone();
    let relay_b = db.second().await;
    let window = 1_800_000_000_000;
    let mut tasks = Vec::new();
    for i in 0..100 {
        for relay in [relay_a.clone(), relay_b.clone()] {
            tasks.push(tokio::spawn(async move {
                relay.add_count("msgs:shared", window, 1).await.unwrap();
                relay
                    .add_member("rcpts:shared", window, &format!("r{}@x.org", i % 30))
                    .await
                    .unwrap()
                    .0
            }));
        }
    }
    let mut added = 0;
    for t in tasks {
        added += usize::from(t.await.unwrap());
    }
    assert_eq!(relay_a.count("msgs:shared", window).await.unwrap(), 200);
    assert_eq!(relay_b.count("msgs:shared", window).await.unwrap(), 200);
    assert_eq!(
        added, 30,
        "each distinct recipient counted once across relays"
    );
    assert_eq!(
        relay_b
            .add_member("rcpts:shared", window, "r0@x.org")
            .await
            .unwrap(),
        (false, 30)
    );

    relay_a
        .set_account_state(&AccountChange {
            account: "mallory@example.com".into(),
            status: AccountStatus::Suspended,
            at: now_ms(),
            tier: Some("L-SPAM30".into()),
            report_id: None,
            reason: Some("mass mailing".into()),
        })
        .await
        .unwrap();
    let seen = relay_b
        .account_state("mallory@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.status, AccountStatus::Suspended);

    // Both relays replaying the same spooled reports store them once.
    let reports: Vec<_> = (0..50)
        .map(|i| report(i, "mallory@example.com", now_ms(), 9.0, None))
        .collect();
    let (a, b) = tokio::join!(
        relay_a.insert_reports(&reports),
        relay_b.insert_reports(&reports)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 50);
    assert_eq!(relay_a.count_reports().await.unwrap(), 50);
    relay_b.close().await;
    db.drop_schema().await;
}

/// The SQLite file and its directory are created when missing.
#[tokio::test]
async fn sqlite_file_is_created_with_wal() {
    let db = sqlite().await;
    assert!(db.dir.path().join("data/outscore.db").exists());
    let Store::Sqlite(s) = &db.store else {
        panic!("sqlite")
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

/// The daemon starts while its database is down: reports are spooled, and
/// replayed by the next writer that reaches a database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_starts_with_the_database_down() {
    let data = tempfile::tempdir().unwrap();
    let mut config = outscore::config::Config {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    // Nothing listens on port 1: connections are refused.
    config.store.database_url = Some("postgres://postgres@127.0.0.1:1/test".into());
    config.store.write_timeout = Duration::from_secs(1);
    let down = outscore::store::open_for_daemon(&config).await.unwrap();
    assert!(
        outscore::store::open(&config).await.is_err(),
        "commands report the outage"
    );
    let (sink, writer) = outscore::store::spawn_writer(down.clone(), &config).unwrap();
    let reports: Vec<_> = (0..10)
        .map(|i| report(i, "ivan@example.com", now_ms(), 1.0, None))
        .collect();
    for r in &reports {
        assert_eq!(sink.submit(r.clone()), Submitted::Queued);
    }
    writer.shutdown().await;
    let stats = sink.stats();
    assert_eq!(
        outscore::store::SinkStats::get(&stats.spooled),
        10,
        "{stats:?}"
    );
    assert_eq!(outscore::store::SinkStats::get(&stats.lost), 0);

    let db = sqlite().await;
    let (_sink, writer) =
        spawn_writer_with(db.store.clone(), &config.spool_dir(), fast_writer()).unwrap();
    writer.shutdown().await;
    let want: BTreeSet<String> = reports.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(stored_ids(&db.store).await, want);
}
