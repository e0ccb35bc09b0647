//! The daemon's composition root: from a validated [`Config`] and a
//! compiled [`RuleSet`] to running listeners, the report writer, the purger,
//! the notification worker and the review interface, and the orderly stop
//! (connections drain, reports are written or spooled, then the store
//! closes). SIGHUP recompiles the rule set with the same code as `outscore
//! check` and swaps it whole; a broken set is refused and the one in force
//! stays. This is the only place that picks concrete implementations.

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::auth::identity::IdentityChecker;
use crate::classifier::{self, Classifier};
use crate::config::{Config, FailSafe};
use crate::http;
use crate::learn::Learner;
use crate::milter::{self, ListenAddr, SessionOptions};
use crate::notify::{self, EventQueue};
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::policy::service::Enforcer;
use crate::ruleset::{RuleSet, SharedRules};
use crate::server::{Listener, Server};
use crate::store::{self, Store};

/// The milter session options a configuration asks for.
pub fn session_options(config: &Config) -> SessionOptions {
    SessionOptions {
        max_frame: config.milter.max_frame_bytes,
        scan_timeout: config.milter.scan_timeout,
        progress_interval: config.milter.progress_interval,
        idle_timeout: config.milter.idle_timeout,
        fail_safe: match config.milter.fail_safe {
            FailSafe::Accept => milter::FailSafe::Accept {
                header: Some(format!("{}-Scan", config.milter.header_prefix)),
            },
            FailSafe::Tempfail => milter::FailSafe::Tempfail,
        },
        ..SessionOptions::default()
    }
}

/// A daemon with its sockets bound and its workers started, ready to run.
pub struct Daemon {
    config: Config,
    server: Server<Pipeline>,
    pipeline: Arc<Pipeline>,
    rules: SharedRules,
    enforcer: Arc<crate::pipeline::StoreEnforcer>,
    store: Store,
    writer: store::WriterHandle,
    purger: store::Purger,
    notify_stop: CancellationToken,
    notify_worker: JoinHandle<()>,
    http: Option<(tokio::net::TcpListener, http::AppState)>,
    milter_addrs: Vec<ListenAddr>,
}

/// Bind the listeners, open the store and start the workers.
pub async fn build(config: &Config, rules: RuleSet) -> anyhow::Result<Daemon> {
    let config = config.clone();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut listeners = Vec::new();
    for addr in &config.milter.listen {
        listeners.push(
            Listener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let milter_addrs = listeners.iter().map(Listener::local_addr).collect();
    let identity =
        IdentityChecker::from_config(&config).context("cannot set up sender identity checks")?;
    identity.replace_accounts((*rules.identities).clone());
    let store = store::open_for_daemon(&config)
        .await
        .context("cannot open the report store")?;
    let (reports, writer) =
        store::spawn_writer(store.clone(), &config).context("cannot start the report writer")?;
    let purger = store::spawn_purger(store.clone(), &config);
    info!(sources = %rules.sources, "rules compiled");
    let notifier = rules.notifier.clone();
    let rules = SharedRules::new(rules);
    let outbox = Arc::new(store.clone());
    let enforcer = Arc::new(
        Enforcer::new(
            rules.load().policy.clone(),
            store.clone(),
            store.clone(),
            EventQueue::new(outbox.clone(), notifier.clone()),
        )
        .with_policy_source(Arc::new(rules.clone())),
    );
    let notify_stop = CancellationToken::new();
    let notify_worker = tokio::spawn(notify::run_worker(
        outbox,
        notifier,
        enforcer.events.wake.clone(),
        notify::WorkerOptions::default(),
        notify_stop.clone(),
    ));
    let (model, source) =
        classifier::load_model(&config.data_dir).context("cannot load the classifier model")?;
    info!(model = ?source, "classifier model loaded");
    let reports_for_http = reports.clone();
    let pipeline = Arc::new(
        Pipeline::with_rules(
            rules.clone(),
            PipelineOptions {
                add_headers: config.milter.add_headers,
                header_prefix: config.milter.header_prefix.clone(),
            },
        )
        .with_identity(Arc::new(identity))
        .with_reports(reports)
        .with_enforcer(enforcer.clone())
        .with_classifier(Classifier::new(model)),
    );
    let http = if config.http.enabled {
        // The pipeline's own enforcer: an abuse-team action is seen by the
        // very next MAIL FROM (one facts cache) and notifies like any other.
        let mut state = http::AppState::new(store.clone(), enforcer.clone());
        state.learner = Some(Arc::new(
            Learner::new(store.clone(), &config.data_dir).with_pipeline(pipeline.clone()),
        ));
        state.session_ttl = config.http.session_ttl;
        state.secure_cookie = config.http.secure_cookie;
        state.throttle = Arc::new(http::throttle::LoginThrottle::new(
            http::throttle::LoginLimits::from_config(&config.http),
        ));
        state.reports = Some(reports_for_http);
        let in_force = rules.clone();
        state.reject_score = Some(Arc::new(move || in_force.load().engine.reject_score()));
        state.spool_dir = Some(writer.spool().dir().to_path_buf());
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([http] listen)", config.http.listen))?;
        Some((listener, state))
    } else {
        None
    };
    let server = Server::new(
        listeners,
        pipeline.clone(),
        session_options(&config),
        config.milter.max_connections,
        config.milter.shutdown_grace,
    )
    .with_allow_from(config.milter.allow_from.clone());
    Ok(Daemon {
        config,
        server,
        pipeline,
        rules,
        enforcer,
        store,
        writer,
        purger,
        notify_stop,
        notify_worker,
        http,
        milter_addrs,
    })
}

impl Daemon {
    /// Where the milter listens (port 0 resolved).
    pub fn milter_addrs(&self) -> &[ListenAddr] {
        &self.milter_addrs
    }

    /// Where the review interface listens, when enabled.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Recompile the rule set and the model from their files and swap them
    /// in; on error the ones in force stay. Returns what was reloaded.
    pub fn reload(&self) -> Result<String, String> {
        reload(
            &self.config,
            None,
            &self.rules,
            &self.pipeline,
            &self.enforcer,
        )
        .map(|(what, _, _)| what)
    }

    /// Serve until `shutdown` is cancelled, then stop in order. SIGHUP
    /// reloads, SIGTERM and SIGINT cancel `shutdown` when `signals` is set.
    pub async fn run(self, shutdown: CancellationToken, signals: bool) -> anyhow::Result<()> {
        if signals {
            spawn_signal_handlers(
                shutdown.clone(),
                self.config.clone(),
                self.rules.clone(),
                self.pipeline.clone(),
                self.enforcer.clone(),
            )?;
        }
        let http = self.http.map(|(listener, state)| {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = http::serve_on(state, listener, stop).await {
                    error!(error = %e, "review interface stopped");
                }
            })
        });
        info!(version = env!("CARGO_PKG_VERSION"), data_dir = %self.config.data_dir.display(), "outscore started");
        self.server.run(shutdown).await;
        if let Some(http) = http {
            let _ = http.await;
        }
        // Every report queued by the connections is written (or spooled) first.
        self.writer.shutdown().await;
        self.purger.stop().await;
        self.notify_stop.cancel();
        let _ = self.notify_worker.await;
        self.store.close().await;
        info!("outscore stopped");
        Ok(())
    }
}

/// Re-read `outscore.toml` (when the daemon was started from a file) and
/// recompile everything an operator edits, then swap it in: the rule
/// files, tiers, accounts directory and identities, e-mail template, model,
/// and the reloadable sections of the file (`mode`, `[mode_for]`,
/// `[message_policy]`, `[limits]`, `[accounts]`, `[notify]`, `[identity]`,
/// `[scoring]`). Sections that need a new socket or store keep their value
/// until a restart, and a change to them (against `file`, the file as last
/// read) is named in the result. Returns what was reloaded, the
/// configuration now in force and the file as read now.
fn reload(
    config: &Config,
    file: Option<&Config>,
    rules: &SharedRules,
    pipeline: &Pipeline,
    enforcer: &crate::pipeline::StoreEnforcer,
) -> Result<(String, Config, Option<Config>), String> {
    let (next, restart, fresh) = match &config.source {
        Some(path) => {
            let fresh = Config::load(path).map_err(|e| e.to_string())?;
            let restart = file.map(|f| needs_restart(f, &fresh)).unwrap_or_default();
            (reloadable(config, fresh.clone()), restart, Some(fresh))
        }
        None => (config.clone(), Vec::new(), None),
    };
    let compiled = RuleSet::compile(&next).map_err(|e| e.to_string())?;
    let (model, source) =
        classifier::load_model(&next.data_dir).map_err(|e| format!("classifier model: {e}"))?;
    let mut what = format!(
        "{}; model: {source:?}; configuration: {}",
        compiled.sources,
        config
            .source
            .as_deref()
            .map_or("defaults".to_string(), |p| p.display().to_string())
    );
    if !restart.is_empty() {
        what.push_str(&format!(
            "; changed but needs a restart: {}",
            restart.join(", ")
        ));
    }
    enforcer.events.replace_notifier(compiled.notifier.clone());
    if let Some(identity) = pipeline.identity() {
        identity.replace_accounts((*compiled.identities).clone());
    }
    rules.store(compiled);
    pipeline.replace_classifier(Classifier::new(model));
    Ok((what, next, fresh))
}

/// The sections that changed between two readings of the file and take
/// effect only at a restart.
fn needs_restart(before: &Config, after: &Config) -> Vec<&'static str> {
    [
        (before.milter != after.milter, "[milter]"),
        (before.store != after.store, "[store]"),
        (before.http != after.http, "[http]"),
        (before.log != after.log, "[log]"),
        (before.spf != after.spf, "[spf]"),
        (before.data_dir != after.data_dir, "data_dir"),
    ]
    .into_iter()
    .filter_map(|(changed, name)| changed.then_some(name))
    .collect()
}

/// `current` with the sections of `fresh` that take effect without a new
/// listener or store.
fn reloadable(current: &Config, fresh: Config) -> Config {
    Config {
        scoring: fresh.scoring,
        identity: fresh.identity,
        limits: fresh.limits,
        notify: fresh.notify,
        accounts: fresh.accounts,
        message_policy: fresh.message_policy,
        mode: fresh.mode,
        ..current.clone()
    }
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads the rule files, the
/// accounts directory, the e-mail template and the model (listen addresses
/// and the store need a restart).
fn spawn_signal_handlers(
    shutdown: CancellationToken,
    config: Config,
    rules: SharedRules,
    pipeline: Arc<Pipeline>,
    enforcer: Arc<crate::pipeline::StoreEnforcer>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut config = config;
        let mut file = config.source.as_deref().and_then(|p| Config::load(p).ok());
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => match reload(&config, file.as_ref(), &rules, &pipeline, &enforcer) {
                    Ok((what, next, fresh)) => {
                        info!(reloaded = %what, "SIGHUP: configuration and rules reloaded");
                        config = next;
                        file = fresh;
                    }
                    Err(errors) => warn!(errors = %errors, "SIGHUP: reload failed; keeping the configuration and rules in force"),
                },
            }
        }
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::client::{MilterClient, Submission};

    #[tokio::test]
    async fn a_built_daemon_refuses_gtube_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.milter.listen = vec!["inet:127.0.0.1:0".parse().unwrap()];
        config.http.enabled = false;
        let rules = RuleSet::compile(&config).unwrap();
        let daemon = build(&config, rules).await.unwrap();
        let ListenAddr::Tcp(addr) = daemon.milter_addrs()[0].clone() else {
            panic!("tcp listener")
        };
        assert_ne!(addr.port(), 0);
        assert!(daemon.reload().is_ok());
        let stop = CancellationToken::new();
        let running = tokio::spawn(daemon.run(stop.clone(), false));

        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut client = MilterClient::new(stream);
        client.negotiate(6, 0x1FF, 0x1FFFFF).await.unwrap();
        client
            .connect("client.example", "192.0.2.1", "client.example")
            .await
            .unwrap();
        let outcome = client
            .send_message(&Submission {
                mail_from: "<alice@example.com>".into(),
                rcpts: vec!["<bob@example.net>".into()],
                mail_macros: vec![("{auth_authen}".into(), "alice@example.com".into())],
                headers: vec![
                    ("From".into(), "alice@example.com".into()),
                    ("Subject".into(), "test".into()),
                ],
                body: bytes::Bytes::from_static(
                    b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n",
                ),
            })
            .await
            .unwrap();
        let reply = format!("{:?}", outcome.final_reply());
        assert!(reply.contains("550"), "GTUBE refused: {reply}");
        drop(client);
        stop.cancel();
        running.await.unwrap().unwrap();
    }

    /// Send one message as `login` (none when empty) from `mail_from`; the
    /// replies to MAIL FROM and at end of message.
    async fn send(
        addr: std::net::SocketAddr,
        login: &str,
        mail_from: &str,
        body: &'static [u8],
    ) -> (String, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut client = MilterClient::new(stream);
        client.negotiate(6, 0x1FF, 0x1FFFFF).await.unwrap();
        client
            .connect("client.example", "192.0.2.1", "client.example")
            .await
            .unwrap();
        let outcome = client
            .send_message(&Submission {
                mail_from: format!("<{mail_from}>"),
                rcpts: vec!["<bob@example.net>".into()],
                mail_macros: if login.is_empty() {
                    Vec::new()
                } else {
                    vec![("{auth_authen}".into(), login.into())]
                },
                headers: vec![
                    ("From".into(), mail_from.into()),
                    ("Subject".into(), "test".into()),
                ],
                body: bytes::Bytes::from_static(body),
            })
            .await
            .unwrap();
        (
            format!("{:?}", outcome.envelope.first()),
            format!("{:?}", outcome.final_reply()),
        )
    }

    /// SIGHUP's reload re-reads outscore.toml: the accounts directory it
    /// names (with the identities a login may use) and `mode` take effect
    /// on the next message; a changed listen address is named as needing a
    /// restart.
    #[tokio::test]
    async fn reload_reads_the_configuration_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outscore.toml");
        let base = format!(
            "data_dir = \"{}\"\n[milter]\nlisten = [\"inet:127.0.0.1:0\"]\n[http]\nenabled = false\n",
            dir.path().display()
        );
        std::fs::write(&path, &base).unwrap();
        let config = Config::load(&path).unwrap();
        let daemon = build(&config, RuleSet::compile(&config).unwrap())
            .await
            .unwrap();
        let ListenAddr::Tcp(addr) = daemon.milter_addrs()[0].clone() else {
            panic!("tcp listener")
        };
        let (rules, pipeline, enforcer) = (
            daemon.rules.clone(),
            daemon.pipeline.clone(),
            daemon.enforcer.clone(),
        );
        let stop = CancellationToken::new();
        let running = tokio::spawn(daemon.run(stop.clone(), false));
        let gtube: &'static [u8] =
            b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

        let (mail, _) = send(
            addr,
            "alice@example.com",
            "sales@shop.example",
            b"hello\r\n",
        )
        .await;
        assert!(mail.contains("Sender mismatch (mail from)"), "{mail}");

        let csv = dir.path().join("accounts.csv");
        std::fs::write(&csv, "login,identities\nalice@example.com,@shop.example\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "mode = \"observe\"\n{}[accounts]\ndirectory_csv = \"{}\"\n",
                base.replace("127.0.0.1:0", "127.0.0.1:1"),
                csv.display()
            ),
        )
        .unwrap();
        let (what, next, _) = reload(&config, Some(&config), &rules, &pipeline, &enforcer).unwrap();
        assert!(what.contains("accounts.csv"), "{what}");
        assert!(what.contains("needs a restart: [milter]"), "{what}");
        assert_eq!(next.milter, config.milter, "the listener stays");

        let (mail, eom) = send(
            addr,
            "alice@example.com",
            "sales@shop.example",
            b"hello\r\n",
        )
        .await;
        assert!(!mail.contains("mismatch"), "{mail}");
        assert!(!eom.contains("550"), "{eom}");
        let (_, eom) = send(addr, "carol@example.com", "carol@example.com", gtube).await;
        assert!(!eom.contains("550"), "observe mode accepts GTUBE: {eom}");
        stop.cancel();
        running.await.unwrap().unwrap();
    }

    /// A daemon on a free loopback port with `config`'s other settings and
    /// no review interface, running until the token is cancelled.
    async fn running(
        dir: &std::path::Path,
        adjust: impl FnOnce(&mut Config),
    ) -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        config.milter.listen = vec!["inet:127.0.0.1:0".parse().unwrap()];
        config.http.enabled = false;
        adjust(&mut config);
        let daemon = build(&config, RuleSet::compile(&config).unwrap())
            .await
            .unwrap();
        let ListenAddr::Tcp(addr) = daemon.milter_addrs()[0].clone() else {
            panic!("tcp listener")
        };
        let stop = CancellationToken::new();
        let handle = tokio::spawn(daemon.run(stop.clone(), false));
        (addr, stop, handle)
    }

    /// Unauthenticated spam with a forged MAIL FROM is charged to the
    /// unauthenticated claim, never to the mailbox it names: the victim's
    /// own logged-in mail still flows.
    #[tokio::test]
    async fn a_forged_mail_from_never_blocks_the_mailbox_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, daemon) = running(dir.path(), |_| {}).await;
        let gtube: &'static [u8] =
            b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
        let victim = "victim@hosted.example";
        for _ in 0..3 {
            let (_, eom) = send(addr, "", victim, gtube).await;
            assert!(eom.contains("550"), "the forged spam is refused: {eom}");
        }
        let (mail, eom) = send(addr, victim, victim, b"Lunch at noon?\r\n").await;
        assert!(!mail.contains("550"), "the victim is not blocked: {mail}");
        assert!(!eom.contains("550"), "{eom}");
        stop.cancel();
        daemon.await.unwrap().unwrap();
    }

    /// A TCP listener serves only the peers in `[milter] allow_from`: a
    /// forged milter client from elsewhere is disconnected before it can
    /// claim any login.
    #[tokio::test]
    async fn a_peer_outside_allow_from_is_disconnected() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, daemon) = running(dir.path(), |c| {
            c.milter.allow_from = vec![crate::config::parse_net("127.0.0.2").unwrap()];
        })
        .await;
        let from = |ip: &str| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(addr)
        };
        let mut refused = MilterClient::new(from("127.0.0.1").await.unwrap());
        assert!(
            refused.negotiate(6, 0x1FF, 0x1FFFFF).await.is_err(),
            "127.0.0.1 is not allowed"
        );
        let mut allowed = MilterClient::new(from("127.0.0.2").await.unwrap());
        allowed.negotiate(6, 0x1FF, 0x1FFFFF).await.unwrap();
        assert!(crate::telemetry::REFUSED_PEERS.get() >= 1);
        drop(allowed);
        stop.cancel();
        daemon.await.unwrap().unwrap();
    }
}
