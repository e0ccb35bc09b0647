//! `outscore check`: the configuration file and everything it names
//! (`scores/`, tiers, accounts directory, identities file, e-mail template),
//! compiled by the same code as start-up and SIGHUP; every error of every
//! stage in one run. A bad entry of the configuration is reported and left
//! at its default, so the rule files it names are still checked.

use std::path::Path;
use std::process::ExitCode;

use crate::classifier::MODEL_FILE;
use crate::config::Config;
use crate::diag::ConfigErrors;
use crate::ruleset::RuleSet;

use super::{config_failure, train::print_model_stats};

pub fn run(config: Option<&Path>) -> ExitCode {
    let (config, mut errors) = match config {
        Some(path) => match Config::load_all(path) {
            Ok(parsed) if parsed.readable => (parsed.config, parsed.errors),
            Ok(parsed) => {
                eprintln!("outscore: the rule files it names were not checked");
                return config_failure(&ConfigErrors(parsed.errors));
            }
            Err(errors) => return config_failure(&errors),
        },
        None => (Config::default(), Vec::new()),
    };
    match RuleSet::compile(&config) {
        Ok(rules) if errors.is_empty() => {
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
        Ok(_) => config_failure(&ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more.0);
            config_failure(&ConfigErrors(errors))
        }
    }
}
