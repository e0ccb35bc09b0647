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
use outscore::config::{Config, FailSafe};
use outscore::diag::ConfigErrors;
use outscore::http;
use outscore::milter::{self, ListenAddr, SessionOptions};
use outscore::pipeline::{Pipeline, PipelineOptions};
use outscore::policy::Policy;
use outscore::scoring::Engine;
use outscore::server::{Listener, Server};
use outscore::store::{self, ReportStore};

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
    /// Account states: list blocked accounts, show one, unblock, confirm a
    /// password reset, suspend, import the accounts directory.
    Account {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AccountCmd,
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
    Scan(ScanArgs),
    /// Train the content classifier (BAYES_SPAM / BAYES_HAM) from labelled
    /// mail: .eml files, directories (recursive), mbox files, manifests.
    Train(TrainArgs),
    /// Teach the content classifier from stored reports (within retention):
    /// the model in the data dir is updated; the daemon picks it up on SIGHUP.
    Learn(LearnArgs),
    /// Share the classifier model between relays: export the model in force,
    /// import a model file (validated first).
    Model {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ModelCmd,
    },
    /// Credentials of the review interface ([http]).
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UserCmd,
    },
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

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["spam", "ham"])))]
struct LearnArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Learn the reports as spam.
    #[arg(long)]
    spam: bool,
    /// Learn the reports as ham (legitimate mail).
    #[arg(long)]
    ham: bool,
    /// Report ids (as quoted in SMTP replies and on the review pages).
    #[arg(required = true, value_name = "REPORT_ID")]
    ids: Vec<String>,
    /// Why (kept with the verdict and in the audit log).
    #[arg(long)]
    reason: String,
    /// Who decides, for the audit log; default: the login name.
    #[arg(long)]
    by: Option<String>,
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Write the model in force (`<data_dir>/model.bin`, else the built-in
    /// one) to PATH.
    Export { path: PathBuf },
    /// Validate a model file and install it as `<data_dir>/model.bin`
    /// atomically; a damaged file changes nothing.
    Import { path: PathBuf },
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
// Parsed once per run: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
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

#[derive(Subcommand)]
enum AccountCmd {
    /// Blocked accounts, most recently blocked first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One account: state, history counts, unblocks, audit log, directory entry.
    Show {
        login: String,
        #[arg(long)]
        json: bool,
    },
    /// Unblock a suspended account: self-service (the customer, once per 90
    /// days) or by the abuse team with a reason.
    Unblock {
        login: String,
        /// Abuse-team member acting; without it the unblock is self-service.
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The provider confirms the password was changed: lifts a reset block.
    ResetDone {
        login: String,
        /// Who confirms (panel, support member…).
        #[arg(long, default_value = "panel")]
        by: String,
    },
    /// Suspend an account by hand (abuse team).
    Suspend {
        login: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
        /// Record it under a suspension tier (L-SPAM20 to L-SPAM40), e.g.
        /// L-SPAM40 so that only the abuse team can lift it.
        #[arg(long)]
        tier: Option<outscore::policy::Tier>,
    },
    /// Validate an accounts CSV and install it as `[accounts] directory_csv`
    /// (default `<data_dir>/accounts.csv`); the daemon reads it at start.
    Import { file: PathBuf },
}

/// Exit code when the policy refuses an account operation (e.g. the
/// 90-day rule).
const EXIT_REFUSED: u8 = 3;

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
            init_logging(&config.log);
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
            let loaded = load_config(config.as_deref(), &[], None)
                .and_then(|c| load_engine(&c).map(|_| c))
                .and_then(|c| Policy::from_config(&c).map(|_| c));
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
        Cmd::Report { store, command } => {
            run_store_command(&store, |config| report_command(config, command))
        }
        Cmd::Account { store, command } => {
            run_store_command(&store, |config| account_command(config, command))
        }
        Cmd::Purge { store } => run_store_command(&store, purge_command),
        Cmd::Scan(args) => scan(args),
        Cmd::User { store, command } => {
            run_store_command(&store, |config| user_command(config, command))
        }
        Cmd::Learn(args) => {
            let store = StoreArgs {
                config: args.store.config.clone(),
                data_dir: args.store.data_dir.clone(),
            };
            run_store_command(&store, |config| learn_command(config, args))
        }
        Cmd::Model { store, command } => model_command(&store, command),
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

use outscore::classifier::MODEL_FILE;

/// What to tell the operator after the model file changed.
const RELOAD_HINT: &str =
    "a running daemon picks the new model up on SIGHUP (systemctl reload outscore, or kill -HUP its pid)";

async fn learn_command(config: Config, args: LearnArgs) -> anyhow::Result<ExitCode> {
    use outscore::learn::{LearnError, LearnRequest, Learner};
    use outscore::store::Label;
    let db = store::open(&config)
        .await
        .context("cannot open the report store")?;
    let learner = Learner::new(db.clone(), &config.data_dir);
    let verdict = if args.spam { Label::Spam } else { Label::Ham };
    let actor = args.by.clone().unwrap_or_else(|| {
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .map(|u| format!("cli:{u}"))
            .unwrap_or_else(|_| "cli".into())
    });
    let percent = |p: Option<f64>| {
        p.map_or("n/a (model not ready)".into(), |p| {
            format!("{:.1}%", p * 100.0)
        })
    };
    let (mut learned, mut refused, mut failed) = (0u32, 0u32, 0u32);
    let mut last = None;
    for text in &args.ids {
        let id = match parse_report_id(text) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("{text}: not learned: {e}");
                refused += 1;
                continue;
            }
        };
        let request = LearnRequest {
            report_id: id.clone(),
            verdict,
            actor: actor.clone(),
            reason: args.reason.clone(),
        };
        match learner.learn(&request).await {
            Ok(l) => {
                learned += 1;
                println!(
                    "{id}: learned as {verdict}{}; spam probability {} (was {})",
                    l.reversed
                        .map(|r| format!(" (earlier {r} verdict taken back)"))
                        .unwrap_or_default(),
                    percent(l.probability),
                    percent(l.probability_before)
                );
                last = Some(l);
            }
            Err(
                e @ (LearnError::Store(_)
                | LearnError::Model(_)
                | LearnError::Lock { .. }
                | LearnError::Task(_)),
            ) => {
                eprintln!("{id}: not learned: {e}");
                failed += 1;
            }
            Err(e) => {
                eprintln!("{id}: not learned: {e}");
                refused += 1;
            }
        }
    }
    db.close().await;
    if let Some(l) = last {
        println!(
            "model saved to {} ({} spam, {} ham learned); {RELOAD_HINT}",
            l.model_path.display(),
            l.spam_messages,
            l.ham_messages
        );
    }
    println!("{learned} learned, {refused} refused, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else if refused > 0 {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

fn model_command(args: &StoreArgs, command: ModelCmd) -> ExitCode {
    let config = match load_config(args.config.as_deref(), &[], args.data_dir.clone()) {
        Ok(c) => c,
        Err(errors) => return config_failure(&errors),
    };
    let result = match command {
        ModelCmd::Export { path } => outscore::learn::export_model(&config.data_dir, &path)
            .map(|st| {
                println!(
                    "exported the model in force to {} ({} spam, {} ham, {} tokens); import it on another relay with: outscore model import {}",
                    path.display(),
                    st.spam_messages,
                    st.ham_messages,
                    st.buckets_used,
                    path.display()
                )
            })
            .map_err(anyhow::Error::from),
        ModelCmd::Import { path } => outscore::learn::import_model(&config.data_dir, &path)
            .map(|st| {
                println!(
                    "imported {} ({} spam, {} ham, {} tokens) as {}; {RELOAD_HINT}",
                    path.display(),
                    st.spam_messages,
                    st.ham_messages,
                    st.buckets_used,
                    config.data_dir.join(MODEL_FILE).display()
                )
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outscore model: {e:#}");
            ExitCode::FAILURE
        }
    }
}

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

/// Exit code of `outscore scan` when a run regresses against its baseline.
const EXIT_REGRESSION: u8 = 1;
/// Exit code of `outscore scan` for unusable inputs (clap uses 2 for usage).
const EXIT_INPUT: u8 = 2;

fn scan(args: ScanArgs) -> ExitCode {
    use outscore::scan::{self, output, Baseline, Scanner, Summary};
    use std::io::{IsTerminal, Write};

    // The daemon's rules, tier table and classifier model.
    let loaded = load_config(args.config.as_deref(), &[], None).and_then(|mut config| {
        if let Some(dir) = &args.scores {
            config.scoring.scores_dir = Some(dir.clone());
        }
        let engine = load_engine(&config)?;
        let tiers = outscore::policy::TierTable::load_dir(config.scoring.scores_dir.as_deref())?;
        Ok((config, engine, tiers))
    });
    let (config, engine, tiers) = match loaded {
        Ok(l) => l,
        Err(errors) => return config_failure(&errors),
    };
    let model = match outscore::classifier::load_model(&config.data_dir) {
        Ok((model, _)) => model,
        Err(e) => {
            eprintln!("outscore scan: classifier model: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
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
    let scanner = Scanner::new(engine)
        .with_classifier(outscore::classifier::Classifier::new(model))
        .with_tiers(tiers);
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

async fn account_command(config: Config, command: AccountCmd) -> anyhow::Result<ExitCode> {
    use outscore::policy::service::{Enforcer, ServiceError};
    use outscore::policy::{Actor, Directory};
    use outscore::store::{AccountStore, AuditLog};

    if let AccountCmd::Import { file } = &command {
        let dir = Directory::load_csv(file).map_err(|errors| {
            anyhow::anyhow!(
                "{}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let target = config
            .accounts
            .directory_csv
            .clone()
            .unwrap_or_else(|| config.data_dir.join("accounts.csv"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = target.with_extension("csv.tmp");
        std::fs::copy(file, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &target)?;
        println!(
            "imported {} account(s) into {}",
            dir.len(),
            target.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let policy = Policy::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = store::open(&config)
        .await
        .context("cannot open the store")?;
    let notifier = outscore::notify::Notifier::new(
        config.notify.clone(),
        config.accounts.self_service_every_days,
    )
    .context("cannot read the e-mail template")?;
    let enforcer = Enforcer::new(
        Arc::new(policy),
        db.clone(),
        db.clone(),
        outscore::notify::EventQueue::new(Arc::new(db.clone()), Arc::new(notifier)),
    );
    let now = chrono::Utc::now();
    let done = |result: Result<outscore::policy::Transition, ServiceError>| match result {
        Ok(t) => {
            println!("{}: {} -> {}", t.account, t.from.name(), t.to.name());
            Ok(ExitCode::SUCCESS)
        }
        Err(ServiceError::Refused(e)) => {
            eprintln!("outscore: refused: {e}");
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(e) => Err(anyhow::Error::new(e)),
    };
    let code = match command {
        AccountCmd::List { limit, json } => {
            let blocked = db.blocked_accounts(limit).await?;
            for a in &blocked {
                if json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    println!(
                        "{:<40} {:<24} {:<9} since {}  report {}  {}",
                        a.account,
                        a.status.as_str(),
                        a.tier.as_deref().unwrap_or("-"),
                        a.since.format("%Y-%m-%d %H:%M:%S"),
                        a.report_id.as_deref().unwrap_or("-"),
                        a.reason.as_deref().unwrap_or("")
                    );
                }
            }
            if !json {
                println!("{} blocked account(s)", blocked.len());
            }
            ExitCode::SUCCESS
        }
        AccountCmd::Show { login, json } => {
            let login = login.trim().to_ascii_lowercase();
            let facts = enforcer.facts(&login, now).await?;
            let audit = db.audit_entries(Some(&login), 50).await?;
            let unblocks = db.unblock_history(&login).await?;
            let entry = enforcer.policy.directory.get(&login);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"facts": facts, "directory": entry,
                        "unblocks": unblocks, "audit": audit})
                );
            } else {
                println!("account:   {login}");
                println!("status:    {}", facts.status.name());
                if let Some(since) = facts.status.since() {
                    println!("since:     {since}");
                }
                if let Some(tier) = facts.status.tier() {
                    println!("tier:      {tier}");
                }
                if let Some(id) = facts.status.report_id() {
                    println!("report:    {id}");
                }
                println!("contact:   {}", entry.contact.as_deref().unwrap_or("-"));
                println!(
                    "history:   spam last hour {}, last day {}; offences since reset {}; limit hits 24h {}; suspensions 90d {}; resets 90d {}",
                    facts.history.spam_last_hour,
                    facts.history.spam_last_day,
                    facts.history.offences_since_reset,
                    facts.history.limit_hits_last_day,
                    facts.history.suspensions_90d,
                    facts.history.resets_90d
                );
                if let Some(until) = facts.prison_until.filter(|u| *u > now) {
                    println!("prison:    until {until}");
                }
                println!(
                    "daily budget: {} external recipients",
                    enforcer.policy.daily_budget(&facts)
                );
                for u in &unblocks {
                    println!(
                        "unblocked: {} by {}{} {}",
                        u.at,
                        u.by,
                        if u.self_service {
                            " (self-service)"
                        } else {
                            ""
                        },
                        u.reason.as_deref().unwrap_or("")
                    );
                }
                for r in audit.iter().rev() {
                    println!(
                        "audit:     {} {} {} {}",
                        r.entry.at.format("%Y-%m-%d %H:%M:%S"),
                        r.entry.actor,
                        r.entry.action,
                        r.entry.detail
                    );
                }
            }
            ExitCode::SUCCESS
        }
        AccountCmd::Unblock { login, by, reason } => {
            let login = login.trim().to_ascii_lowercase();
            let actor = match by {
                Some(name) => Actor::Abuse(name),
                None => Actor::Customer(login.clone()),
            };
            done(
                enforcer
                    .unblock(&login, &actor, reason.as_deref(), now)
                    .await,
            )?
        }
        AccountCmd::ResetDone { login, by } => {
            let login = login.trim().to_ascii_lowercase();
            done(
                enforcer
                    .reset_done(&login, &Actor::Customer(by), None, now)
                    .await,
            )?
        }
        AccountCmd::Suspend {
            login,
            by,
            reason,
            tier,
        } => {
            let login = login.trim().to_ascii_lowercase();
            done(
                enforcer
                    .suspend(&login, &Actor::Abuse(by), &reason, tier, now)
                    .await,
            )?
        }
        AccountCmd::Import { .. } => unreachable!("handled above"),
    };
    db.close().await;
    Ok(code)
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
                Err(e) => errors.push(outscore::diag::ConfigError {
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
    let policy = Policy::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The accounts directory's per-login sensitivity moves the engine's
    // threshold; a rules reload keeps it.
    let account_levels = policy.directory.sensitivities();
    let engine = engine.with_account_sensitivity(account_levels.clone());
    let notifier = Arc::new(
        outscore::notify::Notifier::new(
            config.notify.clone(),
            config.accounts.self_service_every_days,
        )
        .context("cannot read the e-mail template")?,
    );
    let outbox = Arc::new(store.clone());
    let enforcer = Arc::new(outscore::policy::service::Enforcer::new(
        Arc::new(policy),
        store.clone(),
        store.clone(),
        outscore::notify::EventQueue::new(outbox.clone(), notifier.clone()),
    ));
    let notify_stop = CancellationToken::new();
    let notify_worker = tokio::spawn(outscore::notify::run_worker(
        outbox,
        notifier,
        enforcer.events.wake.clone(),
        outscore::notify::WorkerOptions::default(),
        notify_stop.clone(),
    ));
    let (model, source) = outscore::classifier::load_model(&config.data_dir)
        .context("cannot load the classifier model")?;
    info!(model = ?source, "classifier model loaded");
    let classifier = outscore::classifier::Classifier::new(model);
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
        .with_reports(reports)
        .with_enforcer(enforcer.clone())
        .with_classifier(classifier),
    );
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(
        shutdown.clone(),
        pipeline.clone(),
        config.clone(),
        account_levels,
    )?;
    let http = if config.http.enabled {
        // The pipeline's own enforcer: an abuse-team action is seen by the
        // very next MAIL FROM (one facts cache) and notifies like any other.
        let mut state = http::AppState::new(store.clone(), enforcer);
        state.learner = Some(Arc::new(
            outscore::learn::Learner::new(store.clone(), &config.data_dir)
                .with_pipeline(pipeline.clone()),
        ));
        state.session_ttl = config.http.session_ttl;
        state.throttle = Arc::new(http::throttle::LoginThrottle::new(
            http::throttle::LoginLimits::from_config(&config.http),
        ));
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
    notify_stop.cancel();
    let _ = notify_worker.await;
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
    account_levels: std::collections::HashMap<String, outscore::policy::Sensitivity>,
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
                        Ok(engine) => {
                            pipeline.replace_engine(engine.with_account_sensitivity(account_levels.clone()));
                            info!("SIGHUP: rules reloaded");
                        }
                        Err(errors) => warn!(errors = %errors, "SIGHUP: reload failed; keeping the rules in force"),
                    }
                    match outscore::classifier::load_model(&config.data_dir) {
                        Ok((model, source)) => {
                            pipeline.replace_classifier(outscore::classifier::Classifier::new(model));
                            info!(model = ?source, "SIGHUP: classifier model reloaded");
                        }
                        Err(e) => warn!(error = %e, "SIGHUP: model reload failed; keeping the model in force"),
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

/// Install the global tracing subscriber. `RUST_LOG` overrides the level.
fn init_logging(config: &outscore::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        outscore::config::LogFormat::Human => builder.try_init(),
        outscore::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
