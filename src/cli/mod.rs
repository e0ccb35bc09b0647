//! The `outscore` command line: clap types, one file per command, and the
//! one place where outcomes become exit codes (64 configuration error, 3
//! refused by the policy, 1 failure; `scan` adds 1 regression and 2 input
//! error). The binary's `main` parses and calls [`run`].

pub mod account;
pub mod check;
pub mod learn;
pub mod model;
pub mod purge;
pub mod report;
pub mod scan;
pub mod serve;
pub mod train;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::diag::{ConfigError, ConfigErrors};
use crate::milter::ListenAddr;
use crate::store;

/// Exit code for configuration errors (EX_USAGE... EX_DATAERR family: 64).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "outscore",
    version,
    about = "Outbound spam-scoring milter for Postfix"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        command: report::ReportCmd,
    },
    /// Account states: list blocked accounts, show one, unblock, confirm a
    /// password reset, suspend, import the accounts directory.
    Account {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: account::AccountCmd,
    },
    /// Delete expired reports, content and audit entries now.
    Purge {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Score a corpus offline with the daemon's rules and summarise accuracy.
    ///
    /// Exit codes: 0 done (no regression), 1 regression against --baseline,
    /// 2 usage or input error (unreadable file, bad manifest or baseline),
    /// 64 invalid scores/ directory.
    Scan(scan::ScanArgs),
    /// Train the content classifier (BAYES_SPAM / BAYES_HAM) from labelled
    /// mail: .eml files, directories (recursive), mbox files, manifests.
    Train(train::TrainArgs),
    /// Teach the content classifier from stored reports (within retention):
    /// the model in the data dir is updated; the daemon picks it up on SIGHUP.
    Learn(learn::LearnArgs),
    /// Share the classifier model between relays: export the model in force,
    /// import a model file (validated first).
    Model {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: model::ModelCmd,
    },
    /// Credentials of the review interface ([http]).
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: user::UserCmd,
    },
}

/// Where the store is: the configuration file, or a data dir override.
#[derive(clap::Args)]
pub struct StoreArgs {
    #[arg(long, short, env = "OUTSCORE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration's).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Exit code when the policy refuses an account operation (e.g. the
/// 90-day rule).
pub const EXIT_REFUSED: u8 = 3;

/// Run one command line; the binary's `main` only parses and calls this.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Cmd::Serve {
            config,
            listen,
            data_dir,
        } => serve::run(config.as_deref(), &listen, data_dir),
        Cmd::Check { config } => check::run(config.as_deref()),
        Cmd::Report { store, command } => {
            run_store_command(&store, |config| report::report_command(config, command))
        }
        Cmd::Account { store, command } => {
            run_store_command(&store, |config| account::account_command(config, command))
        }
        Cmd::Purge { store } => run_store_command(&store, purge::purge_command),
        Cmd::Scan(args) => scan::scan(args),
        Cmd::User { store, command } => {
            run_store_command(&store, |config| user::user_command(config, command))
        }
        Cmd::Learn(args) => {
            let store = StoreArgs {
                config: args.store.config.clone(),
                data_dir: args.store.data_dir.clone(),
            };
            run_store_command(&store, |config| learn::learn_command(config, args))
        }
        Cmd::Model { store, command } => model::model_command(&store, command),
        Cmd::Train(args) => {
            let config = match load_config(args.config.as_deref(), &[], None) {
                Ok(c) => c,
                Err(errors) => return config_failure(&errors),
            };
            match train::train(&config, args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("outscore train: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// What to tell the operator after the model file changed.
pub const RELOAD_HINT: &str =
    "a running daemon picks the new model up on SIGHUP (systemctl reload outscore, or kill -HUP its pid)";

/// Load the configuration and run a store command on a small runtime.
pub fn run_store_command<F, Fut>(args: &StoreArgs, run: F) -> ExitCode
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

pub fn parse_report_id(text: &str) -> anyhow::Result<store::ReportId> {
    Ok(text.trim().parse()?)
}

pub fn config_failure(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    eprintln!("outscore: {} configuration error(s)", errors.0.len());
    ExitCode::from(EXIT_CONFIG)
}

pub fn load_config(
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
                Err(e) => errors.push(ConfigError {
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

/// Install the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init_logging(config: &crate::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    // Colours only on a terminal: under systemd the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.format {
        crate::config::LogFormat::Human => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
