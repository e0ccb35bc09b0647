//! `outscore train`: a content classifier model from labelled mail, and the one-line model summary `check` prints too.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::classifier::MODEL_FILE;
use crate::config::Config;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Configuration file (for the data directory).
    #[arg(long, short, env = "OUTSCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Spam: .eml files, directories, mbox files. Repeatable.
    #[arg(long, num_args = 1..)]
    pub spam: Vec<PathBuf>,
    /// Ham: .eml files, directories, mbox files. Repeatable.
    #[arg(long, num_args = 1..)]
    pub ham: Vec<PathBuf>,
    /// Labelled manifest: `path<TAB>spam|ham[<TAB>…]` per line. Repeatable.
    #[arg(long)]
    pub manifest: Vec<PathBuf>,
    /// Model file to write; default `<data_dir>/model.bin`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Add to the existing model at the output path instead of starting empty.
    #[arg(long)]
    pub update: bool,
    /// Table size as a power of two (memory: 9 bytes per bucket).
    #[arg(long, default_value_t = crate::classifier::model::DEFAULT_BITS)]
    pub bits: u8,
    /// Words only, no word pairs (smaller, less accurate).
    #[arg(long)]
    pub no_bigrams: bool,
}

pub fn train(config: &Config, args: TrainArgs) -> anyhow::Result<()> {
    use crate::classifier::{input, Classifier, Model};
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
pub fn print_model_stats(path: &Path) {
    use crate::classifier::{Model, MIN_LEARNED};
    if !path.exists() {
        let st = crate::classifier::builtin_model().stats();
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
