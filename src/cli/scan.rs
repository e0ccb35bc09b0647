//! `outscore scan`: score a corpus offline with the daemon's rules and compare with a baseline.

use std::path::PathBuf;
use std::process::ExitCode;

use super::*;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// `.eml` files, mbox files, directories (recursive, maildir cur/ and
    /// new/) or manifests (`*.tsv`: path<TAB>label[<TAB>envelope columns]).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Configuration file whose `scores_dir` the daemon uses.
    #[arg(long, short, env = "OUTSCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rule and weight directory (overrides the configuration's); the
    /// built-in rules when neither names one.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Per-message output: jsonl (one object per line), table, or summary
    /// (no per-message lines).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ScanFormat,
    /// Compare with a saved run; exit 1 on a regression. Messages new since
    /// the baseline are listed; a message of the baseline missing from this
    /// run is a regression, unless --allow-subset.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// This run scans part of the baseline's corpus: missing messages are
    /// listed but are no regression, and the rates are compared with the
    /// baseline's over the messages scanned.
    #[arg(long, requires = "baseline")]
    pub allow_subset: bool,
    /// Save this run as a baseline.
    #[arg(long)]
    pub write_baseline: Option<PathBuf>,
    /// Percentage points the detection rate may drop, and the false-positive
    /// rate rise, before a baseline comparison fails.
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Worker threads; all cores by default.
    #[arg(long)]
    pub threads: Option<usize>,
    /// When stderr is not a terminal (CI), how often a progress line
    /// (done/total, msg/s, ETA) is written; a terminal gets a live bar.
    #[arg(long, default_value = "5s", value_parser = progress_interval)]
    pub progress_interval: std::time::Duration,
    /// Write no progress to stderr.
    #[arg(long)]
    pub no_progress: bool,
}

fn progress_interval(text: &str) -> Result<std::time::Duration, String> {
    match crate::config::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be above zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScanFormat {
    Jsonl,
    Table,
    Summary,
}

/// Exit code of `outscore scan` when a run regresses against its baseline.
pub const EXIT_REGRESSION: u8 = 1;
/// Exit code of `outscore scan` for unusable inputs (clap uses 2 for usage).
pub const EXIT_INPUT: u8 = 2;

pub fn scan(args: ScanArgs) -> ExitCode {
    use crate::scan::progress::{Progress, Style};
    use crate::scan::{self, output, Baseline, Scanner, Summary};
    use std::io::{IsTerminal, Write};

    // The daemon's rules, tier table and classifier model.
    let loaded = load_config(args.config.as_deref(), &[], None).and_then(|mut config| {
        if let Some(dir) = &args.scores {
            config.scoring.scores_dir = Some(dir.clone());
        }
        let rules = crate::ruleset::RuleSet::compile(&config)?;
        Ok((config, rules.engine, rules.policy.tiers.clone()))
    });
    let (config, engine, tiers) = match loaded {
        Ok(l) => l,
        Err(errors) => return config_failure(&errors),
    };
    let model = match crate::classifier::load_model(&config.data_dir) {
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
        .with_classifier(crate::classifier::Classifier::new(model))
        .with_tiers(tiers);
    let style = if args.no_progress {
        Style::Off
    } else if std::io::stderr().is_terminal() {
        Style::Bar
    } else {
        Style::Lines(args.progress_interval)
    };
    let mut progress = Progress::new(std::io::stderr(), style, items.len());
    let started = std::time::Instant::now();
    let outcomes = scan::score_all(&scanner, &items, threads, |done, _| progress.update(done));
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
        let comparison =
            scan::baseline::compare(baseline, &current, args.tolerance, args.allow_subset);
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
