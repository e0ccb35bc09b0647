//! `outscore model export|import`: share the classifier model between relays.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::classifier::MODEL_FILE;

use super::*;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Write the model in force (`<data_dir>/model.bin`, else the built-in
    /// one) to PATH.
    Export { path: PathBuf },
    /// Validate a model file and install it as `<data_dir>/model.bin`
    /// atomically; a damaged file changes nothing.
    Import { path: PathBuf },
}

pub fn model_command(args: &StoreArgs, command: ModelCmd) -> ExitCode {
    let config = match load_config(args.config.as_deref(), &[], args.data_dir.clone()) {
        Ok(c) => c,
        Err(errors) => return config_failure(&errors),
    };
    let result = match command {
        ModelCmd::Export { path } => crate::learn::export_model(&config.data_dir, &path)
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
        ModelCmd::Import { path } => crate::learn::import_model(&config.data_dir, &path)
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
