//! Everything an operator edits, compiled in one step: the `scores/` rule
//! and weight files (overlaid on the built-in set), the tier table, the
//! accounts directory and the suspension e-mail template, with the checks
//! that span them (every symbol code or a tier set names is declared, every
//! declared symbol has an emitter). `outscore check`, start-up (before any
//! socket is bound) and SIGHUP all call [`RuleSet::compile`], so they cannot
//! drift; every problem of every stage is reported in one run.
//!
//! The daemon keeps the result behind one [`SharedRules`] that the pipeline
//! (engine) and the enforcer (policy) both read; a reload swaps it whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::accounts::AccountsDirectory;
use crate::config::Config;
use crate::diag::{ConfigError, ConfigErrors};
use crate::notify::Notifier;
use crate::policy::service::PolicySource;
use crate::policy::{Directory, Policy, TierTable};
use crate::scoring::Engine;

/// The compiled rules in force.
pub struct RuleSet {
    /// `scores/`, with the accounts directory's per-login sensitivity.
    pub engine: Engine,
    /// Tiers, limits, the unblock rule and the accounts directory.
    pub policy: Arc<Policy>,
    /// Notification channels and the suspension e-mail template.
    pub notifier: Arc<Notifier>,
    /// What each login may send as: `[identity] accounts_file` plus the
    /// `identities` column of the accounts directory.
    pub identities: Arc<AccountsDirectory>,
    /// Where each part came from, for the start-up and reload log lines.
    pub sources: Sources,
}

/// Where the parts of a [`RuleSet`] were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// `None`: the built-in `scores/`.
    pub scores_dir: Option<PathBuf>,
    pub tiers: PathBuf,
    pub directory: Option<PathBuf>,
    pub template: Option<PathBuf>,
    /// `[identity] accounts_file`.
    pub identities: Option<PathBuf>,
}

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |p: &Option<PathBuf>, none: &str| {
            p.as_deref()
                .map_or(none.to_string(), |p| p.display().to_string())
        };
        write!(
            f,
            "scores: {}; tiers: {}; accounts directory: {}; identities: {}; e-mail template: {}",
            or(&self.scores_dir, "built-in"),
            self.tiers.display(),
            or(&self.directory, "none"),
            or(&self.identities, "none"),
            or(&self.template, "built-in"),
        )
    }
}

/// Symbols emitted by code outside the rules and handed to the engine as
/// external symbols: SPF, DMARC and login identity checks, the classifier.
pub fn external_emitters() -> impl Iterator<Item = &'static str> {
    crate::rules::identity::SYMBOLS
        .iter()
        .copied()
        .chain([crate::classifier::BAYES_SPAM, crate::classifier::BAYES_HAM])
}

impl RuleSet {
    /// Read and validate every file the configuration names, collecting the
    /// problems of all stages before failing.
    pub fn compile(config: &Config) -> Result<RuleSet, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let scores_dir = config.scoring.scores_dir.clone();
        let engine = match &scores_dir {
            Some(dir) => Engine::load(dir),
            None => Ok(Engine::builtin()),
        }
        .map_err(|e| errors.extend(e.0))
        .ok();
        let tiers_path = scores_dir
            .as_deref()
            .map(|d| d.join("tiers.toml"))
            .filter(|p| p.exists());
        // Tiers, limits and the accounts directory, with their errors.
        let directory_path = Policy::directory_path(config);
        let policy = Policy::from_config(config)
            .map_err(|e| errors.extend(e.0))
            .ok();
        let notifier = Notifier::new(
            config.notify.clone(),
            config.accounts.self_service_every_days,
        )
        .map_err(|e| {
            errors.push(ConfigError {
                file: config
                    .notify
                    .email_template
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("[notify] email_template")),
                line: None,
                message: format!("cannot read the e-mail template: {e}"),
            })
        })
        .ok();

        let identities = AccountsDirectory::load(&config.identity)
            .map_err(|e| {
                errors.push(ConfigError {
                    file: config
                        .identity
                        .accounts_file
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("[identity] accounts_file")),
                    line: match &e {
                        crate::auth::accounts::AccountsError::Parse { line, .. } => Some(*line),
                        _ => None,
                    },
                    message: e.to_string(),
                })
            })
            .ok();
        if let Some(engine) = &engine {
            errors.extend(check_external(engine, scores_dir.as_deref()));
            if let Some(policy) = &policy {
                errors.extend(check_tier_sets(
                    engine,
                    &policy.tiers,
                    tiers_path.as_deref(),
                ));
            }
        }
        let notifier = match (notifier, &engine) {
            (Some(n), Some(engine)) => Some(n.with_descriptions(engine.descriptions())),
            (n, _) => n,
        };
        match (engine, policy, notifier, identities) {
            (Some(engine), Some(policy), Some(notifier), Some(mut identities))
                if errors.is_empty() =>
            {
                let engine = engine.with_account_sensitivity(policy.directory.sensitivities());
                for entry in policy.directory.iter() {
                    identities.add_identities(&entry.login, &entry.identities);
                }
                Ok(RuleSet {
                    engine,
                    policy: Arc::new(policy),
                    notifier: Arc::new(notifier),
                    identities: Arc::new(identities),
                    sources: Sources {
                        scores_dir,
                        tiers: tiers_path.unwrap_or_else(|| PathBuf::from("built-in")),
                        directory: directory_path,
                        template: config.notify.email_template.clone(),
                        identities: config.identity.accounts_file.clone(),
                    },
                })
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// A rule set around `engine` with the built-in tiers, default limits,
    /// no accounts directory and no notification channel (tests, `scan`).
    pub fn with_engine(engine: Engine) -> RuleSet {
        let config = Config::default();
        RuleSet {
            engine,
            policy: Arc::new(Policy::new(
                TierTable::builtin(),
                config.limits.clone(),
                &config.accounts,
                Directory::default(),
            )),
            notifier: Arc::new(
                Notifier::new(
                    config.notify.clone(),
                    config.accounts.self_service_every_days,
                )
                .expect("the built-in template needs no file"),
            ),
            identities: Arc::new(AccountsDirectory::from_config(&config.identity)),
            sources: Sources {
                scores_dir: None,
                tiers: PathBuf::from("built-in"),
                directory: None,
                template: None,
                identities: None,
            },
        }
    }
}

/// The rule set in force, shared by the pipeline and the enforcer.
#[derive(Clone)]
pub struct SharedRules(Arc<ArcSwap<RuleSet>>);

impl SharedRules {
    pub fn new(rules: RuleSet) -> SharedRules {
        SharedRules(Arc::new(ArcSwap::from_pointee(rules)))
    }

    /// The rule set in force now.
    pub fn load(&self) -> Arc<RuleSet> {
        self.0.load_full()
    }

    /// Put a new rule set in force (a reload).
    pub fn store(&self, rules: RuleSet) {
        self.0.store(Arc::new(rules));
    }

    /// Swap only the engine (keeping the policy and notifier).
    pub fn replace_engine(&self, engine: Engine) {
        self.0.rcu(|current| {
            Arc::new(RuleSet {
                engine: engine.clone(),
                policy: current.policy.clone(),
                notifier: current.notifier.clone(),
                identities: current.identities.clone(),
                sources: current.sources.clone(),
            })
        });
    }
}

impl PolicySource for SharedRules {
    fn current(&self) -> Arc<Policy> {
        self.0.load().policy.clone()
    }
}

/// External symbols: every one that code emits is declared with `external =
/// true`, and every declared one has an emitter.
fn check_external(engine: &Engine, dir: Option<&Path>) -> Vec<ConfigError> {
    let file = dir.map_or_else(
        || PathBuf::from("scores (built in)/symbols.toml"),
        |d| d.join("symbols.toml"),
    );
    let emitted: Vec<&str> = external_emitters().collect();
    let mut errors = Vec::new();
    for name in &emitted {
        if !engine.knows_external(name) {
            errors.push(ConfigError {
                file: file.clone(),
                line: None,
                message: format!(
                    "symbol {name} is emitted by the identity checks or the classifier but is not declared with external = true"
                ),
            });
        }
    }
    let mut declared: Vec<&str> = engine
        .external_symbols()
        .filter(|s| !emitted.contains(s))
        .collect();
    declared.sort_unstable();
    for name in declared {
        errors.push(ConfigError {
            file: file.clone(),
            line: None,
            message: format!("weight without symbol: nothing emits the external symbol {name}"),
        });
    }
    errors
}

/// Every symbol a `tiers.toml` `[sets]` entry names is declared in `scores/`.
fn check_tier_sets(engine: &Engine, tiers: &TierTable, path: Option<&Path>) -> Vec<ConfigError> {
    let file = path.map_or_else(
        || PathBuf::from("scores (built in)/tiers.toml"),
        Path::to_path_buf,
    );
    tiers
        .set_symbols()
        .filter(|(_, symbol)| !engine.declares(symbol))
        .map(|(set, symbol)| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("[sets] {set}: {symbol} is not a symbol of scores/symbols.toml"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rule_set_compiles() {
        let rules = RuleSet::compile(&Config::default()).unwrap();
        assert!(rules.engine.reject_score() > 0.0);
        assert_eq!(rules.sources.scores_dir, None);
    }

    #[test]
    fn every_stage_reports_in_one_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tiers.toml"),
            "[sets]\nbad = [\"NO_SUCH_SYMBOL\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("groups.toml"), "[x]\nmax_score = -1\n").unwrap();
        let mut config = Config::default();
        config.scoring.scores_dir = Some(dir.path().to_path_buf());
        config.notify.email_template = Some(dir.path().join("missing-template.txt"));
        config.accounts.directory_csv = Some(dir.path().join("missing.csv"));
        let errors = RuleSet::compile(&config).err().expect("invalid").0;
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let has = |file: &str| text.iter().any(|t| t.contains(file));
        assert!(has("groups.toml"), "{text:#?}");
        assert!(has("missing-template.txt"), "{text:#?}");
        assert!(has("missing.csv"), "{text:#?}");
    }

    #[test]
    fn a_duplicate_key_in_symbols_toml_is_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let builtin = crate::scoring::scores::BUILTIN
            .iter()
            .find(|(n, _)| *n == "symbols.toml")
            .unwrap()
            .1;
        let first = builtin.lines().position(|l| l.starts_with('[')).unwrap();
        let lines: Vec<&str> = builtin.lines().collect();
        let end = (first + 1..lines.len())
            .find(|&i| lines[i].starts_with('['))
            .unwrap();
        // The first table once more at the end: TOML refuses the file.
        let text = format!("{builtin}\n{}\n", lines[first..end].join("\n"));
        std::fs::write(dir.path().join("symbols.toml"), text).unwrap();
        let mut config = Config::default();
        config.scoring.scores_dir = Some(dir.path().to_path_buf());
        let errors = RuleSet::compile(&config).err().expect("invalid").0;
        assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
        assert!(errors[0].file.ends_with("symbols.toml"), "{}", errors[0]);
        assert!(errors[0].line.is_some(), "{}", errors[0]);
    }

    #[test]
    fn an_operator_directory_overlays_the_builtin_files() {
        // Only actions.toml is the operator's: the other files, and every
        // symbol a copied symbols.toml lacks, come from the built-in set.
        let dir = tempfile::tempdir().unwrap();
        let builtin = crate::scoring::scores::BUILTIN
            .iter()
            .find(|(n, _)| *n == "actions.toml")
            .unwrap()
            .1;
        std::fs::write(
            dir.path().join("actions.toml"),
            builtin.replace("reject_score = 15.0", "reject_score = 12.0"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("symbols.toml"),
            "[GTUBE]\ngroup = \"test\"\nweight = 1000.0\ndescription = \"GTUBE test string\"\n",
        )
        .unwrap();
        let mut config = Config::default();
        config.scoring.scores_dir = Some(dir.path().to_path_buf());
        let rules = RuleSet::compile(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.engine.reject_score(), 12.0);
        assert!(rules.engine.declares("SPF_FAIL"), "built-in symbol kept");
    }
}
