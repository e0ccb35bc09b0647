//! The milter daemon over real loopback sockets, driven by outscore's own
//! MTA-side client exactly as Postfix drives it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use outscore::envelope::Envelope;
use outscore::milter::client::{
    MilterClient, Submission, POSTFIX_ACTIONS, POSTFIX_PROTOCOL, POSTFIX_VERSION,
};
use outscore::milter::consts::step;
use outscore::milter::{FailSafe, Filter, FilterError, ListenAddr, Message, Reply, SessionOptions};
use outscore::pipeline::{Pipeline, PipelineOptions};
use outscore::scoring::{Engine, GTUBE};
use outscore::server::{Listener, Server};
use outscore::smtp::{Decision, EomVerdict, SmtpReply};

use crate::support::store::{postgres, sqlite};

both_backends!(a_fail_safe_verdict_leaves_a_report);

/// A filter whose behaviour is chosen by the message: the subject says
/// "panic", "slow" or "error"; MAIL FROM `<blocked@…>` is refused, and so
/// is recipient `r2@…`. It records what it saw.
#[derive(Default)]
struct ScriptedFilter {
    seen: std::sync::Mutex<Vec<(Envelope, Bytes)>>,
    eoms: AtomicUsize,
}

impl Filter for ScriptedFilter {
    async fn mail(&self, envelope: &Envelope) -> Decision {
        if envelope.mail_from.starts_with("panic@") {
            panic!("scripted panic at MAIL");
        }
        if envelope.mail_from.starts_with("blocked@") {
            Decision::Reply(
                SmtpReply::new(
                    550,
                    Some("5.7.1"),
                    &["L-SPAM20 account suspended, 100% sure"],
                )
                .unwrap(),
            )
        } else {
            Decision::Continue
        }
    }

    async fn rcpt(&self, _envelope: &Envelope, rcpt: &str) -> Decision {
        if rcpt.starts_with("r2@") {
            Decision::Reply(SmtpReply::new(452, Some("4.5.3"), &["Too many recipients"]).unwrap())
        } else {
            Decision::Continue
        }
    }

    async fn end_of_message(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> Result<EomVerdict, FilterError> {
        self.eoms.fetch_add(1, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&message.raw).to_string();
        self.seen
            .lock()
            .unwrap()
            .push((envelope, message.raw.clone()));
        if text.contains("Subject: panic") {
            panic!("scripted panic");
        }
        if text.contains("Subject: slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        if text.contains("Subject: error") {
            return Err(FilterError("scripted failure".into()));
        }
        Ok(EomVerdict::accept())
    }
}

struct Daemon {
    addr: ListenAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    async fn start<F: Filter>(filter: Arc<F>, options: SessionOptions, addr: &str) -> Daemon {
        let listener = Listener::bind(&addr.parse().unwrap()).await.unwrap();
        let addr = listener.local_addr();
        let shutdown = CancellationToken::new();
        let server = Server::new(vec![listener], filter, options, 64, Duration::from_secs(5));
        let token = shutdown.clone();
        let task = tokio::spawn(async move { server.run(token).await });
        Daemon {
            addr,
            shutdown,
            task,
        }
    }

    async fn client(&self) -> MilterClient<TcpStream> {
        let ListenAddr::Tcp(sock) = &self.addr else {
            panic!("tcp expected")
        };
        MilterClient::new(TcpStream::connect(sock).await.unwrap())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn submission(subject: &str, body: &str) -> Submission {
    Submission {
        mail_from: "<alice@customer.example>".into(),
        rcpts: vec!["<bob@remote.example>".into()],
        mail_macros: vec![
            ("{auth_authen}".into(), "alice@customer.example".into()),
            ("{auth_type}".into(), "PLAIN".into()),
        ],
        headers: vec![
            ("From".into(), "Alice <alice@customer.example>".into()),
            ("To".into(), "bob@remote.example".into()),
            ("Subject".into(), subject.into()),
        ],
        body: Bytes::from(body.replace('\n', "\r\n")),
    }
}

fn pipeline() -> Arc<Pipeline> {
    Arc::new(Pipeline::new(
        Engine::builtin(),
        PipelineOptions {
            add_headers: true,
            header_prefix: "X-Outscore".into(),
        },
    ))
}

async fn postfix_client(d: &Daemon) -> MilterClient<TcpStream> {
    let mut c = d.client().await;
    c.negotiate(POSTFIX_VERSION, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)
        .await
        .unwrap();
    c.connect("client.example", "192.0.2.10", "client.example")
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn negotiation_asks_only_for_what_outscore_uses() {
    let d = Daemon::start(pipeline(), SessionOptions::default(), "inet:127.0.0.1:0").await;
    let mut c = d.client().await;
    let Reply::OptNeg {
        version,
        actions,
        protocol,
        macros,
    } = c.negotiate(6, 0x1FF, 0x1F_FFFF).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(version, 6);
    assert_eq!(
        actions,
        0x01 | 0x10 | 0x20 | 0x100,
        "ADDHDRS|CHGHDRS|QUARANTINE|SETSYMLIST"
    );
    assert_ne!(protocol & step::NR_HDR, 0);
    assert_eq!(protocol & step::NR_MAIL, 0, "MAIL must be answered");
    assert_eq!(protocol & step::NR_RCPT, 0, "RCPT must be answered");
    let mail = macros
        .iter()
        .find(|(s, _)| *s == 2)
        .expect("MAIL macro list");
    assert!(mail.1.contains("{auth_authen}") && mail.1.contains("{client_addr}"));

    // An older MTA: version 2, no NR steps, no SETSYMLIST offered.
    let mut old = d.client().await;
    let Reply::OptNeg {
        version,
        actions,
        protocol,
        macros,
    } = old.negotiate(2, 0x3F, 0x7F).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((version, actions & 0x100, macros.len()), (2, 0, 0));
    assert_eq!(protocol & !0x7F, 0, "flags beyond the MTA's offer");
    // Without NR flags every step is answered.
    old.connect("h", "192.0.2.1", "h").await.unwrap();
    let out = old
        .send_message(&submission("hello", "hi\n"))
        .await
        .unwrap();
    assert_eq!(out.final_reply(), Some(&Reply::Accept));
    d.stop().await;
}

#[tokio::test]
async fn gtube_is_refused_and_ordinary_mail_gets_headers() {
    let d = Daemon::start(pipeline(), SessionOptions::default(), "inet:127.0.0.1:0").await;
    let mut c = postfix_client(&d).await;
    let body = format!("test\n{}\n", String::from_utf8_lossy(GTUBE));
    let out = c.send_message(&submission("gtube", &body)).await.unwrap();
    match out.final_reply() {
        Some(Reply::ReplyCode(text)) => assert!(text.starts_with("550 5.7.1 "), "{text}"),
        other => panic!("expected a 550 reply, got {other:?}"),
    }
    let out = c
        .send_message(&submission("lunch", "See you at noon.\n"))
        .await
        .unwrap();
    assert_eq!(out.eom.last(), Some(&Reply::Accept));
    let score = out.eom.iter().find_map(|r| match r {
        Reply::AddHeader { name, value } if name == "X-Outscore-Score" => Some(value.clone()),
        _ => None,
    });
    // HDR_LEADSPC was negotiated, so the value carries its own space.
    let score = score.expect("score header added");
    assert!(score.starts_with(' '), "{score:?}");
    let score: f64 = score.trim().parse().unwrap();
    assert!(score < Engine::builtin().reject_score(), "{score}");
    d.stop().await;
}

#[tokio::test]
async fn many_messages_on_one_connection_with_aborts_and_empty_macros() {
    let filter = Arc::new(ScriptedFilter::default());
    let d = Daemon::start(
        filter.clone(),
        SessionOptions::default(),
        "inet:127.0.0.1:0",
    )
    .await;
    let mut c = postfix_client(&d).await;
    for i in 0..50 {
        // Repeated ABORTs and empty macro packets between transactions.
        c.queue(&outscore::milter::Command::Abort);
        c.queue(&outscore::milter::Command::Macro {
            for_command: b'M',
            pairs: vec![],
        });
        let out = c
            .send_message(&submission(&format!("msg {i}"), &format!("body {i}\n")))
            .await
            .unwrap();
        assert_eq!(out.final_reply(), Some(&Reply::Accept), "message {i}");
    }
    assert_eq!(filter.eoms.load(Ordering::SeqCst), 50);
    {
        let seen = filter.seen.lock().unwrap();
        let (env, raw) = &seen[49];
        assert_eq!(env.auth_login.as_deref(), Some("alice@customer.example"));
        assert_eq!(env.mail_from, "alice@customer.example");
        assert_eq!(env.rcpts, ["bob@remote.example"]);
        assert_eq!(env.queue_id.as_deref(), Some("4ABC123"));
        assert_eq!(env.client.addr.unwrap().to_string(), "192.0.2.10");
        assert_eq!(env.client.helo.as_deref(), Some("client.example"));
        assert_eq!(env.mta_host.as_deref(), Some("relay.test"));
        assert!(!env.local_submission);
        // Headers keep their original spacing; the message is RFC 5322 with CRLF.
        assert_eq!(
            String::from_utf8_lossy(raw),
            "From: Alice <alice@customer.example>\r\nTo: bob@remote.example\r\nSubject: msg 49\r\n\r\nbody 49\r\n"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn refusals_at_mail_and_rcpt_keep_the_connection_usable() {
    let filter = Arc::new(ScriptedFilter::default());
    let d = Daemon::start(
        filter.clone(),
        SessionOptions::default(),
        "inet:127.0.0.1:0",
    )
    .await;
    let mut c = postfix_client(&d).await;
    let mut blocked = submission("x", "y\n");
    blocked.mail_from = "<blocked@customer.example>".into();
    let out = c.send_message(&blocked).await.unwrap();
    assert_eq!(
        out.final_reply(),
        Some(&Reply::ReplyCode(
            "550 5.7.1 L-SPAM20 account suspended, 100%% sure".into()
        ))
    );
    let mut many = submission("x", "y\n");
    many.rcpts = (0..4).map(|i| format!("<r{i}@remote.example>")).collect();
    let out = c.send_message(&many).await.unwrap();
    assert_eq!(
        out.envelope[3],
        Reply::ReplyCode("452 4.5.3 Too many recipients".into())
    );
    assert_eq!(out.eom.last(), Some(&Reply::Accept));
    {
        let seen = filter.seen.lock().unwrap();
        assert_eq!(
            seen.last().unwrap().0.rcpts.len(),
            3,
            "the refused recipient is not kept"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn sendmail_submissions_are_never_refused_at_rcpt() {
    let filter = Arc::new(ScriptedFilter::default());
    let d = Daemon::start(
        filter.clone(),
        SessionOptions::default(),
        "inet:127.0.0.1:0",
    )
    .await;
    let mut c = postfix_client(&d).await;
    let mut local = submission("x", "y\n");
    local.mail_from = "www-data@web.example".into(); // no brackets: sendmail(1)
    local.rcpts = (0..4).map(|i| format!("r{i}@remote.example")).collect();
    local.mail_macros.clear();
    let out = c.send_message(&local).await.unwrap();
    assert!(
        out.envelope.iter().all(|r| *r == Reply::Continue),
        "{:?}",
        out.envelope
    );
    // The refusal is applied at end-of-message instead.
    assert_eq!(
        out.eom.last(),
        Some(&Reply::ReplyCode("452 4.5.3 Too many recipients".into()))
    );
    assert!(filter.seen.lock().unwrap()[0].0.local_submission);
    d.stop().await;
}

#[tokio::test]
async fn failing_filters_get_the_fail_safe_and_progress_keeps_the_mta_waiting() {
    let filter = Arc::new(ScriptedFilter::default());
    let options = SessionOptions {
        scan_timeout: Duration::from_millis(600),
        progress_interval: Duration::from_millis(100),
        ..SessionOptions::default()
    };
    let d = Daemon::start(filter.clone(), options, "inet:127.0.0.1:0").await;
    let mut c = postfix_client(&d).await;
    for (subject, reason) in [("panic", "error"), ("error", "error"), ("slow", "timeout")] {
        let out = c.send_message(&submission(subject, "x\n")).await.unwrap();
        assert_eq!(
            out.eom,
            vec![
                Reply::AddHeader {
                    name: "X-Outscore-Scan".into(),
                    value: format!(" skipped ({reason})")
                },
                Reply::Accept
            ],
            "{subject}"
        );
    }
    // A panic at MAIL gets the fail-safe decision too: go on.
    let mut panicky = submission("fine", "x\n");
    panicky.mail_from = "<panic@customer.example>".into();
    let out = c.send_message(&panicky).await.unwrap();
    assert_eq!(out.envelope[0], Reply::Continue);
    assert_eq!(out.eom, vec![Reply::Accept]);
    // The same connection still works after panics and a timeout.
    let out = c.send_message(&submission("fine", "x\n")).await.unwrap();
    assert_eq!(out.eom, vec![Reply::Accept]);
    d.stop().await;

    // Progress packets are sent while waiting, and tempfail is honoured.
    let options = SessionOptions {
        scan_timeout: Duration::from_millis(600),
        progress_interval: Duration::from_millis(100),
        fail_safe: FailSafe::Tempfail,
        ..SessionOptions::default()
    };
    let d = Daemon::start(filter, options, "inet:127.0.0.1:0").await;
    let mut c = postfix_client(&d).await;
    let s = submission("slow", "x\n");
    c.queue(&outscore::milter::Command::Mail(vec![s.mail_from.clone()]));
    c.recv().await.unwrap();
    c.queue(&outscore::milter::Command::Rcpt(vec![s.rcpts[0].clone()]));
    c.recv().await.unwrap();
    c.queue(&outscore::milter::Command::Header {
        name: "Subject".into(),
        value: " slow".into(),
    });
    c.queue(&outscore::milter::Command::BodyEob(Bytes::new()));
    let mut progress = 0;
    let last = loop {
        match c.recv().await.unwrap() {
            Reply::Progress => progress += 1,
            other => break other,
        }
    };
    assert!(progress >= 2, "only {progress} progress packets");
    assert_eq!(
        last,
        Reply::ReplyCode("451 4.7.1 Message scan unavailable, try again later".into())
    );
    d.stop().await;
}

/// Regression: content with no MAIL FROM before it was scored and
/// recorded with an empty envelope. Now it closes the connection (Postfix
/// applies its milter_default_action) and the filter never sees it.
#[tokio::test]
async fn content_without_mail_closes_the_connection_unscored() {
    let filter = Arc::new(ScriptedFilter::default());
    let d = Daemon::start(
        filter.clone(),
        SessionOptions::default(),
        "inet:127.0.0.1:0",
    )
    .await;
    // Straight after CONNECT, and after a finished message and its ABORT.
    for after_a_message in [false, true] {
        let mut c = postfix_client(&d).await;
        if after_a_message {
            let out = c.send_message(&submission("fine", "x\n")).await.unwrap();
            assert_eq!(out.eom, vec![Reply::Accept]);
        }
        c.queue(&outscore::milter::Command::Macro {
            for_command: b'B',
            pairs: vec![("i".into(), "4ABC".into())],
        });
        c.queue(&outscore::milter::Command::Body(Bytes::from_static(
            b"Cheap pills\r\n",
        )));
        c.queue(&outscore::milter::Command::BodyEob(Bytes::new()));
        assert!(
            matches!(
                c.recv().await,
                Err(outscore::milter::client::ClientError::Closed)
            ),
            "after a message: {after_a_message}"
        );
    }
    assert_eq!(
        filter.eoms.load(Ordering::SeqCst),
        1,
        "only the real message"
    );
    // The daemon still serves other connections.
    let mut c = postfix_client(&d).await;
    let out = c.send_message(&submission("fine", "x\n")).await.unwrap();
    assert_eq!(out.eom, vec![Reply::Accept]);
    d.stop().await;
}

#[tokio::test]
async fn a_malformed_packet_closes_only_its_own_connection() {
    let d = Daemon::start(
        pipeline(),
        SessionOptions {
            max_frame: 1 << 20,
            ..SessionOptions::default()
        },
        "inet:127.0.0.1:0",
    )
    .await;
    let mut good = postfix_client(&d).await;
    let cases: [&[u8]; 4] = [
        b"\x00\x00\x00\x01Z",                 // unknown command
        b"\x00\x00\x00\x00",                  // zero length
        b"\x7f\xff\xff\xffL",                 // 2 GiB header: refused before buffering
        b"\x00\x00\x00\x05O\x00\x00\x00\x06", // short OPTNEG
    ];
    for bad in cases {
        let mut c = d.client().await;
        c.send_raw(bad).await.unwrap();
        assert!(
            matches!(
                c.recv().await,
                Err(outscore::milter::client::ClientError::Closed)
            ),
            "{bad:?}"
        );
    }
    // Headers over 64 KiB are fine.
    let mut big = submission("big", "x\n");
    big.headers.push(("X-Long".into(), "a".repeat(100_000)));
    let out = good.send_message(&big).await.unwrap();
    assert_eq!(out.eom.last(), Some(&Reply::Accept));
    d.stop().await;
}

#[tokio::test]
async fn unix_socket_listener_and_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/milter.sock");
    let filter = Arc::new(ScriptedFilter::default());
    let d = Daemon::start(
        filter.clone(),
        SessionOptions::default(),
        &format!("unix:{}", path.display()),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = MilterClient::new(UnixStream::connect(&path).await.unwrap());
            c.negotiate(POSTFIX_VERSION, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)
                .await
                .unwrap();
            c.connect("h", "192.0.2.2", "h").await.unwrap();
            for j in 0..5 {
                let out = c
                    .send_message(&submission(&format!("c{i} m{j}"), "x\n"))
                    .await
                    .unwrap();
                assert_eq!(out.final_reply(), Some(&Reply::Accept));
            }
            c.quit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(filter.eoms.load(Ordering::SeqCst), 200);
    d.stop().await;
    assert!(!path.exists(), "socket file removed on shutdown");
}

#[tokio::test]
async fn shutdown_lets_the_message_in_flight_finish() {
    let filter = Arc::new(ScriptedFilter::default());
    let options = SessionOptions {
        scan_timeout: Duration::from_secs(10),
        ..SessionOptions::default()
    };
    let d = Daemon::start(filter, options, "inet:127.0.0.1:0").await;
    let mut c = postfix_client(&d).await;
    let slow = tokio::spawn(async move { c.send_message(&submission("slow", "x\n")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = d.shutdown.clone();
    token.cancel();
    let out = slow.await.unwrap().unwrap();
    assert_eq!(
        out.eom.last(),
        Some(&Reply::Accept),
        "the slow message got its verdict"
    );
    tokio::time::timeout(Duration::from_secs(10), d.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn every_message_leaves_a_report_and_the_refusal_quotes_its_id() {
    use outscore::config::Config;
    use outscore::store::{self, Content, ReportId, ReportStore};

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let db = store::open(&config).await.unwrap();
    let (sink, writer) = store::spawn_writer(db.clone(), &config).unwrap();
    let pipeline = Arc::new(
        Pipeline::new(
            Engine::builtin(),
            PipelineOptions {
                add_headers: true,
                header_prefix: "X-Outscore".into(),
            },
        )
        .with_reports(sink),
    );
    let d = Daemon::start(pipeline, SessionOptions::default(), "inet:127.0.0.1:0").await;
    let mut c = postfix_client(&d).await;
    let body = format!("test\n{}\n", String::from_utf8_lossy(GTUBE));
    let out = c.send_message(&submission("gtube", &body)).await.unwrap();
    let Some(Reply::ReplyCode(text)) = out.final_reply() else {
        panic!("{out:?}")
    };
    let id: ReportId = text
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("reply ends with a report id");
    c.send_message(&submission("lunch", "See you at noon.\n"))
        .await
        .unwrap();
    d.stop().await;
    writer.shutdown().await;

    assert_eq!(db.count_reports().await.unwrap(), 2);
    let stored = db
        .report(&id)
        .await
        .unwrap()
        .expect("the refused message's report");
    assert_eq!(stored.action, "reject");
    assert_eq!(
        stored.envelope.auth_login.as_deref(),
        Some("alice@customer.example")
    );
    assert!(stored.report.symbol("GTUBE").is_some());
    let Content::Found(raw) = db.content(&id).await.unwrap() else {
        panic!("content kept")
    };
    assert!(String::from_utf8_lossy(&raw).contains("GTUBE-STANDARD"));
}

/// The daemon's pipeline, except that its scan sleeps past any budget when
/// the subject says "slow" and panics when it says "panic": the two ways a
/// scan ends without a verdict. MAIL, RCPT and `skipped` are the pipeline's.
struct Stalling(Arc<Pipeline>);

impl Filter for Stalling {
    async fn mail(&self, envelope: &Envelope) -> Decision {
        self.0.mail(envelope).await
    }

    async fn rcpt(&self, envelope: &Envelope, rcpt: &str) -> Decision {
        self.0.rcpt(envelope, rcpt).await
    }

    async fn end_of_message(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> Result<EomVerdict, FilterError> {
        let text = String::from_utf8_lossy(&message.raw).to_string();
        if text.contains("Subject: slow") {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        if text.contains("Subject: panic") {
            panic!("scripted panic");
        }
        self.0.end_of_message(envelope, message).await
    }

    fn skipped(
        &self,
        envelope: Envelope,
        message: Message,
        skip: outscore::milter::Skip,
        verdict: &EomVerdict,
    ) {
        self.0.skipped(envelope, message, skip, verdict)
    }
}

/// Regression: a scan that timed out or panicked let the message
/// through with `X-Outscore-Scan: skipped` and stored nothing. Now each
/// leaves a report with its content, the fail-safe's action and the cause.
async fn a_fail_safe_verdict_leaves_a_report(store: &outscore::store::Store) {
    use outscore::store::{spawn_writer_with, Content, ReportFilter, ReportStore, WriterOptions};

    let spool = tempfile::tempdir().unwrap();
    let (sink, writer) =
        spawn_writer_with(store.clone(), spool.path(), WriterOptions::default()).unwrap();
    let filter = Arc::new(Stalling(Arc::new(
        Pipeline::new(
            Engine::builtin(),
            PipelineOptions {
                add_headers: true,
                header_prefix: "X-Outscore".into(),
            },
        )
        .with_reports(sink.clone()),
    )));
    let budget = Duration::from_millis(300);
    let send = |subject: &str, from: &str| {
        let mut s = submission(subject, &format!("{subject} body\n"));
        s.mail_from = format!("<{from}>");
        s
    };
    for fail_safe in [
        FailSafe::Accept {
            header: Some("X-Outscore-Scan".into()),
        },
        FailSafe::Tempfail,
    ] {
        let tempfail = fail_safe == FailSafe::Tempfail;
        let options = SessionOptions {
            scan_timeout: budget,
            progress_interval: Duration::from_millis(100),
            fail_safe,
            ..SessionOptions::default()
        };
        let d = Daemon::start(filter.clone(), options, "inet:127.0.0.1:0").await;
        let mut c = postfix_client(&d).await;
        let cases: &[(&str, &str)] = if tempfail {
            &[("slow", "slow-tempfail@customer.example")]
        } else {
            &[
                ("slow", "slow@customer.example"),
                ("panic", "panic@customer.example"),
                ("fine", "fine@customer.example"),
            ]
        };
        for (subject, from) in cases {
            let out = c.send_message(&send(subject, from)).await.unwrap();
            let expected = if tempfail {
                Reply::ReplyCode("451 4.7.1 Message scan unavailable, try again later".into())
            } else {
                Reply::Accept
            };
            assert_eq!(out.eom.last(), Some(&expected), "{subject}");
        }
        d.stop().await;
    }
    writer.shutdown().await;

    let page = store
        .list_reports(&ReportFilter::default(), 50, None)
        .await
        .unwrap();
    let find = |from: &str| {
        page.reports
            .iter()
            .find(|r| r.mail_from == from)
            .unwrap_or_else(|| panic!("no report for {from}: {:?}", page.reports))
            .id
            .clone()
    };
    assert_eq!(page.reports.len(), 4, "{:?}", page.reports);
    for (from, action, cause, detail) in [
        (
            "slow@customer.example",
            "accept",
            "timeout",
            "scan exceeded 300ms",
        ),
        (
            "panic@customer.example",
            "accept",
            "error",
            "filter panicked",
        ),
        (
            "slow-tempfail@customer.example",
            "tempfail",
            "timeout",
            "scan exceeded 300ms",
        ),
    ] {
        let id = find(from);
        let r = store.report(&id).await.unwrap().expect("stored");
        assert_eq!(r.action, action, "{from}");
        let skipped = r
            .report
            .skipped
            .as_ref()
            .unwrap_or_else(|| panic!("{from}: {r:?}"));
        assert_eq!(
            (skipped.cause.as_str(), skipped.detail.as_str()),
            (cause, detail)
        );
        assert!(r.report.symbols.is_empty());
        assert_eq!(
            r.envelope.auth_login.as_deref(),
            Some("alice@customer.example")
        );
        let Content::Found(raw) = store.content(&id).await.unwrap() else {
            panic!("{from}: content kept")
        };
        assert!(String::from_utf8_lossy(&raw).contains(" body"), "{from}");
    }
    // A scanned message says nothing of a skipped scan.
    let fine = store
        .report(&find("fine@customer.example"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (fine.action.as_str(), fine.report.skipped),
        ("accept", None)
    );
}
