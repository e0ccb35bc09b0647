//! Learning from verdicts: a stored report marked spam or ham through the
//! review API and the report page updates the model on disk and in the
//! running pipeline, once per verdict, reversibly, audited, over SQLite and
//! PostgreSQL; and `outscore learn` / `outscore model export|import` through
//! the real binary.

use crate::support::classifier::message;
use crate::support::http::{form, form_then_get, page, send, SAME_HOST, SAME_ORIGIN};

use std::process::Command;
use std::sync::Arc;

use crate::support::store::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{Duration, Utc};
use outscore::classifier::{Classifier, Model, MODEL_FILE};
use outscore::http::auth::{hash_secret, UserRecord};
use outscore::http::{app, db, AppState, Role};
use outscore::learn::{LearnRequest, Learner};
use outscore::pipeline::{Pipeline, PipelineOptions};
use outscore::scoring::Engine;
use outscore::store::{AuditLog, Label, LearnedVerdicts, ReportId, ReportStore, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

both_backends!(
    learning_ham_lowers_the_probability_on_disk_and_in_the_pipeline,
    a_verdict_is_learned_once_and_reversal_does_not_double_count,
    refusals_by_role_body_and_retention,
    report_page_marks_as_ham_and_says_so,
    concurrent_learns_lose_no_update,
);

const ABUSE: &str = "alice:abuse-secret";
const VIEWER: &str = "victor:viewer-secret";

const SPAM: &[&str] = &[
    "viagra",
    "cheap",
    "winner",
    "prize",
    "casino",
    "bonus",
    "click",
    "offer",
    "guaranteed",
    "free",
    "money",
    "loan",
    "crypto",
    "urgent",
    "免费",
    "发票",
];
const HAM: &[&str] = &[
    "meeting", "agenda", "minutes", "review", "patch", "build", "release", "thanks", "tomorrow",
    "report", "schedule", "draft", "project", "lunch",
];

/// A model that has learned enough of both classes to classify.
fn trained() -> Model {
    crate::support::classifier::trained(SPAM, HAM).into_model()
}

/// Everything a test drives: data dir with a trained model, the running
/// pipeline, the router.
struct Rig {
    dir: tempfile::TempDir,
    pipeline: Arc<Pipeline>,
    learner: Arc<Learner<Store>>,
    app: Router,
    base: Model,
}

impl Rig {
    fn model_path(&self) -> std::path::PathBuf {
        self.dir.path().join(MODEL_FILE)
    }

    /// The model on disk, read back.
    fn on_disk(&self) -> Model {
        Model::load(&self.model_path()).unwrap()
    }
}

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

async fn rig(store: &Store) -> Rig {
    add_user(store, "alice", "abuse-secret", Role::Abuse).await;
    add_user(store, "victor", "viewer-secret", Role::Viewer).await;
    let dir = tempfile::tempdir().unwrap();
    let base = trained();
    base.save(&dir.path().join(MODEL_FILE)).unwrap();
    let pipeline = Arc::new(
        Pipeline::new(
            Engine::builtin(),
            PipelineOptions {
                add_headers: false,
                header_prefix: "X-Outscore".into(),
            },
        )
        .with_classifier(Classifier::new(
            Model::load(&dir.path().join(MODEL_FILE)).unwrap(),
        )),
    );
    let learner = Arc::new(Learner::new(store.clone(), dir.path()).with_pipeline(pipeline.clone()));
    let mut state = AppState::new(
        store.clone(),
        crate::support::store::default_enforcer(store),
    );
    state.learner = Some(learner.clone());
    Rig {
        dir,
        pipeline,
        learner,
        app: app(state),
        base,
    }
}

/// Store a report whose content is `raw`, received `hours_ago`.
async fn stored(store: &Store, n: usize, raw: Vec<u8>, hours_ago: i64) -> ReportId {
    let mut r = report(
        n,
        "bob@example.com",
        Utc::now() - Duration::hours(hours_ago),
        12.0,
        Some("L-SPAM20"),
    );
    r.content = raw;
    let id = r.id.clone();
    store.insert_reports(&[r]).await.unwrap();
    id
}

async fn post_learn(app: &Router, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(format!("/api/v1/reports/{id}/learn"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, _, b) = send(app, req).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

fn probability(model: Model, raw: &[u8]) -> f64 {
    Classifier::new(model).classify(raw).unwrap().probability
}

/// Counts only: the same model whatever time it was trained at.
fn counts(model: &Model) -> Vec<u8> {
    let mut m = model.clone();
    m.set_trained_at(0);
    m.to_bytes()
}

async fn learning_ham_lowers_the_probability_on_disk_and_in_the_pipeline(store: &Store) {
    let rig = rig(store).await;
    let raw = message(SPAM, 9001, "Win big");
    let id = stored(store, 1, raw.clone(), 1).await;
    let before = rig.pipeline.classify(&raw).unwrap().probability;
    assert!(before > 0.9, "the message looks like spam first: {before}");

    let (status, v) = post_learn(
        &rig.app,
        id.as_str(),
        ABUSE,
        json!({"verdict": "ham", "reason": "customer newsletter, opted in"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["verdict"], "ham");
    assert_eq!(v["reversed"], Value::Null);
    let answered = v["probability"].as_f64().unwrap();
    assert!((v["probability_before"].as_f64().unwrap() - before).abs() < 1e-9);
    assert!(answered < before, "before {before}, after {answered}");

    // The running pipeline uses the new model…
    let running = rig.pipeline.classify(&raw).unwrap().probability;
    assert!((running - answered).abs() < 1e-9);
    let stats = rig.pipeline.model_stats().unwrap();
    assert_eq!(stats.ham_messages, rig.base.ham_messages() + 1);
    assert_eq!(stats.spam_messages, rig.base.spam_messages());
    // …and so does a daemon that reloads the file.
    let disk = rig.on_disk();
    assert_eq!(disk.ham_messages(), rig.base.ham_messages() + 1);
    assert!((probability(disk, &raw) - answered).abs() < 1e-9);
    assert!(
        !rig.dir.path().join("model.tmp").exists(),
        "temporary file left behind"
    );

    // Recorded once, and audited with who, what and why.
    let learned = store.learned(&id).await.unwrap().unwrap();
    assert_eq!(learned.verdict, Label::Ham);
    assert_eq!(learned.actor, "alice");
    let audit = store.audit_entries(None, 10).await.unwrap();
    let entry = audit
        .iter()
        .find(|r| r.entry.action == "learn")
        .expect("a learn audit entry");
    assert_eq!(entry.entry.actor, "alice");
    assert_eq!(entry.entry.account.as_deref(), Some("bob@example.com"));
    assert_eq!(entry.entry.detail["report_id"], id.as_str());
    assert_eq!(entry.entry.detail["verdict"], "ham");
    assert_eq!(
        entry.entry.detail["reason"],
        "customer newsletter, opted in"
    );
}

async fn a_verdict_is_learned_once_and_reversal_does_not_double_count(store: &Store) {
    let rig = rig(store).await;
    let raw = message(SPAM, 9002, "Win big");
    let id = stored(store, 2, raw.clone(), 2).await;
    let body = json!({"verdict": "ham", "reason": "false positive"});
    assert_eq!(
        post_learn(&rig.app, id.as_str(), ABUSE, body.clone())
            .await
            .0,
        StatusCode::OK
    );
    let after_ham = rig.on_disk();

    // The same verdict again is refused and changes nothing.
    let (status, v) = post_learn(&rig.app, id.as_str(), ABUSE, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["detail"]["refusal"], "already_learned");
    assert_eq!(v["detail"]["verdict"], "ham");
    assert!(v["error"].as_str().unwrap().contains("already learned"));
    assert_eq!(counts(&rig.on_disk()), counts(&after_ham));

    // The opposite verdict takes the ham counts back, then counts spam: the
    // result is the base model plus this message as spam, nothing more.
    let (status, v) = post_learn(
        &rig.app,
        id.as_str(),
        ABUSE,
        json!({"verdict": "spam", "reason": "customer confirmed it was a hacked form"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["reversed"], "ham");
    let flipped = rig.on_disk();
    assert_eq!(flipped.ham_messages(), rig.base.ham_messages());
    assert_eq!(flipped.spam_messages(), rig.base.spam_messages() + 1);
    let mut expected = Classifier::new(rig.base.clone());
    assert!(expected.learn(&raw, true));
    assert_eq!(counts(&flipped), counts(expected.model()));
    assert_eq!(
        counts(&flipped),
        counts(&Model::from_bytes(&flipped.to_bytes()).unwrap())
    );
    assert_eq!(
        rig.pipeline.model_stats().unwrap(),
        flipped.stats(),
        "pipeline and disk agree"
    );
    assert_eq!(
        store.learned(&id).await.unwrap().unwrap().verdict,
        Label::Spam
    );
    let learns = store
        .audit_entries(None, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.action == "learn")
        .count();
    assert_eq!(learns, 2);
}

async fn refusals_by_role_body_and_retention(store: &Store) {
    let rig = rig(store).await;
    let raw = message(SPAM, 9003, "Win big");
    let id = stored(store, 3, raw.clone(), 1).await;
    let old = stored(store, 4, raw, 80).await;
    let ok = json!({"verdict": "ham", "reason": "x"});
    let cases = [
        (id.as_str(), VIEWER, ok.clone(), StatusCode::FORBIDDEN),
        (
            id.as_str(),
            ABUSE,
            json!({"verdict": "ham"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            id.as_str(),
            ABUSE,
            json!({"verdict": "ham", "reason": "  "}),
            StatusCode::BAD_REQUEST,
        ),
        (
            id.as_str(),
            ABUSE,
            json!({"verdict": "maybe", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            id.as_str(),
            ABUSE,
            json!({"reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (old.as_str(), ABUSE, ok.clone(), StatusCode::GONE),
        ("0123456789abcdef", ABUSE, ok.clone(), StatusCode::NOT_FOUND),
        ("not-a-report", ABUSE, ok.clone(), StatusCode::NOT_FOUND),
    ];
    for (target, token, body, want) in cases {
        let (status, v) = post_learn(&rig.app, target, token, body.clone()).await;
        assert_eq!(status, want, "{target} {token} {body}: {v}");
    }
    // No credential at all.
    let req = Request::post(format!("/api/v1/reports/{id}/learn"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(ok.to_string()))
        .unwrap();
    assert_eq!(send(&rig.app, req).await.0, StatusCode::UNAUTHORIZED);
    // Nothing was learned by any of them.
    assert_eq!(counts(&rig.on_disk()), counts(&rig.base));
    assert!(store.learned(&id).await.unwrap().is_none());
}

async fn login(app: &Router, user: &str, password: &str) -> String {
    let req = Request::post("/login")
        .header(header::HOST, SAME_HOST)
        .header(header::ORIGIN, SAME_ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("user={user}&password={password}")))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn report_page_marks_as_ham_and_says_so(store: &Store) {
    let rig = rig(store).await;
    let raw = message(SPAM, 9004, "Win big");
    let id = stored(store, 5, raw.clone(), 1).await;
    let before = rig.pipeline.classify(&raw).unwrap().probability;
    let uri = format!("/reports/{id}");
    let learn_uri = format!("/reports/{id}/learn");

    let viewer = login(&rig.app, "victor", "viewer-secret").await;
    let (status, html) = page(&rig.app, &uri, &viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("Mark as ham"), "viewer sees no learn form");
    let (status, _) = form(&rig.app, &learn_uri, &viewer, "verdict=ham&reason=x", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let cookie = login(&rig.app, "alice", "abuse-secret").await;
    let (_, html) = page(&rig.app, &uri, &cookie).await;
    assert!(
        html.contains(&format!("action=\"/reports/{id}/learn\"")),
        "{html}"
    );
    assert!(html.contains("value=\"spam\">Mark as spam</button>"));
    assert!(html.contains("value=\"ham\">Mark as ham</button>"));
    assert!(html.contains("Not learned yet."));

    // A post from another site is refused and learns nothing.
    let (status, _) = form(
        &rig.app,
        &learn_uri,
        &cookie,
        "verdict=ham&reason=x",
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(store.learned(&id).await.unwrap().is_none());

    // Without a reason: said plainly.
    let (to, html) =
        form_then_get(&rig.app, &learn_uri, &cookie, "verdict=ham&reason=", None).await;
    assert_eq!(to, uri, "back to the report");
    assert!(
        html.contains("Not learned: a reason is required."),
        "{html}"
    );

    let (_, html) = form_then_get(
        &rig.app,
        &learn_uri,
        &cookie,
        "verdict=ham&reason=newsletter+the+customer+asked+for",
        Some("http://127.0.0.1:7523"),
    )
    .await;
    assert!(html.contains("Learned as ham."), "{html}");
    assert!(html.contains("spam probability of"));
    assert!(html.contains("already in use"));
    assert!(rig.pipeline.classify(&raw).unwrap().probability < before);

    let (_, html) = page(&rig.app, &uri, &cookie).await;
    assert!(!html.contains("id=\"flash\""), "the outcome is shown once");
    assert!(
        html.contains("Learned as <strong>ham</strong> by alice"),
        "{html}"
    );
    assert!(html.contains("newsletter the customer asked for"));

    let (_, html) = form_then_get(
        &rig.app,
        &learn_uri,
        &cookie,
        "verdict=ham&reason=again",
        None,
    )
    .await;
    assert!(
        html.contains("flash bad")
            && html.contains("Not learned:")
            && html.contains("already learned as ham by alice")
    );
}

async fn concurrent_learns_lose_no_update(store: &Store) {
    let rig = rig(store).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(stored(store, 10 + n, message(HAM, 5000 + n, "Weekly sync"), 1).await);
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let learner = rig.learner.clone();
            let request = LearnRequest {
                report_id: id.clone(),
                verdict: Label::Spam,
                actor: "alice".into(),
                reason: "campaign".into(),
            };
            tokio::spawn(async move { learner.learn(&request).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let disk = rig.on_disk();
    assert_eq!(disk.spam_messages(), rig.base.spam_messages() + 6);
    assert_eq!(rig.pipeline.model_stats().unwrap(), disk.stats());
}

// ---- the command line ----

fn outscore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(args)
        .env_remove("OUTSCORE_CONFIG")
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn model_export_import_round_trip_and_damaged_import_refused() {
    let relay_a = tempfile::tempdir().unwrap();
    let relay_b = tempfile::tempdir().unwrap();
    let shared = relay_a.path().join("shared.bin");
    let a = relay_a.path().to_str().unwrap();
    let b = relay_b.path().to_str().unwrap();
    trained().save(&relay_a.path().join(MODEL_FILE)).unwrap();

    let out = outscore(&["model", "export", shared.to_str().unwrap(), "--data-dir", a]);
    assert!(out.status.success(), "{}", text(&out));
    let out = outscore(&["model", "import", shared.to_str().unwrap(), "--data-dir", b]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SIGHUP"), "{}", text(&out));
    let a_model = Model::load(&relay_a.path().join(MODEL_FILE)).unwrap();
    let b_model = Model::load(&relay_b.path().join(MODEL_FILE)).unwrap();
    assert_eq!(a_model.stats(), b_model.stats());
    assert_eq!(a_model.to_bytes(), b_model.to_bytes());

    // A damaged file is refused and the model in force stays.
    let mut bytes = std::fs::read(&shared).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = relay_a.path().join("damaged.bin");
    std::fs::write(&damaged, &bytes).unwrap();
    let before = std::fs::read(relay_b.path().join(MODEL_FILE)).unwrap();
    let out = outscore(&[
        "model",
        "import",
        damaged.to_str().unwrap(),
        "--data-dir",
        b,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a usable model") && err.contains("checksum"),
        "{err}"
    );
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(
        std::fs::read(relay_b.path().join(MODEL_FILE)).unwrap(),
        before
    );
    let missing = relay_a.path().join("missing.bin");
    let out = outscore(&[
        "model",
        "import",
        missing.to_str().unwrap(),
        "--data-dir",
        b,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot read"), "{}", text(&out));

    // Without a model file the built-in model is exported.
    let fresh = tempfile::tempdir().unwrap();
    let out = outscore(&[
        "model",
        "export",
        shared.to_str().unwrap(),
        "--data-dir",
        fresh.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        Model::load(&shared).unwrap().stats(),
        outscore::classifier::builtin_model().stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_command_updates_the_model_and_refuses_a_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    trained().save(&dir.path().join(MODEL_FILE)).unwrap();
    // The store the command finds in the data dir (the default SQLite file).
    let url = format!("sqlite://{}", dir.path().join("outscore.db").display());
    let store = Store::connect(&url, options()).await.unwrap();
    let raw = message(SPAM, 777, "Win big");
    let id = stored(&store, 1, raw.clone(), 1).await;
    let before = probability(Model::load(&dir.path().join(MODEL_FILE)).unwrap(), &raw);

    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            outscore(&args)
        })
    };
    let args = |verdict: &str| {
        vec![
            "learn".to_string(),
            verdict.to_string(),
            id.to_string(),
            "--reason".into(),
            "checked by hand".into(),
            "--by".into(),
            "carol".into(),
            "--data-dir".into(),
            data.clone(),
        ]
    };
    let out = run(args("--ham")).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("learned as ham"), "{said}");
    assert!(said.contains("SIGHUP"), "{said}");
    let after = probability(Model::load(&dir.path().join(MODEL_FILE)).unwrap(), &raw);
    assert!(after < before, "before {before}, after {after}");
    let learned = store.learned(&id).await.unwrap().unwrap();
    assert_eq!(
        (learned.verdict, learned.actor.as_str()),
        (Label::Ham, "carol")
    );

    let out = run(args("--ham")).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("already learned as ham"),
        "{}",
        text(&out)
    );

    // Neither or both verdicts: a usage error.
    let mut both = args("--ham");
    both.insert(1, "--spam".into());
    assert_eq!(run(both).await.unwrap().status.code(), Some(2));
    store.close().await;
}

#[test]
fn check_reports_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outscore.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", dir.path().to_str().unwrap()),
    )
    .unwrap();
    trained().save(&dir.path().join(MODEL_FILE)).unwrap();
    let out = outscore(&["check", "--config", config.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let model = Model::load(&dir.path().join(MODEL_FILE)).unwrap();
    let size = std::fs::metadata(dir.path().join(MODEL_FILE))
        .unwrap()
        .len();
    assert!(said.contains(&format!("({size} bytes, trained")), "{said}");
    assert!(
        said.contains(&format!(
            "{} spam, {} ham, {} tokens",
            model.spam_messages(),
            model.ham_messages(),
            model.stats().buckets_used
        )),
        "{said}"
    );
}
