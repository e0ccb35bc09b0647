//! `outscore serve`: compile the configuration and the rules (exit 64 on any
//! error, before a socket is bound), then run the daemon until SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::ruleset::RuleSet;

use super::{config_failure, init_logging, load_config};

pub fn run(config: Option<&Path>, listen: &[String], data_dir: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config, listen, data_dir) {
        Ok(c) => c,
        Err(errors) => return config_failure(&errors),
    };
    init_logging(&config.log);
    let rules = match RuleSet::compile(&config) {
        Ok(r) => r,
        Err(errors) => return config_failure(&errors),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let daemon = crate::daemon::build(&config, rules).await?;
                daemon.run(CancellationToken::new(), true).await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("outscore: {e:#}");
            ExitCode::FAILURE
        }
    }
}
