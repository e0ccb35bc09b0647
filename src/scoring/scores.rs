//! `scores/`: the analyst-readable rule, keyword and weight files, read and
//! validated into the pieces the engine runs, with every problem reported
//! as file:line. The same code validates the files built into the binary,
//! a `scores_dir` at start-up and on SIGHUP, and `outscore check`.
//!
//! | file | holds |
//! |---|---|
//! | `symbols.toml` | one table per symbol: `group`, `weight`, `description`, `external` |
//! | `groups.toml` | one table per group: `description`, optional `max_score` cap |
//! | `actions.toml` | `reject_score`, sensitivity thresholds and per-sender levels |
//! | `regex.toml` | `[[rule]]` entries: `symbol`, `pattern` |
//! | `attachments.toml` | `dangerous`, `decoy`, `archives` extension lists |
//! | `freemail.txt` | free-mail domains, one per line |
//! | `whitelist.txt` | SASL logins (address or domain) whose content rules do not count |
//! | `keywords/<category>.<lang>.txt` | one keyword per line; header names the symbol |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{line_of, ConfigError, ConfigErrors};
use crate::policy::Sensitivity;
use crate::rules::attachments::AttachmentPolicy;
use crate::rules::keywords::{KeywordList, KeywordSet};
use crate::rules::matcher::{RegexRule, RegexRules};
use crate::rules::structure::StructurePolicy;
use crate::rules::CODE_SYMBOLS;

/// The scores files built into the binary, by path relative to `scores/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("symbols.toml", include_str!("../../scores/symbols.toml")),
    ("groups.toml", include_str!("../../scores/groups.toml")),
    ("actions.toml", include_str!("../../scores/actions.toml")),
    ("regex.toml", include_str!("../../scores/regex.toml")),
    (
        "attachments.toml",
        include_str!("../../scores/attachments.toml"),
    ),
    ("freemail.txt", include_str!("../../scores/freemail.txt")),
    ("whitelist.txt", include_str!("../../scores/whitelist.txt")),
    (
        "keywords/adult.en.txt",
        include_str!("../../scores/keywords/adult.en.txt"),
    ),
    (
        "keywords/adult.zh-Hans.txt",
        include_str!("../../scores/keywords/adult.zh-Hans.txt"),
    ),
    (
        "keywords/adult.zh-Hant.txt",
        include_str!("../../scores/keywords/adult.zh-Hant.txt"),
    ),
    (
        "keywords/advance-fee.en.txt",
        include_str!("../../scores/keywords/advance-fee.en.txt"),
    ),
    (
        "keywords/advance-fee.es.txt",
        include_str!("../../scores/keywords/advance-fee.es.txt"),
    ),
    (
        "keywords/advance-fee.fr.txt",
        include_str!("../../scores/keywords/advance-fee.fr.txt"),
    ),
    (
        "keywords/advance-fee.it.txt",
        include_str!("../../scores/keywords/advance-fee.it.txt"),
    ),
    (
        "keywords/counterfeit.en.txt",
        include_str!("../../scores/keywords/counterfeit.en.txt"),
    ),
    (
        "keywords/crypto.en.txt",
        include_str!("../../scores/keywords/crypto.en.txt"),
    ),
    (
        "keywords/extortion.de.txt",
        include_str!("../../scores/keywords/extortion.de.txt"),
    ),
    (
        "keywords/extortion.en.txt",
        include_str!("../../scores/keywords/extortion.en.txt"),
    ),
    (
        "keywords/finance.de.txt",
        include_str!("../../scores/keywords/finance.de.txt"),
    ),
    (
        "keywords/finance.en.txt",
        include_str!("../../scores/keywords/finance.en.txt"),
    ),
    (
        "keywords/finance.fr.txt",
        include_str!("../../scores/keywords/finance.fr.txt"),
    ),
    (
        "keywords/gambling.de.txt",
        include_str!("../../scores/keywords/gambling.de.txt"),
    ),
    (
        "keywords/gambling.en.txt",
        include_str!("../../scores/keywords/gambling.en.txt"),
    ),
    (
        "keywords/gambling.es.txt",
        include_str!("../../scores/keywords/gambling.es.txt"),
    ),
    (
        "keywords/gambling.it.txt",
        include_str!("../../scores/keywords/gambling.it.txt"),
    ),
    (
        "keywords/gambling.zh-Hans.txt",
        include_str!("../../scores/keywords/gambling.zh-Hans.txt"),
    ),
    (
        "keywords/lottery.de.txt",
        include_str!("../../scores/keywords/lottery.de.txt"),
    ),
    (
        "keywords/lottery.el.txt",
        include_str!("../../scores/keywords/lottery.el.txt"),
    ),
    (
        "keywords/lottery.en.txt",
        include_str!("../../scores/keywords/lottery.en.txt"),
    ),
    (
        "keywords/lottery.es.txt",
        include_str!("../../scores/keywords/lottery.es.txt"),
    ),
    (
        "keywords/lottery.fr.txt",
        include_str!("../../scores/keywords/lottery.fr.txt"),
    ),
    (
        "keywords/lottery.it.txt",
        include_str!("../../scores/keywords/lottery.it.txt"),
    ),
    (
        "keywords/lottery.nl.txt",
        include_str!("../../scores/keywords/lottery.nl.txt"),
    ),
    (
        "keywords/lottery.pt.txt",
        include_str!("../../scores/keywords/lottery.pt.txt"),
    ),
    (
        "keywords/malware.en.txt",
        include_str!("../../scores/keywords/malware.en.txt"),
    ),
    (
        "keywords/marketing.el.txt",
        include_str!("../../scores/keywords/marketing.el.txt"),
    ),
    (
        "keywords/marketing.en.txt",
        include_str!("../../scores/keywords/marketing.en.txt"),
    ),
    (
        "keywords/pharma.de.txt",
        include_str!("../../scores/keywords/pharma.de.txt"),
    ),
    (
        "keywords/pharma.en.txt",
        include_str!("../../scores/keywords/pharma.en.txt"),
    ),
    (
        "keywords/pharma.es.txt",
        include_str!("../../scores/keywords/pharma.es.txt"),
    ),
    (
        "keywords/pharma.fr.txt",
        include_str!("../../scores/keywords/pharma.fr.txt"),
    ),
    (
        "keywords/pharma.it.txt",
        include_str!("../../scores/keywords/pharma.it.txt"),
    ),
    (
        "keywords/phishing.de.txt",
        include_str!("../../scores/keywords/phishing.de.txt"),
    ),
    (
        "keywords/phishing.el.txt",
        include_str!("../../scores/keywords/phishing.el.txt"),
    ),
    (
        "keywords/phishing.en.txt",
        include_str!("../../scores/keywords/phishing.en.txt"),
    ),
    (
        "keywords/phishing.es.txt",
        include_str!("../../scores/keywords/phishing.es.txt"),
    ),
    (
        "keywords/phishing.fr.txt",
        include_str!("../../scores/keywords/phishing.fr.txt"),
    ),
    (
        "keywords/phishing.it.txt",
        include_str!("../../scores/keywords/phishing.it.txt"),
    ),
    (
        "keywords/phishing.nl.txt",
        include_str!("../../scores/keywords/phishing.nl.txt"),
    ),
    (
        "keywords/phishing.pt.txt",
        include_str!("../../scores/keywords/phishing.pt.txt"),
    ),
    (
        "keywords/spam-ads.zh-Hans.txt",
        include_str!("../../scores/keywords/spam-ads.zh-Hans.txt"),
    ),
    (
        "keywords/spam-ads.zh-Hant.txt",
        include_str!("../../scores/keywords/spam-ads.zh-Hant.txt"),
    ),
];

/// A symbol's declaration in `symbols.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolDef {
    pub group: String,
    pub weight: f64,
    pub description: String,
    /// Emitted by code outside the rules (SPF, identity, classifier) through
    /// `Engine::scan_with`.
    pub external: bool,
}

/// A group's declaration in `groups.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    pub description: String,
    /// Rspamd's `max_score`: the group's positive scores add up to at most this.
    pub max_score: Option<f64>,
    /// Content groups are skipped (scored 0) for whitelisted logins.
    pub content: bool,
}

/// `actions.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// Threshold at medium sensitivity.
    pub reject_score: f64,
    pub low: f64,
    pub high: f64,
    /// Lower-cased address or domain → level.
    pub senders: HashMap<String, Sensitivity>,
}

impl Actions {
    pub fn threshold(&self, level: Sensitivity) -> f64 {
        match level {
            Sensitivity::Low => self.low,
            Sensitivity::Medium => self.reject_score,
            Sensitivity::High => self.high,
        }
    }
}

/// Everything `scores/` compiles into.
#[derive(Debug)]
pub struct Compiled {
    pub symbols: HashMap<String, SymbolDef>,
    pub groups: HashMap<String, GroupDef>,
    pub actions: Actions,
    pub keywords: KeywordSet,
    pub regex: RegexRules,
    pub attachments: AttachmentPolicy,
    pub structure: StructurePolicy,
    /// Lower-cased login addresses and domains (matched against the SASL
    /// login only, never the envelope sender).
    pub whitelist: HashSet<String>,
}

struct Errors {
    base: PathBuf,
    list: Vec<ConfigError>,
}

impl Errors {
    /// A TOML syntax or type error, at its line.
    fn toml(&mut self, file: &str, text: &str, e: &toml::de::Error) {
        self.push(
            file,
            e.span().map(|s| line_of(text, s.start)),
            e.message().trim().replace('\n', ": "),
        );
    }

    fn push(&mut self, file: &str, line: Option<usize>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.base.join(file),
            line,
            message: message.into(),
        });
    }
}

/// The scores files in force for an operator's directory: each file present
/// under `dir` replaces the built-in file of that name (extra
/// `keywords/*.txt` files are added), and every other file is the built-in
/// one, as Rspamd's `local.d` overlays its shipped configuration. In
/// `symbols.toml` and `groups.toml` the overlay is per entry: a table the
/// operator's file does not declare keeps its built-in definition, so an
/// upgrade that adds a symbol does not break a copied directory (a built-in
/// symbol is switched off with `weight = 0`, not by leaving it out).
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, ConfigErrors> {
    let mut files: Vec<(String, String)> = BUILTIN
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let mut errors = Vec::new();
    if !dir.is_dir() {
        return Err(ConfigErrors(vec![ConfigError {
            file: dir.to_path_buf(),
            line: None,
            message: "scores_dir is not a directory".into(),
        }]));
    }
    let mut local = Vec::new();
    for name in [
        "symbols.toml",
        "groups.toml",
        "actions.toml",
        "regex.toml",
        "attachments.toml",
        "freemail.txt",
        "whitelist.txt",
    ] {
        if dir.join(name).exists() {
            local.push(name.to_string());
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("keywords")) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".txt"))
            .collect();
        names.sort();
        local.extend(names.into_iter().map(|n| format!("keywords/{n}")));
    }
    for rel in local {
        let text = match std::fs::read_to_string(dir.join(&rel)) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError {
                    file: dir.join(&rel),
                    line: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match files.iter_mut().find(|(n, _)| *n == rel) {
            Some(slot) => {
                slot.1 = match rel.as_str() {
                    "symbols.toml" | "groups.toml" => with_builtin_tables(&text, &slot.1),
                    _ => text,
                }
            }
            None => files.push((rel, text)),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `local` followed by the tables of `builtin` that `local` does not
/// declare. Line numbers of `local` stay as the operator wrote them; a
/// `local` that does not parse is returned as it is, for its own error.
fn with_builtin_tables(local: &str, builtin: &str) -> String {
    let (Ok(mine), Ok(shipped)) = (
        toml::from_str::<toml::Table>(local),
        toml::from_str::<toml::Table>(builtin),
    ) else {
        return local.to_string();
    };
    let missing: toml::Table = shipped
        .into_iter()
        .filter(|(k, _)| !mine.contains_key(k))
        .collect();
    if missing.is_empty() {
        return local.to_string();
    }
    let mut text = local.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n# built-in entries not overridden above\n");
    text.push_str(&toml::to_string(&missing).unwrap_or_default());
    text
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) if f.is_finite() => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// Parse a TOML file into a table of spanned values: each top-level entry
/// with the line it starts on. `None` (and its one error) when the file is
/// not valid TOML.
fn toml_entries(
    file: &str,
    text: &str,
    errors: &mut Errors,
) -> Option<Vec<(String, usize, toml::Value)>> {
    match toml::from_str::<BTreeMap<String, toml::Spanned<toml::Value>>>(text) {
        Ok(map) => {
            let mut v: Vec<_> = map
                .into_iter()
                .map(|(k, s)| (k, line_of(text, s.span().start), s.into_inner()))
                .collect();
            v.sort_by_key(|e| e.1);
            Some(v)
        }
        Err(e) => {
            errors.toml(file, text, &e);
            None
        }
    }
}

fn is_symbol_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_uppercase())
}

/// Validate and compile a set of scores files; `base` prefixes error paths.
pub fn compile(files: &[(String, String)], base: &Path) -> Result<Compiled, ConfigErrors> {
    let mut errors = Errors {
        base: base.to_path_buf(),
        list: Vec::new(),
    };
    let get = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    let missing = |name: &str, errors: &mut Errors| {
        let t = get(name);
        if t.is_none() {
            errors.push(name, None, "file missing");
        }
        t.unwrap_or("")
    };

    // groups.toml
    let groups_text = missing("groups.toml", &mut errors);
    let mut groups = HashMap::new();
    let group_entries = toml_entries("groups.toml", groups_text, &mut errors);
    // A file that does not parse is one error: the checks that need what it
    // declares are skipped rather than failing once per entry.
    let groups_read = group_entries.is_some();
    for (name, line, value) in group_entries.unwrap_or_default() {
        let Some(t) = value.as_table() else {
            errors.push(
                "groups.toml",
                Some(line),
                format!("group {name} must be a table"),
            );
            continue;
        };
        let mut def = GroupDef {
            description: String::new(),
            max_score: None,
            content: true,
        };
        for (k, v) in t {
            match (k.as_str(), v) {
                ("description", toml::Value::String(s)) => def.description = s.clone(),
                ("max_score", v) => match number(v) {
                    Some(n) if n > 0.0 => def.max_score = Some(n),
                    _ => errors.push(
                        "groups.toml",
                        Some(line),
                        format!("group {name}: max_score must be a number above 0"),
                    ),
                },
                ("content", toml::Value::Boolean(b)) => def.content = *b,
                _ => errors.push(
                    "groups.toml",
                    Some(line),
                    format!("group {name}: unknown or mistyped key {k:?}"),
                ),
            }
        }
        if def.description.is_empty() {
            errors.push(
                "groups.toml",
                Some(line),
                format!("group {name} needs a description"),
            );
        }
        groups.insert(name, def);
    }

    // symbols.toml
    let symbols_text = missing("symbols.toml", &mut errors);
    let mut symbols = HashMap::new();
    let mut symbol_lines = HashMap::new();
    let symbol_entries = toml_entries("symbols.toml", symbols_text, &mut errors);
    let symbols_read = symbol_entries.is_some();
    for (name, line, value) in symbol_entries.unwrap_or_default() {
        let err = |errors: &mut Errors, msg: String| {
            errors.push("symbols.toml", Some(line), format!("symbol {name}: {msg}"))
        };
        if !is_symbol_name(&name) {
            err(&mut errors, "names are UPPER_SNAKE_CASE".into());
        }
        let Some(t) = value.as_table() else {
            err(
                &mut errors,
                "must be a table with group, weight and description".into(),
            );
            continue;
        };
        let mut weight = None;
        let mut group = None;
        let mut description = String::new();
        let mut external = false;
        for (k, v) in t {
            match (k.as_str(), v) {
                ("weight", v) => match number(v) {
                    Some(n) => weight = Some(n),
                    None => err(&mut errors, "weight must be a number".into()),
                },
                ("group", toml::Value::String(g)) => group = Some(g.clone()),
                ("description", toml::Value::String(d)) => description = d.clone(),
                ("external", toml::Value::Boolean(b)) => external = *b,
                _ => err(&mut errors, format!("unknown or mistyped key {k:?}")),
            }
        }
        let Some(weight) = weight else {
            err(&mut errors, "symbol without a weight".into());
            continue;
        };
        let Some(group) = group else {
            err(&mut errors, "no group".into());
            continue;
        };
        if groups_read && !groups.contains_key(&group) {
            err(
                &mut errors,
                format!("group {group:?} is not declared in groups.toml"),
            );
        }
        if description.trim().is_empty() {
            err(&mut errors, "needs a one-line description".into());
        }
        symbol_lines.insert(name.clone(), line);
        symbols.insert(
            name,
            SymbolDef {
                group,
                weight,
                description,
                external,
            },
        );
    }

    // actions.toml
    let actions = actions(missing("actions.toml", &mut errors), &mut errors);

    // attachments.toml
    let attachments = attachment_policy(missing("attachments.toml", &mut errors), &mut errors);

    // freemail.txt and whitelist.txt
    let freemail = word_list(
        "freemail.txt",
        missing("freemail.txt", &mut errors),
        false,
        &mut errors,
    );
    let whitelist = word_list(
        "whitelist.txt",
        missing("whitelist.txt", &mut errors),
        true,
        &mut errors,
    );

    // keywords/*.txt
    let mut lists = Vec::new();
    for (name, text) in files.iter().filter(|(n, _)| n.starts_with("keywords/")) {
        if let Some(list) = keyword_list(name, text, &mut errors) {
            lists.push(list);
        }
    }
    for list in lists.iter().filter(|_| symbols_read) {
        if !symbols.contains_key(&list.symbol) {
            errors.push(
                &list.file,
                Some(1),
                format!("symbol {} has no weight in symbols.toml", list.symbol),
            );
        }
    }
    let keywords = match KeywordSet::new(&lists) {
        Ok(k) => Some(k),
        Err(errs) => {
            for e in errs {
                errors.push(&e.file, Some(e.line), e.message);
            }
            None
        }
    };

    // regex.toml
    let regex_text = missing("regex.toml", &mut errors);
    let rules = regex_rules(regex_text, &mut errors);
    for r in rules.iter().filter(|_| symbols_read) {
        if !symbols.contains_key(&r.symbol) {
            errors.push(
                "regex.toml",
                Some(r.line),
                format!("symbol {} has no weight in symbols.toml", r.symbol),
            );
        }
    }
    let lines: Vec<usize> = rules.iter().map(|r| r.line).collect();
    let regex_symbols: Vec<String> = rules.iter().map(|r| r.symbol.clone()).collect();
    let regex = match RegexRules::new(rules) {
        Ok(r) => Some(r),
        Err(errs) => {
            for (i, msg) in errs {
                errors.push("regex.toml", lines.get(i).copied(), msg);
            }
            None
        }
    };

    // Code symbols need weights; weights need a symbol.
    for s in CODE_SYMBOLS.iter().filter(|_| symbols_read) {
        if !symbols.contains_key(*s) {
            errors.push(
                "symbols.toml",
                None,
                format!("symbol {s} is emitted by the rules but has no weight"),
            );
        }
    }
    let mut emitted: HashSet<&str> = CODE_SYMBOLS.iter().copied().collect();
    emitted.extend(lists.iter().map(|l| l.symbol.as_str()));
    emitted.extend(regex_symbols.iter().map(String::as_str));
    let mut orphans: Vec<(&String, &SymbolDef)> = symbols
        .iter()
        .filter(|(n, d)| !d.external && !emitted.contains(n.as_str()))
        .collect();
    orphans.sort_by_key(|(n, _)| symbol_lines.get(*n));
    for (name, _) in orphans {
        errors.push(
            "symbols.toml",
            symbol_lines.get(name).copied(),
            format!("weight without symbol: no rule emits {name} (mark it `external = true` if code outside the rules does)"),
        );
    }

    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    Ok(Compiled {
        symbols,
        groups,
        actions,
        keywords: keywords.expect("no errors"),
        regex: regex.expect("no errors"),
        attachments,
        structure: StructurePolicy { freemail },
        whitelist,
    })
}

fn actions(text: &str, errors: &mut Errors) -> Actions {
    let mut a = Actions {
        reject_score: 15.0,
        low: 20.0,
        high: 10.0,
        senders: HashMap::new(),
    };
    let mut seen_reject = false;
    let Some(entries) = toml_entries("actions.toml", text, errors) else {
        return a;
    };
    for (key, line, value) in entries {
        match (key.as_str(), &value) {
            ("reject_score", v) => match number(v) {
                Some(n) if n > 0.0 => {
                    a.reject_score = n;
                    seen_reject = true;
                }
                _ => errors.push(
                    "actions.toml",
                    Some(line),
                    "reject_score must be a number above 0",
                ),
            },
            ("sensitivity", toml::Value::Table(t)) => {
                for (k, v) in t {
                    match (k.as_str(), v) {
                        ("low", v) => match number(v) {
                            Some(n) if n > 0.0 => a.low = n,
                            _ => errors.push(
                                "actions.toml",
                                Some(line),
                                "sensitivity.low must be a number above 0",
                            ),
                        },
                        ("high", v) => match number(v) {
                            Some(n) if n > 0.0 => a.high = n,
                            _ => errors.push(
                                "actions.toml",
                                Some(line),
                                "sensitivity.high must be a number above 0",
                            ),
                        },
                        ("senders", toml::Value::Table(s)) => {
                            for (who, level) in s {
                                match level.clone().try_into::<Sensitivity>() {
                                    Ok(l) => {
                                        a.senders.insert(who.to_lowercase(), l);
                                    }
                                    Err(_) => errors.push(
                                        "actions.toml",
                                        Some(line),
                                        format!("sensitivity.senders.{who:?}: level must be \"low\", \"medium\" or \"high\""),
                                    ),
                                }
                            }
                        }
                        _ => errors.push(
                            "actions.toml",
                            Some(line),
                            format!("sensitivity: unknown or mistyped key {k:?}"),
                        ),
                    }
                }
            }
            _ => errors.push(
                "actions.toml",
                Some(line),
                format!("unknown or mistyped key {key:?}"),
            ),
        }
    }
    if !seen_reject {
        errors.push("actions.toml", None, "reject_score is required");
    }
    if !(a.high <= a.reject_score && a.reject_score <= a.low) {
        errors.push(
            "actions.toml",
            None,
            "thresholds must satisfy sensitivity.high <= reject_score <= sensitivity.low",
        );
    }
    a
}

fn attachment_policy(text: &str, errors: &mut Errors) -> AttachmentPolicy {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        dangerous: Vec<toml::Spanned<String>>,
        decoy: Vec<toml::Spanned<String>>,
        archives: Vec<toml::Spanned<String>>,
    }
    let raw: Raw = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errors.toml("attachments.toml", text, &e);
            return AttachmentPolicy::default();
        }
    };
    let set = |list: Vec<toml::Spanned<String>>, errors: &mut Errors| -> HashSet<String> {
        let mut out = HashSet::new();
        for item in list {
            let line = line_of(text, item.span().start);
            let ext = item.get_ref().trim().trim_start_matches('.').to_lowercase();
            if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                errors.push(
                    "attachments.toml",
                    Some(line),
                    format!("{:?} is not a file extension", item.get_ref()),
                );
            } else if !out.insert(ext) {
                errors.push(
                    "attachments.toml",
                    Some(line),
                    format!("{:?} is listed twice", item.get_ref()),
                );
            }
        }
        out
    };
    AttachmentPolicy {
        dangerous: set(raw.dangerous, errors),
        decoy: set(raw.decoy, errors),
        archives: set(raw.archives, errors),
    }
}

/// One domain (or, when `addresses`, address) per line; `#` comments.
fn word_list(file: &str, text: &str, addresses: bool, errors: &mut Errors) -> HashSet<String> {
    let mut out = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let item = line.split('#').next().unwrap_or("").trim();
        if item.is_empty() {
            continue;
        }
        let ok = !item.contains(char::is_whitespace)
            && item.contains('.')
            && (addresses || !item.contains('@'))
            && item.split('@').count() <= 2;
        if !ok {
            let want = if addresses {
                "an address or a domain"
            } else {
                "a domain"
            };
            errors.push(file, Some(i + 1), format!("{item:?} is not {want}"));
        } else if !out.insert(item.to_lowercase()) {
            errors.push(file, Some(i + 1), format!("{item:?} is listed twice"));
        }
    }
    out
}

/// `keywords/<category>.<lang>.txt`: `# symbol: NAME` and optional
/// `# saturate: N` and `# max_factor: F` header lines, then one keyword per line, optionally
/// followed by `| N` (the keyword counts as N distinct hits; default 1).
fn keyword_list(file: &str, text: &str, errors: &mut Errors) -> Option<KeywordList> {
    let mut symbol = None;
    let mut saturate = 4.0;
    let mut max_factor = 3.0;
    let mut terms = Vec::new();
    let stem = file
        .trim_start_matches("keywords/")
        .trim_end_matches(".txt");
    if stem.split('.').count() != 2 {
        errors.push(file, None, "keyword files are named <category>.<lang>.txt");
    }
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim();
            if let Some(s) = comment.strip_prefix("symbol:") {
                let s = s.trim();
                if !is_symbol_name(s) {
                    errors.push(
                        file,
                        Some(n),
                        format!("{s:?} is not an UPPER_SNAKE symbol name"),
                    );
                }
                symbol = Some(s.to_string());
            } else if let Some(s) = comment.strip_prefix("saturate:") {
                match s.trim().parse::<f64>() {
                    Ok(v) if v >= 1.0 => saturate = v,
                    _ => errors.push(file, Some(n), "saturate must be a number of at least 1"),
                }
            } else if let Some(s) = comment.strip_prefix("max_factor:") {
                match s.trim().parse::<f64>() {
                    Ok(v) if (1.0..=5.0).contains(&v) => max_factor = v,
                    _ => errors.push(file, Some(n), "max_factor must be a number from 1 to 5"),
                }
            }
            continue;
        }
        let (term, strength) = match line.rsplit_once('|') {
            Some((t, s)) => match s.trim().parse::<u32>() {
                Ok(v) if (1..=10).contains(&v) => (t.trim(), v),
                _ => {
                    errors.push(
                        file,
                        Some(n),
                        format!("strength after '|' must be 1–10, got {:?}", s.trim()),
                    );
                    continue;
                }
            },
            None => (line, 1),
        };
        if term.chars().count() < 2 {
            errors.push(file, Some(n), format!("keyword {term:?} is too short"));
            continue;
        }
        terms.push((term.to_string(), strength, n));
    }
    let Some(symbol) = symbol else {
        errors.push(file, Some(1), "no `# symbol: NAME` header line");
        return None;
    };
    if terms.is_empty() {
        errors.push(file, None, "no keywords");
    }
    Some(KeywordList {
        file: file.to_string(),
        symbol,
        saturate,
        max_factor,
        terms,
    })
}

/// The rules of a `regex.toml` text (benches and tests compile them with
/// each engine).
pub fn parse_regex_rules(text: &str) -> Result<Vec<RegexRule>, ConfigErrors> {
    let mut errors = Errors {
        base: PathBuf::new(),
        list: Vec::new(),
    };
    let rules = regex_rules(text, &mut errors);
    if errors.list.is_empty() {
        Ok(rules)
    } else {
        Err(ConfigErrors(errors.list))
    }
}

/// The built-in compiled set, without building an engine.
pub fn builtin() -> Result<Compiled, ConfigErrors> {
    let files: Vec<(String, String)> = BUILTIN
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    compile(&files, Path::new("scores (built in)"))
}

fn regex_rules(text: &str, errors: &mut Errors) -> Vec<RegexRule> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        rule: Vec<toml::Spanned<toml::Value>>,
    }
    let raw: Raw = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errors.toml("regex.toml", text, &e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in raw.rule {
        let line = line_of(text, item.span().start);
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rule {
            symbol: String,
            pattern: String,
            #[serde(default)]
            #[allow(dead_code)]
            description: Option<String>,
        }
        match item.into_inner().try_into::<Rule>() {
            Ok(r) => out.push(RegexRule {
                symbol: r.symbol,
                pattern: r.pattern,
                line,
            }),
            Err(e) => errors.push("regex.toml", Some(line), e.message().to_string()),
        }
    }
    out
}
