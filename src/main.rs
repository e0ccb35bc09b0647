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
    /// Train the content classifier (BAYES_SPAM / BAYES_HAM) from labelled
    /// mail: .eml files, directories (recursive), mbox files, manifests.
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Configuration file (for the data directory).
    #[arg(long, short, env = "OUTSCORE_CONFIG")]
    config: Option<PathBuf>,
    /// Spam: .eml files, directories, mbox files. Repeatable.
    #[arg(long, num_args = 1..)]
    spam: Vec<PathBuf>,
    /// Ham: .eml files, directories, mbox files. Repeatable.
    #[arg(long, num_args = 1..)]
    ham: Vec<PathBuf>,
    /// Labelled manifest: `path<TAB>spam|ham[<TAB>…]` per line. Repeatable.
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// Model file to write; default `<data_dir>/model.bin`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Add to the existing model at the output path instead of starting empty.
    #[arg(long)]
    update: bool,
    /// Table size as a power of two (memory: 9 bytes per bucket).
    #[arg(long, default_value_t = outscore::classifier::model::DEFAULT_BITS)]
    bits: u8,
    /// Words only, no word pairs (smaller, less accurate).
    #[arg(long)]
    no_bigrams: bool,
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
                    print_model_stats(&c.data_dir.join(MODEL_FILE));
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
        Cmd::Train(args) => {
            let config = match load_config(args.config.as_deref(), &[], None) {
                Ok(c) => c,
                Err(errors) => return config_failure(&errors),
            };
            match train(&config, args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("outscore train: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The classifier model's file name inside the data directory.
const MODEL_FILE: &str = "model.bin";

fn train(config: &Config, args: TrainArgs) -> anyhow::Result<()> {
    use outscore::classifier::{input, Classifier, Model};
    let out = args.out.unwrap_or_else(|| config.data_dir.join(MODEL_FILE));
    let model = if args.update && out.exists() {
        Model::load(&out)?
    } else {
        Model::new(args.bits, !args.no_bigrams)
    };
    let mut classifier = Classifier::new(model);
    let mut labelled: Vec<(PathBuf, bool)> = Vec::new();
    for (paths, is_spam) in [(&args.spam, true), (&args.ham, false)] {
        for f in input::files(paths)? {
            labelled.push((f, is_spam));
        }
    }
    for m in &args.manifest {
        for row in input::manifest(m)? {
            labelled.push((row.path, row.is_spam));
        }
    }
    if labelled.is_empty() {
        anyhow::bail!("nothing to learn: give --spam, --ham or --manifest");
    }
    let (mut spam, mut ham, mut skipped) = (0u64, 0u64, 0u64);
    for (path, is_spam) in &labelled {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        for raw in input::split_messages(&data) {
            if classifier.add(raw, *is_spam) {
                if *is_spam {
                    spam += 1;
                } else {
                    ham += 1;
                }
            } else {
                skipped += 1;
            }
        }
    }
    classifier.finish();
    let mut model = classifier.into_model();
    // Reproducible builds (scripts/train-default-model) pin the timestamp.
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        model.set_trained_at(t);
    }
    model.save(&out)?;
    println!(
        "learned {spam} spam and {ham} ham ({skipped} unparsable skipped); wrote {}",
        out.display()
    );
    print_model_stats(&out);
    Ok(())
}

/// One line about the classifier model, or a note that there is none.
fn print_model_stats(path: &Path) {
    use outscore::classifier::{Model, MIN_LEARNED};
    if !path.exists() {
        let st = outscore::classifier::builtin_model().stats();
        println!(
            "model: none at {}; the built-in default model is used ({} spam, {} ham, {} tokens)",
            path.display(),
            st.spam_messages,
            st.ham_messages,
            st.buckets_used
        );
        return;
    }
    match Model::load(path) {
        Ok(m) => {
            let st = m.stats();
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let age_h = (chrono::Utc::now().timestamp() - st.trained_at).max(0) as f64 / 3600.0;
            let ready = st.spam_messages >= MIN_LEARNED && st.ham_messages >= MIN_LEARNED;
            println!(
                "model: {} ({size} bytes, trained {age_h:.1} h ago): {} spam, {} ham, {} tokens in 2^{} buckets{}{}",
                path.display(),
                st.spam_messages,
                st.ham_messages,
                st.buckets_used,
                st.bits,
                if st.bigrams { ", word pairs" } else { "" },
                if ready { "" } else { "; too few messages learned, symbols will not fire" }
            );
        }
        Err(e) => println!("model: {}: {e}", path.display()),
    }
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
