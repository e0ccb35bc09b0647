//! The `outscore` command line: the edge where configuration is read, concrete
//! implementations are picked and errors become exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use outscore::config::{Config, ConfigErrors, FailSafe};
use outscore::milter::{self, ListenAddr, SessionOptions};
use outscore::pipeline::{Pipeline, PipelineOptions};
use outscore::scoring::Engine;
use outscore::server::{Listener, Server};
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
    /// Score a corpus offline with the daemon's rules and summarise accuracy.
    ///
    /// Exit codes: 0 done (no regression), 1 regression against --baseline,
    /// 2 usage or input error (unreadable file, bad manifest or baseline),
    /// 64 invalid scores/ directory.
    Scan(ScanArgs),
}

#[derive(clap::Args)]
struct ScanArgs {
    /// `.eml` files, mbox files, directories (recursive, maildir cur/ and
    /// new/) or manifests (`*.tsv`: path<TAB>label[<TAB>envelope columns]).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Configuration file whose `scores_dir` the daemon uses.
    #[arg(long, short, env = "OUTSCORE_CONFIG")]
    config: Option<PathBuf>,
    /// Rule and weight directory (overrides the configuration's); the
    /// built-in rules when neither names one.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Per-message output: jsonl (one object per line), table, or summary
    /// (no per-message lines).
    #[arg(long, value_enum, default_value = "table")]
    format: ScanFormat,
    /// Compare with a saved run; exit 1 on a regression.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Save this run as a baseline.
    #[arg(long)]
    write_baseline: Option<PathBuf>,
    /// Percentage points the detection rate may drop, and the false-positive
    /// rate rise, before a baseline comparison fails.
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Worker threads; all cores by default.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScanFormat {
    Jsonl,
    Table,
    Summary,
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
        Cmd::Scan(args) => scan(args),
    }
}

/// Exit code of `outscore scan` when a run regresses against its baseline.
const EXIT_REGRESSION: u8 = 1;
/// Exit code of `outscore scan` for unusable inputs (clap uses 2 for usage).
const EXIT_INPUT: u8 = 2;

fn scan(args: ScanArgs) -> ExitCode {
    use outscore::scan::{self, output, Baseline, Scanner, Summary};
    use std::io::{IsTerminal, Write};

    let engine = load_config(args.config.as_deref(), &[], None).and_then(|mut config| {
        if let Some(dir) = &args.scores {
            config.scoring.scores_dir = Some(dir.clone());
        }
        load_engine(&config)
    });
    let engine = match engine {
        Ok(e) => e,
        Err(errors) => return config_failure(&errors),
    };
    let input_error = |e: &dyn std::fmt::Display| {
        eprintln!("outscore scan: {e}");
        ExitCode::from(EXIT_INPUT)
    };
    if args.tolerance.is_nan() || args.tolerance < 0.0 {
        return input_error(&"--tolerance must be a non-negative number of percentage points");
    }
    let baseline = match args.baseline.as_deref().map(Baseline::load).transpose() {
        Ok(b) => b,
        Err(e) => return input_error(&e),
    };
    let items = match scan::collect(&args.inputs) {
        Ok(items) => items,
        Err(e) => return input_error(&e),
    };
    if items.is_empty() {
        return input_error(&"no messages found in the inputs");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let scanner = Scanner::new(engine);
    let show_progress = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let outcomes = scan::score_all(&scanner, &items, threads, |done, total| {
        if show_progress {
            eprint!("\rscanning {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    });
    let summary = Summary::new(&outcomes, started.elapsed(), threads);
    let current = Baseline::new(&outcomes, &summary, scanner.reject_score());

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let printed: std::io::Result<()> = (|| match args.format {
        ScanFormat::Jsonl => {
            for o in &outcomes {
                output::jsonl_line(&mut out, o)?;
            }
            out.flush()?;
            output::summary(&mut err, &summary, scanner.reject_score())
        }
        ScanFormat::Table => {
            output::table_header(&mut out)?;
            for o in &outcomes {
                output::table_line(&mut out, o)?;
            }
            output::summary(&mut out, &summary, scanner.reject_score())
        }
        ScanFormat::Summary => output::summary(&mut out, &summary, scanner.reject_score()),
    })();
    if let Err(e) = printed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return input_error(&e);
        }
    }
    for o in outcomes.iter().filter(|o| o.error.is_some()) {
        eprintln!(
            "outscore scan: {}: {}",
            o.path,
            o.error.as_deref().unwrap_or("")
        );
    }
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
        if let Err(e) = std::fs::write(path, text + "\n") {
            return input_error(&format!("{}: {e}", path.display()));
        }
    }
    let mut code = if summary.errors > 0 {
        ExitCode::from(EXIT_INPUT)
    } else {
        ExitCode::SUCCESS
    };
    if let Some(baseline) = &baseline {
        let comparison = scan::baseline::compare(baseline, &current, args.tolerance);
        let written = match args.format {
            ScanFormat::Jsonl => output::comparison(&mut err, &comparison),
            _ => output::comparison(&mut out, &comparison),
        };
        let _ = written.and_then(|()| out.flush());
        if comparison.is_regression() && summary.errors == 0 {
            code = ExitCode::from(EXIT_REGRESSION);
        }
    }
    let _ = out.flush();
    if let Some(path) = &args.write_baseline {
        if let Err(e) = current.save(path) {
            return input_error(&e);
        }
        eprintln!("outscore scan: baseline written to {}", path.display());
    }
    code
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
    let pipeline = Arc::new(Pipeline::new(
        engine,
        PipelineOptions {
            add_headers: config.milter.add_headers,
            header_prefix: config.milter.header_prefix.clone(),
        },
    ));
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone(), pipeline.clone(), config.clone())?;
    info!(version = env!("CARGO_PKG_VERSION"), data_dir = %config.data_dir.display(), "outscore started");
    let server = Server::new(
        listeners,
        pipeline,
        session_options(&config),
        config.milter.max_connections,
        config.milter.shutdown_grace,
    );
    server.run(shutdown).await;
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
