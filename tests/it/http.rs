//! The review interface through its router, without sockets (`oneshot`),
//! over SQLite and PostgreSQL alike: authentication and roles, every
//! refusal (no token, wrong role, content past retention, every account
//! action the policy refuses), the JSON API, the pages, the audit trail,
//! login throttling and metrics. Account actions go through the real
//! policy enforcer: the pipeline sharing it sees an unblock at the next
//! MAIL FROM, and the customer notification reaches a loopback webhook.

use crate::support::http::{form, form_then_get, page, send, SAME_HOST, SAME_ORIGIN};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::store::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{Duration, Utc};
use outscore::config::NotifyConfig;
use outscore::envelope::Envelope;
use outscore::http::auth::{hash_secret, UserRecord};
use outscore::http::throttle::{LoginLimits, LoginThrottle};
use outscore::http::{app, db, AppState, Role};
use outscore::milter::Filter;
use outscore::notify::{run_worker, OutboxQueue, WorkerOptions};
use outscore::pipeline::{Pipeline, PipelineOptions, StoreEnforcer};
use outscore::policy::{AccountEntry, Directory};
use outscore::scoring::{Engine, SymbolResult};
use outscore::smtp::Decision;
use outscore::store::{
    AccountChange, AccountStatus, AccountStore, AuditLog, ReportStore, Store, StoredReport,
};
use serde_json::{json, Value};

both_backends!(
    probes_and_metrics_need_no_credential,
    everything_else_needs_a_credential,
    report_list_filters_and_pages,
    report_detail_by_role_and_retention,
    account_actions_obey_the_rules_and_are_audited,
    every_policy_refusal_has_its_code,
    complaint_period_holds_back_self_service_only,
    http_unblock_reaches_the_next_mail_from_at_once,
    http_unblock_notifies_the_customer,
    failed_logins_are_throttled,
    pages_log_in_list_open_and_unblock,
    stats_count_per_hour,
    a_skipped_scan_is_shown_with_its_cause,
    abuse_page_links_reports_offers_lift_and_shows_limits,
    accounts_page_lists_every_mailbox_and_suspends,
    history_takes_dates_account_parts_and_score_order,
    api_errors_are_json_with_their_status,
);

/// Every error under /api/v1 is `{"error": …}` as application/json: the
/// extractors' rejections, an unknown path and a wrong method included.
async fn api_errors_are_json_with_their_status(store: &Store) {
    let app = setup(store).await;
    let bearer = format!("Bearer {ABUSE}");
    let request = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, &bearer)
    };
    let action = "/api/v1/accounts/bob@example.com/suspend";
    let cases: Vec<(&str, Request<Body>, StatusCode)> = vec![
        (
            "limit=abc",
            request("GET", "/api/v1/reports?limit=abc")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "hours=abc",
            request("GET", "/api/v1/stats?hours=abc")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "audit limit=-1",
            request("GET", "/api/v1/audit?limit=-1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad body",
            request("POST", action)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"reason\": "))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "body of the wrong shape",
            request("POST", action)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"reason\": 5}"))
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "not JSON",
            request("POST", action)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("reason=x"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "unknown path",
            request("GET", "/api/v1/x").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown path, no credential",
            Request::get("/api/v1/x/y").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            request("DELETE", "/api/v1/reports")
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (what, req, want) in cases {
        let (status, headers, body) = send(&app, req).await;
        assert_eq!(status, want, "{what}: {body}");
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{what}: {body}"
        );
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(!error.is_empty(), "{what}");
        if want == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(headers.get(header::ALLOW).unwrap(), "GET,HEAD", "{what}");
        }
    }
    // The pages keep their own answers.
    let (status, _, body) = send(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The OpenAPI document is served and is JSON.
    let (status, headers, body) = send(
        &app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    serde_json::from_str::<Value>(&body).unwrap();
}

const ABUSE: &str = "alice:abuse-secret";
const VIEWER: &str = "victor:viewer-secret";

/// A user with a cheap hash (the rounds are tested in the unit tests).
async fn add_user(store: &Store, name: &str, secret: &str, role: Role) {
    let salt = format!("salt-{name}");
    let record = UserRecord {
        name: name.into(),
        role,
        hash: hash_secret(secret, &salt, 10),
        salt,
        iterations: 10,
    };
    db::put_user(store, &record).await.unwrap();
}

/// The policy enforcer the daemon builds, over `store`, with built-in tiers
/// and bob's contact address in the directory.
fn enforcer_with(store: &Store, notify: NotifyConfig) -> Arc<StoreEnforcer> {
    let mut directory = Directory::default();
    directory.insert(AccountEntry {
        login: "bob@example.com".into(),
        contact: Some("bob.owner@contact.example".into()),
        ..AccountEntry::default()
    });
    crate::support::store::enforcer_for(store, directory, notify)
}

fn state(store: &Store) -> AppState {
    AppState::new(store.clone(), enforcer_with(store, NotifyConfig::default()))
}

async fn setup_with(store: &Store, state: AppState) -> Router {
    add_user(store, "alice", "abuse-secret", Role::Abuse).await;
    add_user(store, "victor", "viewer-secret", Role::Viewer).await;
    app(state)
}

async fn setup(store: &Store) -> Router {
    setup_with(store, state(store)).await
}

/// A refused spam message naming its keyword, as the keyword rule reports it.
fn spam(n: usize, account: &str, hours_ago: i64) -> StoredReport {
    let mut r = report(
        n,
        account,
        Utc::now() - Duration::hours(hours_ago),
        9.5,
        Some("L-SPAM20"),
    );
    r.report.symbols = vec![SymbolResult {
        name: "KEYWORD_PHARMA".into(),
        group: "keywords".into(),
        weight: 6.0,
        factor: 1.0,
        score: 6.0,
        evidence: vec![r#"keyword "viagra" in subject as "VIAGRA""#.into()],
    }];
    r.report.message.subject = Some(format!("Cheap VIAGRA <b>now</b> {n}"));
    r.content = format!(
        "From: {account}\r\nTo: x@example.org\r\nSubject: Cheap VIAGRA <b>now</b> {n}\r\n\r\nBuy viagra <script>alert(1)</script> today.\r\n"
    )
    .into_bytes();
    r
}

fn ham(n: usize, account: &str) -> StoredReport {
    let mut r = report(
        n,
        account,
        Utc::now() - Duration::minutes(n as i64),
        0.5,
        None,
    );
    r.action = "accept".into();
    r.report.message.subject = Some(format!("Meeting notes {n}"));
    r
}

async fn seed(store: &Store) -> (String, String) {
    let spam_now = spam(1, "bob@example.com", 1);
    let old = spam(2, "bob@example.com", 80);
    let ids = (spam_now.id.to_string(), old.id.to_string());
    let mut reports = vec![spam_now, old];
    reports.extend((10..16).map(|n| ham(n, "carol@example.com")));
    store.insert_reports(&reports).await.unwrap();
    ids
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let (s, _, b) = send(app, req.body(Body::empty()).unwrap()).await;
    (s, b)
}

async fn get_json(app: &Router, uri: &str, token: &str) -> Value {
    let (status, body) = get(app, uri, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn post_json(app: &Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, _, b) = send(app, req).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

async fn probes_and_metrics_need_no_credential(store: &Store) {
    let app = setup(store).await;
    assert_eq!(get(&app, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/readyz", None).await.0, StatusCode::OK);
    let (status, body) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "# TYPE outscore_milter_messages_total counter",
        "outscore_milter_connections_total ",
        "outscore_http_auth_failures_total ",
        "outscore_regex_engine{engine=",
        "outscore_store_up{backend=",
        "outscore_outbox_pending 0",
    ] {
        assert!(body.contains(name), "metrics lack {name:?}:\n{body}");
    }
    // Verdicts by action and tier, and the scan latency histogram.
    outscore::telemetry::record_verdict(false, "reject", Some("L-SPAM20"), 1_200);
    outscore::telemetry::record_verdict(false, "accept", None, 300);
    outscore::telemetry::record_verdict(true, "accept", Some("L-SPAM10"), 300);
    let (_, body) = get(&app, "/metrics", None).await;
    for line in [
        "outscore_verdicts_total{mode=\"enforce\",action=\"reject\",tier=\"L-SPAM20\"} ",
        "outscore_verdicts_total{mode=\"enforce\",action=\"accept\",tier=\"none\"} ",
        "outscore_verdicts_total{mode=\"observe\",action=\"accept\",tier=\"L-SPAM10\"} ",
        "# TYPE outscore_scan_seconds histogram",
        "outscore_scan_seconds_bucket{le=\"0.0025\"} ",
        "outscore_scan_seconds_bucket{le=\"+Inf\"} ",
        "outscore_scan_seconds_count ",
    ] {
        assert!(body.contains(line), "metrics lack {line:?}:\n{body}");
    }
    // Nothing that names an account or a keyword.
    assert!(!body.contains('@'));
    // A closed store is not ready.
    store.close().await;
    assert_eq!(
        get(&app, "/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

async fn everything_else_needs_a_credential(store: &Store) {
    // Many wrong tokens in a row: throttling is tested on its own below.
    let mut state = state(store);
    state.throttle = Arc::new(LoginThrottle::new(LoginLimits {
        per_ip: 1000,
        per_user: 1000,
        ..LoginLimits::default()
    }));
    let app = setup_with(store, state).await;
    let (id, _) = seed(store).await;
    for uri in [
        "/api/v1/reports".to_string(),
        format!("/api/v1/reports/{id}"),
        format!("/api/v1/reports/{id}/raw"),
        "/api/v1/accounts".into(),
        "/api/v1/accounts/bob@example.com".into(),
        "/api/v1/audit".into(),
        "/api/v1/stats".into(),
    ] {
        let req = Request::get(&uri).body(Body::empty()).unwrap();
        let (status, headers, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} without a token");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        for bad in ["alice:wrong", "nobody:abuse-secret", "alice", "alice:"] {
            assert_eq!(
                get(&app, &uri, Some(bad)).await.0,
                StatusCode::UNAUTHORIZED,
                "{uri} with {bad}"
            );
        }
    }
    let (status, _) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/suspend",
        "alice:nope",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for uri in [
        "/history",
        "/abuse",
        "/accounts",
        "/chart",
        &format!("/reports/{id}"),
    ] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, headers, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(headers[header::LOCATION], "/login", "{uri}");
        // A forged session cookie is no session.
        let req = Request::get(uri)
            .header(header::COOKIE, "outscore_session=0123456789abcdef")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(&app, req).await.0,
            StatusCode::SEE_OTHER,
            "{uri} forged cookie"
        );
    }
    // Nothing was changed or audited by the refused requests.
    assert!(store.audit_entries(None, 10).await.unwrap().is_empty());
}

async fn report_list_filters_and_pages(store: &Store) {
    let app = setup(store).await;
    let (id, old) = seed(store).await;
    let all = get_json(&app, "/api/v1/reports", VIEWER).await;
    let ids: Vec<&str> = all["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "the expired report is not listed: {ids:?}");
    assert!(ids.contains(&id.as_str()) && !ids.contains(&old.as_str()));
    let cases = [
        ("account=BOB@example.com", 1),
        ("tier=L-SPAM20", 1),
        ("action=accept", 6),
        ("min_score=5", 1),
        ("max_score=1", 6),
        ("recipient=shared@example.org", 7),
        ("subject=viagra", 1),
        ("subject=meeting%20notes%2012", 1),
        ("subject=nothing-like-this", 0),
        (
            &format!(
                "since={}",
                (Utc::now() - Duration::minutes(30))
                    .to_rfc3339()
                    .replace('+', "%2B")
            ),
            6,
        ),
        (
            &format!(
                "until={}",
                (Utc::now() - Duration::minutes(30))
                    .to_rfc3339()
                    .replace('+', "%2B")
            ),
            1,
        ),
    ];
    for (q, want) in cases {
        let v = get_json(&app, &format!("/api/v1/reports?{q}"), VIEWER).await;
        assert_eq!(v["reports"].as_array().unwrap().len(), want, "{q}: {v}");
    }
    assert_eq!(
        get(&app, "/api/v1/reports?since=yesterday", Some(VIEWER))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&app, "/api/v1/reports?min_score=lots", Some(VIEWER))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // Keyset paging walks every report once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/reports?limit=3".to_string();
    for _ in 0..10 {
        let v = get_json(&app, &uri, VIEWER).await;
        seen.extend(
            v["reports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match v["next"].as_str() {
            Some(next) => uri = format!("/api/v1/reports?limit=3&after={next}"),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!((seen.len(), dedup.len()), (7, 7), "{seen:?}");
}

async fn report_detail_by_role_and_retention(store: &Store) {
    let app = setup(store).await;
    let (id, old) = seed(store).await;
    let v = get_json(&app, &format!("/api/v1/reports/{id}"), ABUSE).await;
    assert_eq!(
        v["report"]["report"]["symbols"][0]["name"],
        "KEYWORD_PHARMA"
    );
    assert_eq!(
        v["report"]["report"]["symbols"][0]["evidence"][0],
        r#"keyword "viagra" in subject as "VIAGRA""#
    );
    assert_eq!(v["report"]["envelope"]["auth_login"], "bob@example.com");
    assert!(v["content"]["raw"]
        .as_str()
        .unwrap()
        .starts_with("From: bob@example.com"));
    assert!(
        v["content"]["text"]
            .as_str()
            .unwrap()
            .contains("Buy viagra"),
        "{v}"
    );
    let (status, raw) = get(&app, &format!("/api/v1/reports/{id}/raw"), Some(ABUSE)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(raw.contains("Subject: Cheap VIAGRA"));
    // Both views are audited with who and which report.
    let audit = store
        .audit_entries(Some("bob@example.com"), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for a in &audit {
        assert_eq!(
            (a.entry.actor.as_str(), a.entry.action.as_str()),
            ("abuse:alice", "view_content")
        );
        assert_eq!(a.entry.detail["report_id"], id.as_str());
    }
    // The viewer sees the report, never the content, and is not audited.
    let v = get_json(&app, &format!("/api/v1/reports/{id}"), VIEWER).await;
    assert_eq!(v["content"], Value::Null);
    assert_eq!(v["content_visible"], false);
    assert_eq!(
        v["report"]["report"]["symbols"][0]["name"],
        "KEYWORD_PHARMA"
    );
    assert_eq!(
        get(&app, &format!("/api/v1/reports/{id}/raw"), Some(VIEWER))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(store.audit_entries(None, 10).await.unwrap().len(), 2);
    // Past retention: gone, for everyone, in the API and on the page.
    for token in [ABUSE, VIEWER] {
        let (status, body) = get(&app, &format!("/api/v1/reports/{old}"), Some(token)).await;
        assert_eq!(status, StatusCode::GONE, "{body}");
    }
    assert_eq!(
        get(&app, &format!("/api/v1/reports/{old}/raw"), Some(ABUSE))
            .await
            .0,
        StatusCode::GONE
    );
    // Unknown and malformed ids.
    assert_eq!(
        get(&app, "/api/v1/reports/00000000000000aa", Some(ABUSE))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/v1/reports/..%2Fetc", Some(ABUSE)).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Block `account` four days ago (past every tier's complaint period).
async fn block(store: &Store, account: &str, status: AccountStatus, tier: &str) {
    store
        .set_account_state(&AccountChange {
            account: account.into(),
            status,
            at: Utc::now() - chrono::Duration::days(4),
            tier: Some(tier.into()),
            report_id: None,
            reason: Some(format!("{tier} spam run")),
        })
        .await
        .unwrap();
}

async fn account_actions_obey_the_rules_and_are_audited(store: &Store) {
    let app = setup(store).await;
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let v = get_json(&app, "/api/v1/accounts", VIEWER).await;
    assert_eq!(v["accounts"][0]["account"], "bob@example.com");
    assert_eq!(v["accounts"][0]["restricted"], true);
    assert_eq!(v["accounts"][0]["tier"], "L-SPAM20");
    assert!(v["accounts"][0]["blocked_since"].is_string());
    let u = "/api/v1/accounts/bob@example.com/unblock";
    // The viewer may not act; an action needs a reason; unknown actions 404.
    assert_eq!(
        post_json(&app, u, VIEWER, json!({"reason": "please"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_json(&app, u, ABUSE, json!({})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_json(&app, u, ABUSE, json!({"reason": "  "})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_json(
            &app,
            "/api/v1/accounts/bob@example.com/delete",
            ABUSE,
            json!({"reason": "x"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        store
            .account_state("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Suspended
    );
    // First self-service unblock: allowed.
    let (status, v) = post_json(&app, u, ABUSE, json!({"reason": "customer cleaned the PC"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["account"]["status"], "active");
    // Blocked again, the second unblock within 90 days is refused.
    let (status, _) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/suspend",
        ABUSE,
        json!({"reason": "relapse", "tier": "L-SPAM21"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = post_json(&app, u, ABUSE, json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["detail"]["refusal"], "too_soon");
    assert!(v["error"].as_str().unwrap().contains("90 days"), "{v}");
    let detail = get_json(&app, "/api/v1/accounts/bob@example.com", VIEWER).await;
    assert_eq!(detail["self_service_unblock"]["allowed"], false);
    assert_eq!(detail["account"]["tier"], "L-SPAM21");
    assert_eq!(detail["unblocks"].as_array().unwrap().len(), 1);
    assert_eq!(
        store
            .account_state("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Suspended
    );
    // The abuse team can still lift it; lifting an active account is refused.
    let lift = "/api/v1/accounts/bob@example.com/lift";
    assert_eq!(
        post_json(&app, lift, ABUSE, json!({"reason": "verified by phone"}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post_json(&app, lift, ABUSE, json!({"reason": "again"}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    // Password-reset blocks are lifted by confirming the reset, not unblocked.
    block(
        store,
        "dave@example.com",
        AccountStatus::PasswordResetRequired,
        "L-SPAM10",
    )
    .await;
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/dave@example.com/unblock",
        ABUSE,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(
        (status, v["detail"]["refusal"].as_str()),
        (StatusCode::CONFLICT, Some("password_reset_required"))
    );
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/dave@example.com/password-reset-done",
        ABUSE,
        json!({"reason": "panel reset"}),
    )
    .await;
    assert_eq!(
        (status, v["account"]["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    // Mass abuse is never self-service.
    block(
        store,
        "eve@example.com",
        AccountStatus::Suspended,
        "L-SPAM40",
    )
    .await;
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/eve@example.com/unblock",
        ABUSE,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(
        (status, v["detail"]["refusal"].as_str()),
        (StatusCode::CONFLICT, Some("mass_abuse"))
    );
    // Every action and refusal is in the audit log with who did it.
    let audit = get_json(&app, "/api/v1/audit?account=bob@example.com", VIEWER).await;
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("abuse:alice", "lift_refused"),
            ("abuse:alice", "unblock"),
            ("abuse:alice", "unblock_refused"),
            ("abuse:alice", "suspend"),
            ("abuse:alice", "unblock"),
        ],
        "{audit}"
    );
    let last = &audit["entries"][4];
    assert_eq!(last["detail"]["reason"], "customer cleaned the PC");
    assert_eq!(last["detail"]["from"], "suspended");
    assert_eq!(last["detail"]["self_service"], true);
    let suspend = &audit["entries"][3];
    assert_eq!(
        (
            suspend["detail"]["reason"].as_str(),
            suspend["detail"]["tier"].as_str()
        ),
        (Some("relapse"), Some("L-SPAM21"))
    );
    let refused = &audit["entries"][2];
    assert_eq!(refused["detail"]["refusal"], "too_soon");
    assert_eq!(refused["detail"]["reason"], "again");
    let lift = &audit["entries"][1];
    assert_eq!(
        (
            lift["detail"]["self_service"].as_bool(),
            lift["detail"]["reason"].as_str()
        ),
        (Some(false), Some("verified by phone"))
    );
    // The unblock history names who unblocked and how.
    let history = store.unblock_history("bob@example.com").await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|u| (u.by.as_str(), u.self_service))
            .collect::<Vec<_>>(),
        [("abuse:alice", false), ("abuse:alice", true)]
    );
    let dave = get_json(&app, "/api/v1/audit?account=dave@example.com", VIEWER).await;
    assert_eq!(dave["entries"][0]["action"], "reset_done");
    assert!(last["at"].is_string());
}

/// Every refusal the policy makes comes back as a 409 with its documented
/// code, changes nothing, and is audited.
/// A suspension younger than its tier's complaint period (L-SPAM30: 72 h)
/// cannot be unblocked by self-service: refusal `complaint_period` with the
/// time it becomes possible, shown on the account too. The abuse team's
/// lift is allowed at any time.
async fn complaint_period_holds_back_self_service_only(store: &Store) {
    let app = setup(store).await;
    let since = Utc::now() - Duration::hours(70);
    for account in ["fresh@example.com", "lifted@example.com"] {
        store
            .set_account_state(&AccountChange {
                account: account.into(),
                status: AccountStatus::Suspended,
                at: since,
                tier: Some("L-SPAM30".into()),
                report_id: None,
                reason: Some("L-SPAM30 spam run".into()),
            })
            .await
            .unwrap();
    }
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/fresh@example.com/unblock",
        ABUSE,
        json!({"reason": "customer cleaned the website"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["detail"]["refusal"], "complaint_period", "{v}");
    assert_eq!(v["detail"]["tier"], "L-SPAM30", "{v}");
    let next: chrono::DateTime<Utc> = v["detail"]["next"].as_str().unwrap().parse().unwrap();
    let want = since + Duration::hours(72);
    assert!(
        (next - want).num_milliseconds().abs() <= 1,
        "next {next}, want {want}: {v}"
    );
    let shown = get_json(&app, "/api/v1/accounts/fresh@example.com", VIEWER).await;
    assert_eq!(shown["self_service_unblock"]["allowed"], false, "{shown}");
    assert_eq!(
        shown["self_service_unblock"]["detail"]["refusal"], "complaint_period",
        "{shown}"
    );
    assert_eq!(
        store
            .account_state("fresh@example.com")
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Suspended
    );
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/lifted@example.com/lift",
        ABUSE,
        json!({"reason": "verified with the customer by phone"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["account"]["status"], "active", "{v}");
}

async fn every_policy_refusal_has_its_code(store: &Store) {
    let app = setup(store).await;
    let act = |account: &str, action: &str| format!("/api/v1/accounts/{account}/{action}");
    // Unblocked once already: the second self-service unblock is too soon.
    block(
        store,
        "soon@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let (status, _) = post_json(
        &app,
        &act("soon@example.com", "unblock"),
        ABUSE,
        json!({"reason": "first"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = store.unblock_history("soon@example.com").await.unwrap()[0].at;
    block(
        store,
        "soon@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    block(
        store,
        "mass@example.com",
        AccountStatus::Suspended,
        "L-SPAM40",
    )
    .await;
    block(
        store,
        "reset@example.com",
        AccountStatus::PasswordResetRequired,
        "L-SPAM10",
    )
    .await;
    // Suspended by hand, without a tier.
    let (status, v) = post_json(
        &app,
        &act("manual@example.com", "suspend"),
        ABUSE,
        json!({"reason": "complaint from a recipient"}),
    )
    .await;
    assert_eq!(
        (status, &v["account"]["tier"]),
        (StatusCode::OK, &Value::Null)
    );
    let cases = [
        ("soon@example.com", "unblock", "too_soon"),
        ("mass@example.com", "unblock", "mass_abuse"),
        ("manual@example.com", "unblock", "manual_suspension"),
        ("reset@example.com", "unblock", "password_reset_required"),
        ("active@example.com", "unblock", "not_blocked"),
        ("active@example.com", "lift", "not_blocked"),
        (
            "soon@example.com",
            "password-reset-done",
            "not_waiting_for_reset",
        ),
        (
            "active@example.com",
            "password-reset-done",
            "not_waiting_for_reset",
        ),
    ];
    for (account, action, code) in cases {
        let before = store.account_state(account).await.unwrap();
        let (status, v) =
            post_json(&app, &act(account, action), ABUSE, json!({"reason": "try"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{account} {action}: {v}");
        assert_eq!(v["detail"]["refusal"], code, "{account} {action}: {v}");
        assert_eq!(v["detail"]["account"], account, "{v}");
        assert!(v["error"].as_str().unwrap().starts_with("refused: "), "{v}");
        assert_eq!(
            store.account_state(account).await.unwrap(),
            before,
            "{account} {action}"
        );
        let audit = get_json(
            &app,
            &format!("/api/v1/audit?account={account}&limit=1"),
            VIEWER,
        )
        .await;
        let entry = &audit["entries"][0];
        assert_eq!(
            (entry["actor"].as_str(), entry["detail"]["refusal"].as_str()),
            (Some("abuse:alice"), Some(code)),
            "{audit}"
        );
        assert!(
            entry["action"].as_str().unwrap().ends_with("_refused"),
            "{audit}"
        );
    }
    // Details: when the next self-service unblock is possible; which tier.
    let (_, v) = post_json(
        &app,
        &act("soon@example.com", "unblock"),
        ABUSE,
        json!({"reason": "x"}),
    )
    .await;
    let next: chrono::DateTime<Utc> = v["detail"]["next"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, first + Duration::days(90), "{v}");
    let (_, v) = post_json(
        &app,
        &act("mass@example.com", "unblock"),
        ABUSE,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(v["detail"]["tier"], "L-SPAM40", "{v}");
    // The account page previews the same rule.
    for (account, allowed, code) in [
        ("soon@example.com", false, Some("too_soon")),
        ("mass@example.com", false, Some("mass_abuse")),
        ("manual@example.com", false, Some("manual_suspension")),
    ] {
        let v = get_json(&app, &format!("/api/v1/accounts/{account}"), VIEWER).await;
        let preview = &v["self_service_unblock"];
        assert_eq!(preview["allowed"], allowed, "{v}");
        assert_eq!(preview["detail"]["refusal"].as_str(), code, "{v}");
        assert!(preview["why"].is_string(), "{v}");
    }
    block(
        store,
        "fresh@example.com",
        AccountStatus::Suspended,
        "L-SPAM21",
    )
    .await;
    let v = get_json(&app, "/api/v1/accounts/fresh@example.com", VIEWER).await;
    assert_eq!(v["self_service_unblock"], json!({"allowed": true}), "{v}");
    // A tier that is not a suspension tier, or no tier at all: 400.
    for tier in ["L-SPAM10", "L-SPAM99"] {
        let (status, v) = post_json(
            &app,
            &act("active@example.com", "suspend"),
            ABUSE,
            json!({"reason": "x", "tier": tier}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tier}: {v}");
    }
    // The abuse team's lift overrides every rule.
    for account in [
        "soon@example.com",
        "mass@example.com",
        "manual@example.com",
        "reset@example.com",
    ] {
        let (status, v) = post_json(
            &app,
            &act(account, "lift"),
            ABUSE,
            json!({"reason": "checked"}),
        )
        .await;
        assert_eq!(
            (status, v["account"]["status"].as_str()),
            (StatusCode::OK, Some("active")),
            "{account}"
        );
    }
}

fn mail_from(account: &str) -> Envelope {
    Envelope {
        auth_login: Some(account.into()),
        mail_from: account.into(),
        ..Envelope::default()
    }
}

/// The daemon's pipeline and review interface share one enforcer: an
/// unblock is seen by the very next MAIL FROM, though the pipeline had the
/// account's blocked state cached a moment before.
async fn http_unblock_reaches_the_next_mail_from_at_once(store: &Store) {
    let enforcer = enforcer_with(store, NotifyConfig::default());
    let pipeline = Pipeline::new(
        Engine::builtin(),
        PipelineOptions {
            add_headers: true,
            header_prefix: "X-Outscore".into(),
        },
    )
    .with_enforcer(enforcer.clone());
    let app = setup_with(store, AppState::new(store.clone(), enforcer)).await;
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let envelope = mail_from("bob@example.com");
    let refused = pipeline.mail(&envelope).await;
    assert!(refused.is_refusal(), "{refused:?}");
    let (status, v) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/unblock",
        ABUSE,
        json!({"reason": "customer cleaned the PC"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(pipeline.mail(&envelope).await, Decision::Continue);
    // And the other way: a suspension from the review interface refuses
    // the next MAIL FROM.
    let (status, _) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/suspend",
        ABUSE,
        json!({"reason": "relapse", "tier": "L-SPAM21"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let d = pipeline.mail(&envelope).await;
    assert!(d.is_refusal(), "{d:?}");
}

type Received = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver(listener: tokio::net::TcpListener, received: Received) {
    async fn hook(
        axum::extract::State(received): axum::extract::State<Received>,
        body: String,
    ) -> StatusCode {
        received
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap());
        StatusCode::OK
    }
    let app = Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(received);
    axum::serve(listener, app).await.unwrap();
}

/// An unblock from the review interface tells the provider's integration
/// (and so the customer) exactly as the CLI does: through the outbox.
async fn http_unblock_notifies_the_customer(store: &Store) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let receiver = tokio::spawn(webhook_receiver(listener, received.clone()));
    let enforcer = enforcer_with(
        store,
        NotifyConfig {
            webhook_url: Some(format!("http://127.0.0.1:{port}/hook")),
            ..NotifyConfig::default()
        },
    );
    let app = setup_with(store, AppState::new(store.clone(), enforcer.clone())).await;
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    assert_eq!(store.pending().await.unwrap(), 0);
    // A refusal queues nothing.
    let (status, _) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/password-reset-done",
        ABUSE,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(store.pending().await.unwrap(), 0);
    let (status, _) = post_json(
        &app,
        "/api/v1/accounts/bob@example.com/unblock",
        ABUSE,
        json!({"reason": "customer cleaned the PC"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(store.pending().await.unwrap(), 1, "queued in the outbox");
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        Arc::new(store.clone()),
        enforcer.events.notifier(),
        enforcer.events.wake.clone(),
        WorkerOptions {
            poll: std::time::Duration::from_millis(50),
            lease: std::time::Duration::from_secs(30),
            batch: 8,
        },
        stop.clone(),
    ));
    for _ in 0..200 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (
            got[0]["kind"].as_str(),
            got[0]["account"].as_str(),
            got[0]["contact"].as_str(),
            got[0]["tier"].as_str(),
            got[0]["self_service"].as_bool()
        ),
        (
            Some("unblocked"),
            Some("bob@example.com"),
            Some("bob.owner@contact.example"),
            Some("L-SPAM20"),
            Some(true)
        ),
        "{got:?}"
    );
    stop.cancel();
    let _ = worker.await;
    receiver.abort();
}

fn from_ip(mut req: Request<Body>, ip: &str) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40000)));
    req
}

async fn login_from(
    app: &Router,
    ip: &str,
    user: &str,
    password: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::post("/login")
        .header(header::HOST, SAME_HOST)
        .header(header::ORIGIN, SAME_ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("user={user}&password={password}")))
        .unwrap();
    send(app, from_ip(req, ip)).await
}

async fn auth_failures(app: &Router) -> u64 {
    let (_, body) = get(app, "/metrics", None).await;
    body.lines()
        .find_map(|l| l.strip_prefix("outscore_http_auth_failures_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Five failed logins from an address block it (429, Retry-After, a plain
/// sentence); another address still logs in, and that does not free the
/// first. Bearer tokens count the same way; so does a user name tried from
/// many addresses.
async fn failed_logins_are_throttled(store: &Store) {
    // A TLS proxy on loopback in front (none is trusted by default).
    let mut behind_proxy = state(store);
    behind_proxy.throttle = Arc::new(LoginThrottle::new(LoginLimits {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..LoginLimits::default()
    }));
    let app = setup_with(store, behind_proxy).await;
    let failures_before = auth_failures(&app).await;
    for n in 1..=5 {
        let (status, _, _) = login_from(&app, "192.0.2.10", "alice", &format!("guess{n}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let (status, headers, html) = login_from(&app, "192.0.2.10", "alice", "guess6").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert!(
        html.contains("Too many failed logins") && html.contains("try again"),
        "{html}"
    );
    // Not even the right password is checked from there now.
    let (status, _, _) = login_from(&app, "192.0.2.10", "alice", "abuse-secret").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another address logs in, and that frees nobody else.
    let (status, headers, _) = login_from(&app, "198.51.100.20", "alice", "abuse-secret").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers.contains_key(header::SET_COOKIE));
    let (status, _, _) = login_from(&app, "192.0.2.10", "victor", "viewer-secret").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Behind the local proxy the forwarded address is the client.
    let forwarded = |client: &str| {
        let req = Request::post("/login")
            .header(header::HOST, SAME_HOST)
            .header(header::ORIGIN, SAME_ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("x-forwarded-for", client)
            .body(Body::from("user=victor&password=viewer-secret"))
            .unwrap();
        from_ip(req, "127.0.0.1")
    };
    assert_eq!(
        send(&app, forwarded("192.0.2.10")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&app, forwarded("203.0.113.30")).await.0,
        StatusCode::SEE_OTHER
    );
    // Bearer tokens: five wrong ones from an address, then 429 for the API.
    let bearer = |ip: &str, token: &str| {
        let req = Request::get("/api/v1/accounts")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        from_ip(req, ip)
    };
    for n in 1..=5 {
        let (status, _, _) = send(&app, bearer("192.0.2.40", &format!("victor:guess{n}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {n}");
    }
    let (status, headers, body) = send(&app, bearer("192.0.2.40", VIEWER)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Too many failed logins"),
        "{v}"
    );
    assert_eq!(
        send(&app, bearer("192.0.2.41", VIEWER)).await.0,
        StatusCode::OK
    );
    // Every failure and every throttled attempt is counted.
    assert!(auth_failures(&app).await >= failures_before + 14);

    // One user name guessed from many addresses is blocked everywhere.
    let mut state = state(store);
    state.throttle = Arc::new(LoginThrottle::new(LoginLimits {
        per_ip: 5,
        per_user: 4,
        ..LoginLimits::default()
    }));
    let app = outscore::http::app(state);
    for n in 1..=4 {
        let ip = format!("192.0.2.{}", 100 + n);
        let (status, _, _) = login_from(&app, &ip, "victor", "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = login_from(&app, "203.0.113.99", "victor", "viewer-secret").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = login_from(&app, "203.0.113.99", "alice", "abuse-secret").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// Log in through the form; returns the cookie header value.
async fn login(app: &Router, user: &str, password: &str) -> Result<String, StatusCode> {
    let req = Request::post("/login")
        .header(header::HOST, SAME_HOST)
        .header(header::ORIGIN, SAME_ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("user={user}&password={password}")))
        .unwrap();
    let (status, headers, _) = send(app, req).await;
    if status != StatusCode::SEE_OTHER {
        return Err(status);
    }
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    Ok(cookie.split(';').next().unwrap().to_string())
}

async fn pages_log_in_list_open_and_unblock(store: &Store) {
    let app = setup(store).await;
    let (id, old) = seed(store).await;
    assert_eq!(
        login(&app, "alice", "wrong").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    // Mail history: Spam Score column, the refused message, escaped subject.
    let (status, html) = page(&app, "/history", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("title=\"highest score first\">Spam Score</a></th>"),
        "{html}"
    );
    assert!(html.contains("<tr class=\"refused\">"));
    assert!(html.contains(&format!("href=\"/reports/{id}\"")));
    assert!(
        html.contains("Cheap VIAGRA &lt;b&gt;now&lt;/b&gt; 1"),
        "subject not escaped"
    );
    assert!(!html.contains("<b>now</b>"));
    let (_, filtered) = page(&app, "/history?action=accept", &cookie).await;
    assert!(!filtered.contains("VIAGRA") && filtered.contains("Meeting notes"));
    // The report page highlights the keyword and escapes the message; no
    // script may run on it even if escaping were missed.
    let req = Request::get(format!("/reports/{id}"))
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, req).await;
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let (status, html) = page(&app, &format!("/reports/{id}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("KEYWORD_PHARMA"));
    assert!(html.contains("<mark>viagra</mark>"), "{html}");
    assert!(html.contains("<mark>VIAGRA</mark>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert_eq!(
        page(&app, &format!("/reports/{old}"), &cookie).await.0,
        StatusCode::GONE
    );
    // Mail abuse: green, then red with the blocked account.
    let (_, html) = page(&app, "/abuse", &cookie).await;
    assert!(html.contains("class=\"ok\"") && html.contains("No account is blocked"));
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let (_, html) = page(&app, "/abuse", &cookie).await;
    assert!(
        html.contains("class=\"alert\"")
            && html.contains("bob@example.com")
            && html.contains("L-SPAM20")
    );
    assert!(
        html.contains("action=\"/accounts/bob@example.com/unblock\""),
        "{html}"
    );
    let (_, html) = page(&app, "/accounts", &cookie).await;
    assert!(html.contains("<th>Restrictions</th>") && html.contains("SMTP suspended"));
    // A cross-site form post is refused.
    let unblock = "/accounts/bob%40example.com/unblock";
    let (status, _) = form(
        &app,
        unblock,
        &cookie,
        "reason=x",
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unblock from the page: a 303 back to Mail abuse, which says so once.
    let (to, html) = form_then_get(
        &app,
        unblock,
        &cookie,
        "reason=customer+request&back=%2Fabuse",
        Some("http://127.0.0.1:7523"),
    )
    .await;
    assert_eq!(to, "/abuse");
    assert!(
        html.contains("flash good") && html.contains("No account is blocked"),
        "{html}"
    );
    let (_, html) = page(&app, "/abuse", &cookie).await;
    assert!(!html.contains("id=\"flash\""), "a reload shows no outcome");
    // Blocked again: Unblock is disabled, saying why; a post anyway is
    // refused with the why.
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let (_, html) = page(&app, "/abuse", &cookie).await;
    assert!(html.contains("Self-service unblock not possible"), "{html}");
    assert!(html.contains("90-day rule: unblocked on"), "{html}");
    assert!(
        html.contains("disabled title=\"account bob@example.com was unblocked on"),
        "{html}"
    );
    assert!(!html.contains("action=\"/accounts/bob@example.com/unblock\""));
    let (_, html) = form_then_get(&app, unblock, &cookie, "reason=again&back=%2Fabuse", None).await;
    assert!(
        html.contains("flash bad") && html.contains("once every 90 days"),
        "{html}"
    );
    // The viewer sees pages without content or action buttons.
    let viewer = login(&app, "victor", "viewer-secret").await.unwrap();
    let (_, html) = page(&app, &format!("/reports/{id}"), &viewer).await;
    assert!(html.contains("hidden for the viewer role") && !html.contains("Buy viagra"));
    let (_, html) = page(&app, "/abuse", &viewer).await;
    assert!(
        html.contains("bob@example.com")
            && !html.contains("<form method=\"post\" action=\"/accounts/")
    );
    let (status, _) = form(&app, unblock, &viewer, "reason=x", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The chart is an inline SVG.
    let (status, html) = page(&app, "/chart", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<svg") && html.contains("<polyline"));
    // Logging out ends the session.
    let (_, _) = form(&app, "/logout", &cookie, "", None).await;
    assert_eq!(
        page(&app, "/history", &cookie).await.0,
        StatusCode::SEE_OTHER
    );
}

async fn stats_count_per_hour(store: &Store) {
    let app = setup(store).await;
    seed(store).await;
    let v = get_json(&app, "/api/v1/stats?hours=6", VIEWER).await;
    let hours = v["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 6);
    let total: u64 = hours.iter().map(|h| h["messages"].as_u64().unwrap()).sum();
    let spam: u64 = hours.iter().map(|h| h["spam"].as_u64().unwrap()).sum();
    let l20: u64 = hours
        .iter()
        .filter_map(|h| h["tiers"]["L-SPAM20"].as_u64())
        .sum();
    assert_eq!((total, spam, l20), (7, 1, 1), "{v}");
}

#[tokio::test]
async fn credentials_are_argon2id_and_old_ones_are_rehashed_at_login() {
    use outscore::http::auth::{needs_rehash, new_credential, verify, ARGON2};
    let (record, secret) = new_credential("ops", Role::Abuse);
    assert_eq!(record.iterations, ARGON2);
    assert!(record.hash.starts_with("$argon2id$"), "{}", record.hash);
    assert!(!record.hash.contains(&secret) && !needs_rehash(&record));
    assert!(verify(&record, &secret));
    assert!(!verify(&record, "guess"));
    let (other, _) = new_credential("ops", Role::Abuse);
    assert_ne!(record.hash, other.hash, "a salt of its own");
    // A record of the older SHA-256 kind logs in once and is rehashed.
    let store = Store::connect("sqlite::memory:", options()).await.unwrap();
    add_user(&store, "alice", "abuse-secret", Role::Abuse).await;
    let old = db::user(&store, "alice").await.unwrap().unwrap();
    assert!(needs_rehash(&old));
    let app = app(state(&store));
    assert!(login(&app, "alice", "abuse-secret").await.is_ok());
    let new = db::user(&store, "alice").await.unwrap().unwrap();
    assert!(new.hash.starts_with("$argon2id$") && new.iterations == ARGON2);
    assert!(login(&app, "alice", "abuse-secret").await.is_ok());
    assert_eq!(
        login(&app, "alice", "wrong").await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

/// A session or token of a removed user ends at once; a POST without an
/// origin of its own (missing, `null`, another site) is refused.
#[tokio::test]
async fn removal_ends_sessions_and_forms_need_their_origin() {
    let store = Store::connect("sqlite::memory:", options()).await.unwrap();
    add_user(&store, "alice", "abuse-secret", Role::Abuse).await;
    add_user(&store, "victor", "viewer-secret", Role::Viewer).await;
    let app = app(state(&store));
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    assert_eq!(page(&app, "/history", &cookie).await.0, StatusCode::OK);
    assert_eq!(
        get(&app, "/api/v1/accounts", Some(VIEWER)).await.0,
        StatusCode::OK
    );
    for origin in [None, Some("null"), Some("http://evil.example")] {
        let mut req = Request::post("/accounts/bob@example.com/suspend")
            .header(header::COOKIE, &cookie)
            .header(header::HOST, SAME_HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let (status, _, _) = send(&app, req.body(Body::from("reason=x")).unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "origin {origin:?}");
        assert_eq!(store.account_state("bob@example.com").await.unwrap(), None);
    }
    // No proxy is trusted by default: a forged X-Forwarded-For from a
    // local process names nobody.
    assert!(LoginLimits::default().trusted_proxies.is_empty());
    assert!(db::delete_user(&store, "alice").await.unwrap());
    assert!(db::delete_user(&store, "victor").await.unwrap());
    let (status, _) = page(&app, "/history", &cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session ended");
    assert_eq!(
        get(&app, "/api/v1/accounts", Some(VIEWER)).await.0,
        StatusCode::UNAUTHORIZED,
        "the cached token ended"
    );
}

/// `outscore user add` prints a secret once; it logs in and works as a
/// token against the same store; `user remove` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cli_creates_a_working_credential() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_outscore"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("OUTSCORE_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["user", "add", "ops", "--role", "abuse"]);
    assert_eq!(code, Some(0), "{out}");
    let token = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("API token:"))
        .and_then(|l| l.trim().strip_prefix("Authorization: Bearer "))
        .expect("token printed")
        .to_string();
    let secret = token.strip_prefix("ops:").unwrap().to_string();
    assert_eq!(
        run(&["user", "add", "bad name", "--role", "abuse"]).0,
        Some(1)
    );
    assert_eq!(run(&["user", "add", "x", "--role", "root"]).0, Some(1));
    assert_eq!(
        run(&["user", "list"]),
        (Some(0), "ops\tabuse\n".to_string())
    );

    let url = format!("sqlite://{}", dir.path().join("outscore.db").display());
    let store = Store::connect(&url, options()).await.unwrap();
    let stored = db::user(&store, "ops").await.unwrap().unwrap();
    assert!(stored.hash.starts_with("$argon2id$") && !stored.hash.contains(&secret));
    let app = app(state(&store));
    assert_eq!(
        get(&app, "/api/v1/accounts", Some(&token)).await.0,
        StatusCode::OK
    );
    assert!(login(&app, "ops", &secret).await.is_ok());
    assert_eq!(run(&["user", "remove", "ops"]).0, Some(0));
    assert_eq!(run(&["user", "remove", "ops"]).0, Some(1));
    // A fresh app (no token cache) no longer accepts it.
    let app = outscore::http::app(state(&store));
    assert_eq!(
        get(&app, "/api/v1/accounts", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    store.close().await;
}

/// Regression: a message the fail-safe let through unscored has a
/// report that says so, on the page, in the API and apart from scored ones.
async fn a_skipped_scan_is_shown_with_its_cause(store: &Store) {
    let app = setup(store).await;
    let mut skipped = ham(1, "bob@example.com");
    skipped.report.symbols.clear();
    skipped.report.score = 0.0;
    skipped.report.skipped = Some(outscore::scoring::ScanSkipped {
        cause: "timeout".into(),
        detail: "scan exceeded 20s".into(),
    });
    let scored = ham(2, "bob@example.com");
    let ids = (skipped.id.to_string(), scored.id.to_string());
    store.insert_reports(&[skipped, scored]).await.unwrap();
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    let (status, html) = page(&app, &format!("/reports/{}", ids.0), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("skipped (timeout): scan exceeded 20s"),
        "{html}"
    );
    let (_, html) = page(&app, &format!("/reports/{}", ids.1), &cookie).await;
    assert!(!html.contains("scan-skipped"), "{html}");
    let v = get_json(&app, &format!("/api/v1/reports/{}", ids.0), ABUSE).await;
    assert_eq!(
        v["report"]["report"]["skipped"],
        json!({"cause": "timeout", "detail": "scan exceeded 20s"})
    );
    let v = get_json(&app, &format!("/api/v1/reports/{}", ids.1), ABUSE).await;
    assert_eq!(v["report"]["report"].get("skipped"), None);
}

/// A volume-limit entry in the audit log, as the policy writes it.
async fn limit_hit(store: &Store, account: &str, action: &str, at: chrono::DateTime<Utc>) {
    use outscore::store::AuditEntry;
    let detail = if action == "prison" {
        json!({"until": (at + Duration::minutes(20)).to_rfc3339()})
    } else {
        json!({"external_rcpts": 100})
    };
    store
        .audit(&AuditEntry {
            at,
            actor: "policy".into(),
            account: Some(account.into()),
            action: action.into(),
            detail,
        })
        .await
        .unwrap();
}

async fn abuse_page_links_reports_offers_lift_and_shows_limits(store: &Store) {
    let app = setup(store).await;
    let (id, _) = seed(store).await;
    store
        .set_account_state(&AccountChange {
            account: "bob@example.com".into(),
            status: AccountStatus::Suspended,
            at: Utc::now() - Duration::days(4),
            tier: Some("L-SPAM40".into()),
            report_id: Some(id.clone()),
            reason: Some("L-SPAM40 mass mailing".into()),
        })
        .await
        .unwrap();
    let now = Utc::now();
    limit_hit(
        store,
        "jail@example.com",
        "prison",
        now - Duration::minutes(5),
    )
    .await;
    limit_hit(store, "old@example.com", "prison", now - Duration::hours(2)).await;
    limit_hit(store, "busy@example.com", "daily_limit", now).await;
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    let (_, html) = page(&app, "/abuse", &cookie).await;
    // The block links to the report that caused it.
    assert!(html.contains(&format!("href=\"/reports/{id}\"")), "{html}");
    // L-SPAM40: Unblock disabled with the reason; Lift offered.
    assert!(
        html.contains("Self-service unblock not possible: L-SPAM40 is mass abuse: abuse team only"),
        "{html}"
    );
    assert!(
        html.contains("disabled title=\"L-SPAM40 is mass abuse"),
        "{html}"
    );
    assert!(
        html.contains("action=\"/accounts/bob@example.com/lift\""),
        "{html}"
    );
    // Prison (until its end) and today's daily limit (until midnight UTC,
    // the default day), but not a prison that is over.
    let prison_end = (now + Duration::minutes(15))
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .format("%Y-%m-%d 00:00 UTC")
        .to_string();
    assert!(
        html.contains("2 accounts are held back by a volume limit"),
        "{html}"
    );
    let limited = &html[html.find("id=\"limited\"").expect("limited table")..];
    let jail = &limited[limited.find("jail@example.com").unwrap()..];
    assert!(
        jail.contains("in prison (rate limit)")
            && jail.get(..400).unwrap_or(jail).contains(&prison_end),
        "{jail}"
    );
    let busy = &limited[limited.find("busy@example.com").unwrap()..];
    assert!(
        busy.contains("daily limit reached") && busy.get(..400).unwrap_or(busy).contains(&midnight),
        "{busy}"
    );
    assert!(!html.contains("old@example.com"));
    // The same in the API.
    let v = get_json(&app, "/api/v1/accounts", VIEWER).await;
    assert_eq!(v["limited"].as_array().unwrap().len(), 2, "{v}");
    // The viewer sees it all, without a form.
    let viewer = login(&app, "victor", "viewer-secret").await.unwrap();
    let (_, html) = page(&app, "/abuse", &viewer).await;
    assert!(html.contains("jail@example.com") && html.contains("abuse team only"));
    assert!(!html.contains("<form method=\"post\" action=\"/accounts/"));
    let (status, _) = form(
        &app,
        "/accounts/bob%40example.com/lift",
        &viewer,
        "reason=x",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Lift: 303 back to Mail abuse, the outcome once, the account active.
    let (to, html) = form_then_get(
        &app,
        "/accounts/bob%40example.com/lift",
        &cookie,
        "reason=spoke+with+the+customer&back=%2Fabuse",
        None,
    )
    .await;
    assert_eq!(to, "/abuse");
    assert!(
        html.contains("flash good") && html.contains("lift done"),
        "{html}"
    );
    assert!(!html.contains("id=\"blocked\""), "{html}");
    let (_, again) = page(&app, "/abuse", &cookie).await;
    assert!(!again.contains("id=\"flash\""));
    // A lift without a reason is refused, said on the page.
    block(
        store,
        "bob@example.com",
        AccountStatus::Suspended,
        "L-SPAM20",
    )
    .await;
    let (_, html) = form_then_get(
        &app,
        "/accounts/bob%40example.com/lift",
        &cookie,
        "reason=",
        None,
    )
    .await;
    assert!(
        html.contains("flash bad") && html.contains("a reason is required"),
        "{html}"
    );
}

async fn accounts_page_lists_every_mailbox_and_suspends(store: &Store) {
    let app = setup(store).await;
    seed(store).await;
    limit_hit(store, "jail@example.com", "prison", Utc::now()).await;
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    let (_, html) = page(&app, "/accounts", &cookie).await;
    // bob from the directory (and traffic), carol from traffic only, jail
    // from the limit: every one listed, with suspend for the active ones.
    for account in ["bob@example.com", "carol@example.com", "jail@example.com"] {
        assert!(
            html.contains(&format!("action=\"/accounts/{account}/suspend\"")),
            "{account}: {html}"
        );
    }
    assert!(
        html.contains(">directory, traffic<") && html.contains(">traffic<"),
        "{html}"
    );
    assert!(html.contains("in prison (rate limit)"), "{html}");
    assert!(html.contains("<option value=\"L-SPAM40\">"));
    let (_, filtered) = page(&app, "/accounts?q=caro", &cookie).await;
    assert!(filtered.contains("carol@example.com") && !filtered.contains("bob@example.com"));
    // Suspend carol under L-SPAM40: 303 back to Accounts.
    let (to, html) = form_then_get(
        &app,
        "/accounts/carol%40example.com/suspend",
        &cookie,
        "reason=phishing+run&tier=L-SPAM40&back=%2Faccounts",
        None,
    )
    .await;
    assert_eq!(to, "/accounts");
    assert!(
        html.contains("flash good") && html.contains("suspend done"),
        "{html}"
    );
    let state = store
        .account_state("carol@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, AccountStatus::Suspended);
    assert_eq!(state.tier.as_deref(), Some("L-SPAM40"));
    assert!(
        html.contains("action=\"/accounts/carol@example.com/lift\""),
        "{html}"
    );
    // The viewer sees the list without actions.
    let viewer = login(&app, "victor", "viewer-secret").await.unwrap();
    let (_, html) = page(&app, "/accounts", &viewer).await;
    assert!(html.contains("carol@example.com") && !html.contains("/suspend\""));
}

async fn history_takes_dates_account_parts_and_score_order(store: &Store) {
    let mut state = state(store);
    state.reject_score = Some(Arc::new(|| 15.0));
    let app = setup_with(store, state).await;
    let (id, _) = seed(store).await;
    let mut odd = vec![
        ham(30, "a_b@example.com"),
        ham(31, "axb@example.com"),
        ham(32, "100%@example.com"),
    ];
    odd[0].report.score = 3.0;
    store.insert_reports(&odd).await.unwrap();
    let cookie = login(&app, "alice", "abuse-secret").await.unwrap();
    let count = |html: &str| html.matches("title=\"open the score report\"").count();
    // A part of the account name; LIKE's wildcards are plain characters.
    let (_, html) = page(&app, "/history?account=CAROL", &cookie).await;
    assert_eq!(count(&html), 6, "{html}");
    let (_, html) = page(&app, "/history?account=a_b", &cookie).await;
    assert_eq!(count(&html), 1, "{html}");
    let (_, html) = page(&app, "/history?account=%25", &cookie).await;
    assert_eq!(count(&html), 1, "{html}");
    let (_, html) = page(&app, "/history?account=example.com&exact=1", &cookie).await;
    assert_eq!(count(&html), 0, "exact wants the whole name");
    let (_, html) = page(&app, "/history?account=bob%40example.com&exact=1", &cookie).await;
    assert_eq!(count(&html), 1);
    // Plain dates and datetimes.
    let today = Utc::now().date_naive();
    let tomorrow = today + chrono::Days::new(1);
    let (_, html) = page(&app, &format!("/history?since={tomorrow}"), &cookie).await;
    assert!(html.contains("No messages match."), "{html}");
    let (_, html) = page(
        &app,
        &format!(
            "/history?since={}&until={}",
            today - chrono::Days::new(1),
            today
        ),
        &cookie,
    )
    .await;
    assert_eq!(count(&html), 10, "until a date includes that day: {html}");
    let an_hour_ago = (Utc::now() - Duration::minutes(45)).format("%Y-%m-%d %H:%M");
    let (_, html) = page(
        &app,
        &format!("/history?until={}", url(&an_hour_ago.to_string())),
        &cookie,
    )
    .await;
    assert_eq!(count(&html), 1, "only the spam of an hour ago: {html}");
    let (status, html) = page(&app, "/history?since=yesterday", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("a date like 2026-12-01"), "{html}");
    // Newest first by default; highest score first on request, with the
    // reject line, no next page, and the score cell opening the report.
    let (_, html) = page(&app, "/history", &cookie).await;
    assert!(
        html.contains("Refused at ≥ <strong>15.00</strong>"),
        "{html}"
    );
    assert!(html.find("Meeting notes 10").unwrap() < html.find("Cheap VIAGRA").unwrap());
    let (_, html) = page(&app, "/history?sort=score&limit=3", &cookie).await;
    assert_eq!(count(&html), 3, "{html}");
    let first = html.find("title=\"open the score report\"").unwrap();
    assert!(
        html[..first].contains(&format!("href=\"/reports/{id}\"")),
        "{html}"
    );
    assert!(
        html[first..].starts_with("title=\"open the score report\">9.50<"),
        "{html}"
    );
    assert!(
        !html.contains("class=\"reject-line\""),
        "no score at or above the line"
    );
    assert!(html.contains("this order has no next page") && !html.contains("Older messages"));
    // Scores above the line: the line row sits between 16 and 9.5.
    let mut high = spam(40, "dave@example.com", 0);
    high.report.score = 16.0;
    store.insert_reports(&[high]).await.unwrap();
    let (_, html) = page(&app, "/history?sort=score", &cookie).await;
    let line = html
        .find("class=\"reject-line\"")
        .expect("reject line shown");
    assert!(html.find(">16.00<").unwrap() < line && line < html.find(">9.50<").unwrap());
    // The API: the same filters; the score order has no cursor.
    let v = get_json(&app, "/api/v1/reports?sort=score&limit=2", VIEWER).await;
    assert_eq!(v["reports"][0]["score"], 16.0);
    assert!(v["next"].is_null());
    let req = Request::get("/api/v1/reports?sort=score&after=1.0000000000000001")
        .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::BAD_REQUEST);
}

fn url(s: &str) -> String {
    s.replace(' ', "%20").replace(':', "%3A")
}
