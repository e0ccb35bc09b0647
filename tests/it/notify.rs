//! Notifications against real receivers on loopback: an HTTP server (axum)
//! for the webhook, Python's smtpd for the contact e-mail, /bin/sh for the
//! command. Proves retries (receiver down first, up later → delivered
//! exactly once) and that the outbox survives a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use outscore::config::{AccountsConfig, Language, LimitsConfig, NotifyConfig, SmtpRelay};
use outscore::notify::{
    enqueue_event, run_worker, FileOutbox, Notifier, OutboxQueue, WorkerOptions,
};
use outscore::policy::{
    AccountEntry, AccountFacts, Directory, Effect, Event, Outgoing, Policy, Scored, Tier, TierTable,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// An axum webhook receiver on `addr`, recording every POST.
async fn webhook_server(listener: TcpListener, received: Received, status: StatusCode) {
    async fn hook(
        State((received, status)): State<(Received, StatusCode)>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let id = headers
            .get("x-outscore-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        received
            .lock()
            .unwrap()
            .push((id, serde_json::from_str(&body).unwrap()));
        status
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state((received, status));
    axum::serve(listener, app).await.unwrap();
}

/// A port nobody listens on (yet).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn event(kind: &str) -> Event {
    Event {
        kind: kind.into(),
        account: "victim@hosted.example".into(),
        contact: Some("owner@contact.example".into()),
        tier: Some(Tier::LSpam20),
        report_id: Some("7f3a9c0d1e2f3a4b".into()),
        at: "2026-11-22T10:00:00Z".parse().unwrap(),
        reason: "rule #8 (tiers.toml:120) L-SPAM20: score 17.00 >= 1 x 15.00".into(),
        self_service: true,
        self_service_from: Some("2026-11-23T10:00:00Z".parse().unwrap()),
        symbols: vec!["KEYWORD_PHARMA".into(), "URL_SHORTENER".into()],
    }
}

fn fast(config: NotifyConfig) -> NotifyConfig {
    NotifyConfig {
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        timeout: Duration::from_secs(5),
        ..config
    }
}

struct Worker {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    wake: Arc<Notify>,
}

fn start_worker(outbox: Arc<FileOutbox>, notifier: Arc<Notifier>) -> Worker {
    let stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let handle = tokio::spawn(run_worker(
        outbox,
        notifier,
        wake.clone(),
        WorkerOptions {
            poll: Duration::from_millis(50),
            lease: Duration::from_secs(30),
            batch: 8,
        },
        stop.clone(),
    ));
    Worker { stop, handle, wake }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn webhook_down_first_then_up_is_delivered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = fast(NotifyConfig {
        webhook_url: Some(format!("http://127.0.0.1:{port}/hook")),
        ..NotifyConfig::default()
    });
    let notifier = Arc::new(Notifier::new(config, 90).unwrap());
    let outbox = Arc::new(FileOutbox::open(&dir.path().join("outbox.jsonl")).unwrap());
    let worker = start_worker(outbox.clone(), notifier.clone());
    let ids = enqueue_event(&*outbox, &notifier, &worker.wake, &event("suspended"))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "webhook only: no relay configured");

    // Nobody listens: attempts fail and are recorded in the journal.
    let journal = dir.path().join("outbox.jsonl");
    wait_for("two failed attempts", || {
        std::fs::read_to_string(&journal)
            .unwrap()
            .matches("\"op\":\"failed\"")
            .count()
            >= 2
    })
    .await;
    assert_eq!(outbox.pending().await.unwrap(), 1);

    // The receiver comes up on that port.
    let received: Received = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let server = tokio::spawn(webhook_server(
        listener,
        received.clone(),
        StatusCode::NO_CONTENT,
    ));
    wait_for("delivery", || !received.lock().unwrap().is_empty()).await;
    // Give a wrong worker time to send it again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
    assert_eq!(got[0].0.as_deref(), Some(ids[0].to_string().as_str()));
    assert_eq!(got[0].1["kind"], "suspended");
    assert_eq!(got[0].1["tier"], "L-SPAM20");
    assert_eq!(got[0].1["report_id"], "7f3a9c0d1e2f3a4b");
    assert_eq!(outbox.pending().await.unwrap(), 0);
    worker.stop.cancel();
    worker.handle.await.unwrap();
    server.abort();
}

#[tokio::test]
async fn webhook_error_status_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let received: Received = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(webhook_server(
        listener,
        received.clone(),
        StatusCode::SERVICE_UNAVAILABLE,
    ));
    let notifier = Arc::new(
        Notifier::new(
            fast(NotifyConfig {
                webhook_url: Some(format!("http://{addr}/hook")),
                ..NotifyConfig::default()
            }),
            90,
        )
        .unwrap(),
    );
    let outbox = Arc::new(FileOutbox::open(&dir.path().join("o.jsonl")).unwrap());
    let worker = start_worker(outbox.clone(), notifier.clone());
    enqueue_event(
        &*outbox,
        &notifier,
        &worker.wake,
        &event("password_reset_required"),
    )
    .await
    .unwrap();
    wait_for("three tries", || received.lock().unwrap().len() >= 3).await;
    assert_eq!(
        outbox.pending().await.unwrap(),
        1,
        "a 503 is not a delivery"
    );
    worker.stop.cancel();
    worker.handle.await.unwrap();
    server.abort();
}

#[tokio::test]
async fn command_gets_the_event_on_stdin_and_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let gate = dir.path().join("panel-up");
    // Fails until the "panel" is up, then appends the JSON it got.
    let script = format!(
        "test -e '{}' || {{ echo panel down >&2; exit 75; }}; cat >> '{}'; echo >> '{}'",
        gate.display(),
        out.display(),
        out.display()
    );
    let notifier = Arc::new(
        Notifier::new(
            fast(NotifyConfig {
                command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
                ..NotifyConfig::default()
            }),
            90,
        )
        .unwrap(),
    );
    let outbox = Arc::new(FileOutbox::open(&dir.path().join("o.jsonl")).unwrap());
    let worker = start_worker(outbox.clone(), notifier.clone());
    enqueue_event(
        &*outbox,
        &notifier,
        &worker.wake,
        &event("password_reset_required"),
    )
    .await
    .unwrap();
    let journal = dir.path().join("o.jsonl");
    wait_for("a failed attempt", || {
        std::fs::read_to_string(&journal)
            .unwrap()
            .contains("panel down")
    })
    .await;
    std::fs::write(&gate, "").unwrap();
    wait_for("the command's output", || out.exists()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let json: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(json["kind"], "password_reset_required");
    assert_eq!(json["account"], "victim@hosted.example");
    worker.stop.cancel();
    worker.handle.await.unwrap();
}

#[tokio::test]
async fn outbox_survives_a_restart_and_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    {
        let outbox = FileOutbox::open(&path).unwrap();
        let a = outbox
            .enqueue("webhook", &serde_json::json!({"n": 1}), Utc::now())
            .await
            .unwrap();
        outbox
            .enqueue("webhook", &serde_json::json!({"n": 2}), Utc::now())
            .await
            .unwrap();
        outbox.mark_delivered(a, Utc::now()).await.unwrap();
        let claimed = outbox
            .claim_due(Utc::now(), Duration::from_secs(600), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        // Claimed, then the process dies before the delivery is recorded.
    }
    // A crash in the middle of a write leaves half a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"op\":\"done\",\"id\":");
    std::fs::write(&path, text).unwrap();

    let outbox = FileOutbox::open(&path).unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 1);
    let claimed = outbox
        .claim_due(Utc::now(), Duration::from_secs(600), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the lease did not survive the restart");
    assert_eq!(claimed[0].payload["n"], 2);
    assert_eq!(claimed[0].attempts, 2, "the earlier attempt is remembered");
    // New ids never reuse old ones.
    let c = outbox
        .enqueue("webhook", &serde_json::json!({"n": 3}), Utc::now())
        .await
        .unwrap();
    assert_eq!(c, 3);
}

/// Python's smtpd on a free port; yields received messages as JSON.
struct SmtpSink {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    port: u16,
}

impl SmtpSink {
    async fn start(port: u16) -> SmtpSink {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify_support/smtp_sink.py");
        let mut child = tokio::process::Command::new("python3")
            .arg("-u")
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 (scripts/setup installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("smtp sink starts")
            .unwrap();
        assert_eq!(first.as_deref(), Some("ready"));
        SmtpSink { child, lines, port }
    }

    async fn next(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a message arrives")
            .unwrap()
            .expect("sink alive");
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn suspension_emails_the_contact_through_a_real_smtp_receiver_after_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let notify = fast(NotifyConfig {
        smtp_relay: Some(SmtpRelay {
            host: "127.0.0.1".into(),
            port,
        }),
        smtp_from: "abuse@provider.example".into(),
        smtp_helo: "relay.provider.example".into(),
        ..NotifyConfig::default()
    });
    let engine = outscore::scoring::Engine::builtin();
    let notifier = Arc::new(
        Notifier::new(notify, 90)
            .unwrap()
            .with_descriptions(engine.descriptions()),
    );

    // The policy decides a suspension for an account whose contact is in
    // the directory; its effects carry the event.
    let mut directory = Directory::default();
    directory.insert(AccountEntry {
        login: "victim@hosted.example".into(),
        contact: Some("owner@contact.example".into()),
        ..AccountEntry::default()
    });
    let policy = Policy::new(
        TierTable::builtin(),
        LimitsConfig::default(),
        &AccountsConfig::default(),
        directory,
    );
    let now = Utc::now();
    let mut facts = AccountFacts::fresh("victim@hosted.example");
    let out = policy.at_eom(
        &mut facts,
        &Scored {
            score: 45.0,
            reject_score: 15.0,
            symbols: &["ATTACH_DANGEROUS_EXT"],
            refused: false,
        },
        &Outgoing::sized(2048),
        "7f3a9c0d1e2f3a4b",
        now,
    );
    assert_eq!(out.tier.as_ref().unwrap().tier, Tier::LSpam21);
    let event = out
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Notify(ev) => Some(ev.clone()),
            _ => None,
        })
        .expect("a suspension notifies");

    let outbox = Arc::new(FileOutbox::open(&dir.path().join("outbox.jsonl")).unwrap());
    let worker = start_worker(outbox.clone(), notifier.clone());
    let ids = enqueue_event(&*outbox, &notifier, &worker.wake, &event)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "e-mail only");
    // The relay is down at first.
    let journal = dir.path().join("outbox.jsonl");
    wait_for("a failed attempt", || {
        std::fs::read_to_string(&journal)
            .unwrap()
            .contains("\"op\":\"failed\"")
    })
    .await;
    let mut sink = SmtpSink::start(port).await;
    let msg = sink.next().await;
    assert_eq!(msg["from"], "abuse@provider.example");
    assert_eq!(msg["to"], serde_json::json!(["owner@contact.example"]));
    let data = msg["data"].as_str().unwrap();
    assert!(data.contains("To: owner@contact.example"), "{data}");
    assert!(
        data.contains("Subject: [L-SPAM21] Outgoing mail of victim@hosted.example suspended"),
        "{data}"
    );
    assert!(data.contains("Report 7f3a9c0d1e2f3a4b"), "{data}");
    // What was found, in plain words: the symbol's description, not its
    // name or the tier rule.
    assert!(
        data.contains("  - Attachment with a dangerous extension\n"),
        "{data}"
    );
    assert!(
        !data.contains("ATTACH_DANGEROUS_EXT") && !data.contains("rule #"),
        "{data}"
    );
    assert!(
        data.contains("Change the password of victim@hosted.example"),
        "{data}"
    );
    assert!(data.contains("once every 90\n     days"), "{data}");
    // Exactly once.
    let again = tokio::time::timeout(Duration::from_millis(700), sink.lines.next_line()).await;
    assert!(again.is_err(), "a second copy arrived: {again:?}");
    assert_eq!(outbox.pending().await.unwrap(), 0);
    worker.stop.cancel();
    worker.handle.await.unwrap();
    let _ = sink.child.kill().await;
    let _ = sink.port;
}

#[test]
fn suspension_mail_says_from_when_self_service_unblock_is_possible() {
    let notifier = Notifier::new(NotifyConfig::default(), 90).unwrap();
    let (_, body) = notifier.render(&event("suspended"));
    assert!(body.contains("page), from 2026-11-23 10:00 UTC."), "{body}");
    assert!(
        body.contains("only our abuse team can unblock it"),
        "{body}"
    );
    let mut ev = event("suspended");
    ev.self_service_from = None;
    let (_, body) = notifier.render(&ev);
    assert!(!body.contains(", from 2026"), "{body}");
    assert!(
        body.contains("This is possible once every 90 days."),
        "{body}"
    );
}

#[test]
fn mass_abuse_mail_says_only_the_abuse_team_can_unblock() {
    let notifier = Notifier::new(NotifyConfig::default(), 90).unwrap();
    let mut ev = event("suspended");
    ev.tier = Some(Tier::LSpam40);
    ev.self_service = false;
    let (subject, body) = notifier.render(&ev);
    assert_eq!(
        subject,
        "[L-SPAM40] Outgoing mail of victim@hosted.example suspended"
    );
    assert!(
        body.contains("can only be lifted by our abuse team"),
        "{body}"
    );
    assert!(!body.contains("once every"), "{body}");
}

/// Regression: the contact went unchecked into `RCPT TO:` and the
/// `To:` header, and event fields into `Subject:`, so CR/LF in them could
/// add recipients or headers. Against a real SMTP receiver: a job whose
/// contact smuggles a second RCPT is given up at once and nothing is sent;
/// a login with CR/LF reaches the contact as one subject line.
#[tokio::test]
async fn notification_fields_cannot_add_recipients_or_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SmtpSink::start(free_port()).await;
    let notify = fast(NotifyConfig {
        smtp_relay: Some(SmtpRelay {
            host: "127.0.0.1".into(),
            port: sink.port,
        }),
        smtp_from: "abuse@provider.example".into(),
        smtp_helo: "relay.provider.example".into(),
        ..NotifyConfig::default()
    });
    let notifier = Arc::new(Notifier::new(notify, 90).unwrap());
    let outbox = Arc::new(FileOutbox::open(&dir.path().join("outbox.jsonl")).unwrap());
    let worker = start_worker(outbox.clone(), notifier.clone());

    // An event whose contact is not one address queues no e-mail.
    let mut bad_contact = event("suspended");
    bad_contact.contact =
        Some("owner@contact.example>\r\nRCPT TO:<victim@elsewhere.example".into());
    let ids = enqueue_event(&*outbox, &notifier, &worker.wake, &bad_contact)
        .await
        .unwrap();
    assert!(ids.is_empty(), "{ids:?}");
    // One already in the outbox is refused before the relay is contacted.
    outbox
        .enqueue(
            "email",
            &serde_json::json!({
                "to": "owner@contact.example>\r\nRCPT TO:<victim@elsewhere.example",
                "subject": "s",
                "body": "b",
            }),
            Utc::now(),
        )
        .await
        .unwrap();
    // A login with CR/LF in it, as the subject's {account}.
    let mut injected = event("suspended");
    injected.account = "victim@hosted.example\r\nBcc: all@victims.example".into();
    enqueue_event(&*outbox, &notifier, &worker.wake, &injected)
        .await
        .unwrap();

    let msg = sink.next().await;
    assert_eq!(msg["to"], serde_json::json!(["owner@contact.example"]));
    let data = msg["data"].as_str().unwrap();
    let (head, _) = data.split_once("\n\n").unwrap_or((data, ""));
    assert!(
        head.lines().all(|l| !l.starts_with("Bcc:")),
        "a header was injected:\n{head}"
    );
    assert!(
        head.contains(
            "Subject: [L-SPAM20] Outgoing mail of victim@hosted.example  Bcc: all@victims.example suspended"
        ),
        "{head}"
    );
    wait_for("the outbox to empty", || {
        std::fs::read_to_string(dir.path().join("outbox.jsonl"))
            .unwrap()
            .matches("\"op\":\"done\"")
            .count()
            == 2
    })
    .await;
    let journal = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
    assert!(!journal.contains("\"op\":\"failed\""), "retried: {journal}");
    let again = tokio::time::timeout(Duration::from_millis(700), sink.lines.next_line()).await;
    assert!(again.is_err(), "the bad job was sent: {again:?}");
    worker.stop.cancel();
    worker.handle.await.unwrap();
    let _ = sink.child.kill().await;
}

/// The customer's language, per domain or account: the built-in letter in
/// Italian, French or Greek says the same things, the found list in the
/// same place and the unblock step matching the account's state.
#[test]
fn the_suspension_mail_speaks_the_customers_language() {
    let mut config = NotifyConfig::default();
    config
        .language_for
        .insert("hosted.example".into(), Language::It);
    config
        .language_for
        .insert("grc@hosted.example".into(), Language::El);
    let notifier = Notifier::new(config, 90).unwrap();
    let (subject, body) = notifier.render(&event("suspended"));
    assert_eq!(
        subject,
        "[L-SPAM20] Invio di posta da victim@hosted.example sospeso"
    );
    assert!(
        body.contains("Cambi la password di victim@hosted.example"),
        "{body}"
    );
    assert!(
        body.contains("a partire dal 2026-11-23 10:00 UTC"),
        "{body}"
    );
    assert!(body.contains("Rapporto 7f3a9c0d1e2f3a4b"), "{body}");
    let mut ev = event("suspended");
    ev.account = "grc@hosted.example".into();
    let (_, body) = notifier.render(&ev);
    assert!(body.contains("Αλλάξτε τον κωδικό πρόσβασης"), "{body}");
    let config = NotifyConfig {
        language: Language::Fr,
        ..NotifyConfig::default()
    };
    let (_, body) = Notifier::new(config, 90)
        .unwrap()
        .render(&event("suspended"));
    assert!(body.contains("Changez le mot de passe"), "{body}");
    assert!(body.contains("  - URL_SHORTENER"), "{body}");
}
