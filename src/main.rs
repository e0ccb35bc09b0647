//! The `outscore` command line: the edge where configuration is read, concrete
//! implementations are picked and errors become exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use outscore::auth::identity::IdentityChecker;
use outscore::config::{Config, ConfigErrors, FailSafe};
use outscore::http;
use outscore::milter::{self, ListenAddr, SessionOptions};
use outscore::pipeline::{Pipeline, PipelineOptions};
use outscore::scoring::Engine;
use outscore::server::{Listener, Server};
use outscore::store::{self, ReportStore};
use outscore::telemetry;

/// Exit code for configuration errors (EX_USAGE... EX_DATAERR family: 64).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "outscore",
    version,
    about = "Outbound spam-scoring milter for Postfix"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the milter daemon.
    Serve {
        /// Configuration file (every key optional).
        #[arg(long, short, env = "OUTSCORE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address in Postfix syntax; repeatable; replaces [milter] listen.
        #[arg(long)]
        listen: Vec<String>,
        /// Data directory (database, spool, model).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate the configuration and the rule files; exit 64 listing every error.
    Check {
        #[arg(long, short, env = "OUTSCORE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Stored score reports (kept for the retention, 72 hours by default).
    Report {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ReportCmd,
    },
    /// Delete expired reports, content and audit entries now.
    Purge {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Credentials of the review interface ([http]).
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UserCmd,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user (or replace its secret) and print the secret once.
    Add {
        name: String,
        /// `abuse` (everything) or `viewer` (reports without content, no actions).
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Remove a user.
    Remove { name: String },
    /// List users and roles.
    List,
}

/// Where the store is: the configuration file, or a data dir override.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long, short, env = "OUTSCORE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration's).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// List reports, newest first.
    List {
        /// Account (SASL login, else envelope sender).
        #[arg(long)]
        account: Option<String>,
        /// Start: RFC 3339 time, or a duration ago (`24h`).
        #[arg(long)]
        since: Option<String>,
        /// End (exclusive): RFC 3339 time, or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// `accept`, `reject`, `tempfail`…
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        min_score: Option<f64>,
        #[arg(long)]
        max_score: Option<f64>,
        #[arg(long)]
        queue_id: Option<String>,
        #[arg(long)]
        message_id: Option<String>,
        /// Envelope recipient.
        #[arg(long)]
        rcpt: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one report: envelope, headers, score, tier, action, symbols.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write the raw message of a report (within retention).
    Export {
        id: String,
        /// Output file; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve {
            config,
            listen,
            data_dir,
        } => {
            let config = match load_config(config.as_deref(), &listen, data_dir) {
                Ok(c) => c,
                Err(errors) => return config_failure(&errors),
            };
            let engine = match load_engine(&config) {
                Ok(e) => e,
                Err(errors) => return config_failure(&errors),
            };
            telemetry::init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build();
            let result = runtime
                .context("cannot start the async runtime")
                .and_then(|rt| rt.block_on(serve(config, engine)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    eprintln!("outscore: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check { config } => {
            let loaded =
                load_config(config.as_deref(), &[], None).and_then(|c| load_engine(&c).map(|_| c));
            match loaded {
                Ok(c) => {
                    println!(
                        "configuration OK ({}); scores: {}",
                        c.source
                            .as_deref()
                            .map_or("built-in defaults".into(), |p| p.display().to_string()),
                        c.scoring
                            .scores_dir
                            .as_deref()
                            .map_or("built-in".into(), |p| p.display().to_string())
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => config_failure(&errors),
            }
        }
        Cmd::Report { store, command } => {
            run_store_command(&store, |config| report_command(config, command))
        }
        Cmd::Purge { store } => run_store_command(&store, purge_command),
        Cmd::User { store, command } => {
            run_store_command(&store, |config| user_command(config, command))
        }
    }
}

/// Load the configuration and run a store command on a small runtime.
fn run_store_command<F, Fut>(args: &StoreArgs, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let config = match load_config(args.config.as_deref(), &[], args.data_dir.clone()) {
        Ok(c) => c,
        Err(errors) => return config_failure(&errors),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(config)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outscore: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `24h` (that long ago) or an RFC 3339 time.
fn parse_when(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = outscore::config::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("{text:?} is neither an RFC 3339 time nor a duration: {e}"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(ago)?)
}

fn parse_report_id(text: &str) -> anyhow::Result<store::ReportId> {
    Ok(text.trim().parse()?)
}

async fn report_command(config: Config, command: ReportCmd) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let code = match command {
        ReportCmd::List {
            account,
            since,
            until,
            tier,
            action,
            min_score,
            max_score,
            queue_id,
            message_id,
            rcpt,
            limit,
            after,
            json,
        } => {
            let filter = store::ReportFilter {
                account,
                since: since.as_deref().map(parse_when).transpose()?,
                until: until.as_deref().map(parse_when).transpose()?,
                tier,
                action,
                min_score,
                max_score,
                queue_id,
                message_id,
                recipient: rcpt,
            };
            let after: Option<store::Cursor> = after
                .as_deref()
                .map(str::parse)
                .transpose()
                .context("bad --after cursor")?;
            let page = db.list_reports(&filter, limit, after.as_ref()).await?;
            print_report_list(&page, json)?;
            ExitCode::SUCCESS
        }
        ReportCmd::Show { id, json } => {
            let id = parse_report_id(&id)?;
            match db.report(&id).await? {
                Some(record) if json => {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                    ExitCode::SUCCESS
                }
                Some(record) => {
                    print_report(&record);
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "outscore: report {id} not found (or older than the {}-hour retention)",
                        config.store.retention.as_secs() / 3600
                    );
                    ExitCode::FAILURE
                }
            }
        }
        ReportCmd::Export { id, output } => {
            let id = parse_report_id(&id)?;
            match db.content(&id).await? {
                store::Content::Found(bytes) => {
                    match output {
                        Some(path) => std::fs::write(&path, &bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?,
                        None => {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            out.write_all(&bytes)?;
                            out.flush()?;
                        }
                    }
                    ExitCode::SUCCESS
                }
                store::Content::Expired => {
                    eprintln!(
                        "outscore: the content of report {id} has expired (retention {} hours)",
                        config.store.retention.as_secs() / 3600
                    );
                    ExitCode::FAILURE
                }
                store::Content::NotFound => {
                    eprintln!("outscore: report {id} not found");
                    ExitCode::FAILURE
                }
            }
        }
    };
    db.close().await;
    Ok(code)
}

fn print_report_list(page: &store::ReportPage, json: bool) -> anyhow::Result<()> {
    if json {
        for r in &page.reports {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "{:<16}  {:<20}  {:<28}  {:>7}  {:<9}  {:<8}  SUBJECT",
            "ID", "TIME (UTC)", "ACCOUNT", "SCORE", "TIER", "ACTION"
        );
        for r in &page.reports {
            println!(
                "{:<16}  {:<20}  {:<28}  {:>7.2}  {:<9}  {:<8}  {}",
                r.id,
                r.created_at.format("%Y-%m-%d %H:%M:%S"),
                r.account.as_deref().unwrap_or("-"),
                r.score,
                r.tier.as_deref().unwrap_or("-"),
                r.action,
                r.subject.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(next) = &page.next {
        eprintln!("more: --after {next}");
    }
    Ok(())
}

fn print_report(r: &store::ReportRecord) {
    let env = &r.envelope;
    let msg = &r.report.message;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("report      {}", r.id);
    println!("time        {}", r.created_at.to_rfc3339());
    println!("account     {}", opt(&r.account));
    println!("score       {:.2}", r.report.score);
    println!("tier        {}", opt(&r.tier));
    println!("action      {}", r.action);
    println!(
        "client      {} [{}]",
        env.client.hostname,
        env.client
            .addr
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    );
    println!("login       {}", opt(&env.auth_login));
    println!("mail from   <{}>", env.mail_from);
    println!("rcpt to     {}", env.rcpts.join(", "));
    println!("queue id    {}", opt(&env.queue_id));
    println!("From        {}", opt(&msg.from));
    println!("To          {}", msg.to.join(", "));
    println!("Subject     {}", opt(&msg.subject));
    println!("Message-ID  {}", opt(&msg.message_id));
    println!("Date        {}", opt(&msg.date));
    println!("size        {} bytes", r.content_size);
    println!(
        "timings     parse {} us, rules {} us, total {} us",
        r.report.timings.parse_us, r.report.timings.rules_us, r.report.timings.total_us
    );
    println!("symbols:");
    for s in &r.report.symbols {
        println!(
            "  {:<28} {:>7.2}  (weight {:.2} x {:.2}, group {})",
            s.name, s.score, s.weight, s.factor, s.group
        );
        for e in &s.evidence {
            println!("      {e}");
        }
    }
}

async fn purge_command(config: Config) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let done = store::purge_once(&db, db.options()).await?;
    println!(
        "purged {} report(s) in {} batch(es), {} audit/unblock row(s), {} counter row(s)",
        done.reports.reports, done.reports.batches, done.audit_rows, done.counter_rows
    );
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

fn config_failure(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    eprintln!("outscore: {} configuration error(s)", errors.0.len());
    ExitCode::from(EXIT_CONFIG)
}

fn load_config(
    path: Option<&Path>,
    listen: &[String],
    data_dir: Option<PathBuf>,
) -> Result<Config, ConfigErrors> {
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !listen.is_empty() {
        let mut parsed = Vec::new();
        let mut errors = Vec::new();
        for addr in listen {
            match addr.parse::<ListenAddr>() {
                Ok(a) => parsed.push(a),
                Err(e) => errors.push(outscore::config::ConfigError {
                    file: PathBuf::from("--listen"),
                    line: None,
                    message: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        config.milter.listen = parsed;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    Ok(config)
}

fn load_engine(config: &Config) -> Result<Engine, ConfigErrors> {
    match &config.scoring.scores_dir {
        Some(dir) => Engine::load(dir),
        None => Ok(Engine::builtin()),
    }
}

fn session_options(config: &Config) -> SessionOptions {
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

async fn serve(config: Config, engine: Engine) -> anyhow::Result<()> {
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
    let identity =
        IdentityChecker::from_config(&config).context("cannot set up sender identity checks")?;
    let store = store::open_for_daemon(&config)
        .await
        .context("cannot open the report store")?;
    let (reports, writer) =
        store::spawn_writer(store.clone(), &config).context("cannot start the report writer")?;
    let purger = store::spawn_purger(store.clone(), &config);
    let reports_for_http = reports.clone();
    let pipeline = Arc::new(
        Pipeline::new(
            engine,
            PipelineOptions {
                add_headers: config.milter.add_headers,
                header_prefix: config.milter.header_prefix.clone(),
            },
        )
        .with_identity(Arc::new(identity))
        .with_reports(reports),
    );
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone(), pipeline.clone(), config.clone())?;
    let http = if config.http.enabled {
        let mut state = http::AppState::new(store.clone());
        state.session_ttl = config.http.session_ttl;
        state.reports = Some(reports_for_http);
        state.spool_dir = Some(writer.spool().dir().to_path_buf());
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([http] listen)", config.http.listen))?;
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = http::serve_on(state, listener, stop).await {
                error!(error = %e, "review interface stopped");
            }
        }))
    } else {
        None
    };
    info!(version = env!("CARGO_PKG_VERSION"), data_dir = %config.data_dir.display(), "outscore started");
    let server = Server::new(
        listeners,
        pipeline,
        session_options(&config),
        config.milter.max_connections,
        config.milter.shutdown_grace,
    );
    server.run(shutdown).await;
    if let Some(http) = http {
        let _ = http.await;
    }
    // Every report queued by the connections is written (or spooled) first.
    writer.shutdown().await;
    purger.stop().await;
    store.close().await;
    info!("outscore stopped");
    Ok(())
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads the rule files (the
/// configuration file's listen addresses need a restart).
fn spawn_signal_handlers(
    shutdown: CancellationToken,
    pipeline: Arc<Pipeline>,
    config: Config,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => {
                    match load_engine(&config) {
                        Ok(engine) => { pipeline.replace_engine(engine); info!("SIGHUP: rules reloaded"); }
                        Err(errors) => warn!(errors = %errors, "SIGHUP: reload failed; keeping the rules in force"),
                    }
                }
            }
        }
        shutdown.cancel();
    });
    Ok(())
}

async fn user_command(config: Config, command: UserCmd) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the store")?;
    match command {
        UserCmd::Add { name, role } => {
            let role: http::Role = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            if !http::auth::valid_user_name(&name) {
                anyhow::bail!("user name must be 1-64 letters, digits or .-_@, got {name:?}");
            }
            let (record, secret) = http::auth::new_credential(&name, role);
            http::db::put_user(&db, &record).await?;
            println!("user {name} ({role}) saved; this secret is shown only once:");
            println!("  password (login page): {secret}");
            println!("  API token:             Authorization: Bearer {name}:{secret}");
        }
        UserCmd::Remove { name } => {
            if !http::db::delete_user(&db, &name).await? {
                eprintln!("outscore: no user {name:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("user {name} removed (its sessions end at the next restart)");
        }
        UserCmd::List => {
            for (name, role) in http::db::users(&db).await? {
                println!("{name}\t{role}");
            }
        }
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
