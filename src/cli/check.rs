//! `outscore check`: the configuration file and everything it names
//! (`scores/`, tiers, accounts directory, e-mail template), compiled by the
//! same code as start-up and SIGHUP; every error of every stage in one run.

use std::path::Path;
use std::process::ExitCode;

use crate::classifier::MODEL_FILE;
use crate::ruleset::RuleSet;

use super::{config_failure, load_config, train::print_model_stats};

pub fn run(config: Option<&Path>) -> ExitCode {
    let config = match load_config(config, &[], None) {
        Ok(c) => c,
        Err(errors) => return config_failure(&errors),
    };
    match RuleSet::compile(&config) {
        Ok(rules) => {
            print_model_stats(&config.data_dir.join(MODEL_FILE));
            println!(
                "configuration OK ({}); {}",
                config
                    .source
                    .as_deref()
                    .map_or("built-in defaults".into(), |p| p.display().to_string()),
                rules.sources
            );
            ExitCode::SUCCESS
        }
        Err(errors) => config_failure(&errors),
    }
}
