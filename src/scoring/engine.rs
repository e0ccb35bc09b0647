//! The scoring engine: compiled rules and weights from `scores/`, applied to
//! one message. Pure and synchronous; the only I/O is reading `scores/` in
//! [`Engine::load`].
//!
//! # Flow
//! `message::parse` → rules (structure, attachments, keyword automaton,
//! regex database) → symbols → weights × factors → group caps → [`ScanReport`].
//!
//! # Symbols from outside the rules
//! Facts the rules cannot compute (SPF verdicts and sender-identity checks
//! gathered asynchronously by the pipeline) enter through
//! [`Engine::scan_with`] as [`ExternalSymbol`]s; symbols computed from the
//! engine's own parse (the classifier's) through [`Engine::scan_content`].
//! Their names must be declared in `scores/symbols.toml` with `external = true`, which gives them a group
//! and a weight like any other symbol; `SPF_*`, `DMARC_*`, `FROM_MAILFROM_MISALIGNED`
//! and `LOGIN_*` are declared in group `identity`. An undeclared name does not
//! fail the scan: it shows up as `EXTERNAL_SYMBOL_UNKNOWN` with no score and a
//! warning is logged. Check a name at start-up with [`Engine::knows_external`].
//!
//! ```
//! use outscore::envelope::Envelope;
//! use outscore::scoring::{Engine, ExternalSymbol};
//! let engine = Engine::builtin();
//! let spf = ExternalSymbol::new("SPF_FAIL", 1.0, "198.51.100.7 not allowed by example.com");
//! let report = engine.scan_with(&Envelope::default(), b"Subject: hi\r\n\r\nhello\r\n", &[spf]);
//! assert!(report.symbol("SPF_FAIL").is_some());
//! ```
//!
//! # Whitelist and sensitivity
//! Messages from an authenticated login listed in `scores/whitelist.txt`
//! (by its address or its domain) still get every symbol reported, but the
//! symbols of content groups (`content = true` in `groups.toml`) score 0 and
//! `WHITELISTED` says why. Only the SASL login counts: the envelope sender is
//! whatever the client typed at MAIL FROM, so it never whitelists, and a
//! message without a login is never whitelisted. `actions.toml` maps senders to a sensitivity
//! level whose threshold is [`Engine::reject_score_for`]; the report shows a
//! non-default level as `SENSITIVITY_HIGH` / `SENSITIVITY_LOW` (weight 0).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tracing::{info, warn};

use crate::diag::ConfigErrors;
use crate::envelope::{domain_of, Envelope};
use crate::message::{self, Limits, ParsedMessage};
use crate::rules::{Context, Hits};

use super::report::{AttachmentSummary, MessageSummary, ScanReport, SymbolResult, Timings};
use super::scores::{self, Compiled, SymbolDef};
use crate::policy::Sensitivity;

pub use crate::rules::structure::GTUBE;

/// A symbol produced outside the rules (SPF, identity, classifier).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalSymbol {
    /// Declared in `scores/symbols.toml` with `external = true`.
    pub name: String,
    /// 0.0–1.0 usually; multiplies the weight.
    pub factor: f64,
    pub evidence: Vec<String>,
}

impl ExternalSymbol {
    pub fn new(name: &str, factor: f64, evidence: impl Into<String>) -> ExternalSymbol {
        ExternalSymbol {
            name: name.to_string(),
            factor,
            evidence: vec![evidence.into()],
        }
    }
}

/// Rules and weights, ready to score messages. Cheap to clone (`Arc`) and
/// replaced whole on reload.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Compiled>,
    limits: Limits,
    /// Per-login sensitivity from the accounts directory; it comes before
    /// `[sensitivity.senders]` of `actions.toml`.
    accounts: Arc<HashMap<String, Sensitivity>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("symbols", &self.inner.symbols.len())
            .field("keywords", &self.inner.keywords.pattern_count)
            .field("regex", &self.inner.regex)
            .field("reject_score", &self.inner.actions.reject_score)
            .finish()
    }
}

impl Engine {
    /// The rule set built into the binary (`scores/` at build time).
    pub fn builtin() -> Engine {
        static BUILTIN: OnceLock<Arc<Compiled>> = OnceLock::new();
        let inner = BUILTIN.get_or_init(|| {
            let files: Vec<(String, String)> = scores::BUILTIN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect();
            let compiled = scores::compile(&files, Path::new("scores (built in)"))
                .unwrap_or_else(|e| panic!("built-in scores/ is invalid:\n{e}"));
            log_loaded("built in", &compiled);
            Arc::new(compiled)
        });
        Engine {
            inner: inner.clone(),
            limits: Limits::default(),
            accounts: Arc::default(),
        }
    }

    /// Load `scores/` from a directory, reporting every problem with file:line.
    pub fn load(dir: &Path) -> Result<Engine, ConfigErrors> {
        let files = scores::read_dir(dir)?;
        let compiled = scores::compile(&files, dir)?;
        log_loaded(&dir.display().to_string(), &compiled);
        Ok(Engine {
            inner: Arc::new(compiled),
            limits: Limits::default(),
            accounts: Arc::default(),
        })
    }

    /// Score at or above which a message is refused as spam (medium sensitivity).
    pub fn reject_score(&self) -> f64 {
        self.inner.actions.reject_score
    }

    /// The threshold for this sender: its sensitivity level from
    /// `actions.toml` (login, then MAIL FROM, by address then domain).
    /// The report says so with `SENSITIVITY_HIGH` / `SENSITIVITY_LOW`.
    pub fn reject_score_for(&self, envelope: &Envelope) -> f64 {
        self.inner.actions.threshold(self.sensitivity(envelope).0)
    }

    /// The sensitivity of SASL logins set by the accounts directory (lower
    /// case login → level); it takes precedence over `actions.toml`.
    pub fn with_account_sensitivity(mut self, levels: HashMap<String, Sensitivity>) -> Engine {
        self.accounts = Arc::new(levels);
        self
    }

    /// The sender's level and where it was set: the accounts directory's
    /// level for the login first, then `[sensitivity.senders]` (by login,
    /// address or domain). The envelope sender can be forged, so a level
    /// found by it may only make the line stricter (`high`), never more
    /// lenient.
    fn sensitivity(&self, envelope: &Envelope) -> (Sensitivity, Option<String>) {
        let login = envelope
            .auth_login
            .as_deref()
            .filter(|_| !self.accounts.is_empty())
            .map(|l| l.trim().to_lowercase());
        if let Some((login, level)) = login.and_then(|l| self.accounts.get(&l).map(|s| (l, *s))) {
            return (level, Some(format!("{login} in the accounts directory")));
        }
        let actions = &self.inner.actions;
        sender_keys(envelope)
            .into_iter()
            .find_map(|(k, authenticated)| {
                actions
                    .senders
                    .get(&k)
                    .filter(|l| authenticated || **l == Sensitivity::High)
                    .map(|l| (*l, Some(format!("{k} in actions.toml"))))
            })
            .unwrap_or((Sensitivity::Medium, None))
    }

    /// Name of the regex engine in use (`hyperscan` or `regex-set`).
    pub fn regex_engine(&self) -> &'static str {
        self.inner.regex.engine()
    }

    /// Whether `scores/symbols.toml` declares `name` (any kind).
    /// Every declared symbol with its description and weight, for texts
    /// that tell people what was found.
    pub fn descriptions(&self) -> impl Iterator<Item = (&str, &str, f64)> {
        self.inner
            .symbols
            .iter()
            .map(|(name, d)| (name.as_str(), d.description.as_str(), d.weight))
    }

    pub fn declares(&self, name: &str) -> bool {
        self.inner.symbols.contains_key(name)
    }

    /// The symbols declared with `external = true`.
    pub fn external_symbols(&self) -> impl Iterator<Item = &str> {
        self.inner
            .symbols
            .iter()
            .filter(|(_, d)| d.external)
            .map(|(n, _)| n.as_str())
    }

    /// Whether `name` may be passed to [`Engine::scan_with`].
    pub fn knows_external(&self, name: &str) -> bool {
        self.inner.symbols.get(name).is_some_and(|d| d.external)
    }

    /// A symbol's declaration.
    pub fn symbol(&self, name: &str) -> Option<&SymbolDef> {
        self.inner.symbols.get(name)
    }

    /// Score one message. Never fails.
    pub fn scan(&self, envelope: &Envelope, raw: &[u8]) -> ScanReport {
        self.scan_with(envelope, raw, &[])
    }

    /// Score one message with symbols computed outside the rules. Never fails.
    pub fn scan_with(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        external: &[ExternalSymbol],
    ) -> ScanReport {
        self.scan_content(envelope, raw, external, |_| Vec::new())
    }

    /// Score one message, parsed once: `content` gets the parse and its
    /// normalised text (the rules' [`Context`]) and returns more external
    /// symbols computed from it (the classifier's), which are weighed with
    /// `external`. Never fails.
    pub fn scan_content(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        external: &[ExternalSymbol],
        content: impl FnOnce(&Context<'_>) -> Vec<ExternalSymbol>,
    ) -> ScanReport {
        let started = Instant::now();
        let msg = self.parse(raw);
        let parse_us = started.elapsed().as_micros() as u64;
        let mut report = self.scan_parsed(envelope, raw, &msg, external, content);
        report.timings.parse_us = parse_us;
        report.timings.total_us += parse_us;
        report
    }

    /// Parse a message within the engine's limits.
    pub fn parse(&self, raw: &[u8]) -> ParsedMessage {
        message::parse_with(raw, &self.limits)
    }

    /// Score an already parsed message (`raw` is what it was parsed from):
    /// the rules and `content` (see [`Engine::scan_content`]) share one
    /// normalisation of its text. Never fails.
    pub fn scan_parsed(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        msg: &ParsedMessage,
        external: &[ExternalSymbol],
        content: impl FnOnce(&Context<'_>) -> Vec<ExternalSymbol>,
    ) -> ScanReport {
        let started = Instant::now();
        let ctx = Context::new(msg);
        let mut symbols = external.to_vec();
        symbols.extend(content(&ctx));
        let hits = self.rules_in(raw, &ctx);
        let mut report = self.weigh(envelope, hits, &symbols);
        report.message = summary(msg);
        report.message.dangerous_files = self.inner.attachments.dangerous_files(&msg.attachments);
        let rules_us = started.elapsed().as_micros() as u64;
        report.timings = Timings {
            parse_us: 0,
            rules_us,
            total_us: rules_us,
        };
        report
    }

    /// Run every rule over a parsed message.
    pub fn rules(&self, raw: &[u8], msg: &ParsedMessage) -> Hits {
        self.rules_in(raw, &Context::new(msg))
    }

    fn rules_in(&self, raw: &[u8], ctx: &Context<'_>) -> Hits {
        let c = &self.inner;
        let msg = ctx.msg;
        let mut hits = Hits::default();
        c.structure.check(raw, msg, &mut hits);
        c.attachments.check(&msg.attachments, &mut hits);
        c.keywords.check(ctx, &mut hits);
        c.regex.check(ctx, &mut hits);
        hits
    }

    /// Weights, whitelist and group caps: hits → report (without message facts).
    fn weigh(
        &self,
        envelope: &Envelope,
        mut hits: Hits,
        external: &[ExternalSymbol],
    ) -> ScanReport {
        let c = &self.inner;
        for e in external {
            if self.knows_external(&e.name) {
                for ev in &e.evidence {
                    hits.add(&e.name, e.factor, ev.clone());
                }
                if e.evidence.is_empty() {
                    hits.add(&e.name, e.factor, "(no evidence given)");
                }
            } else {
                warn!(symbol = %e.name, "external symbol not declared with external = true in scores/symbols.toml; ignored");
                hits.add("EXTERNAL_SYMBOL_UNKNOWN", 0.0, e.name.clone());
            }
        }
        let (level, who) = self.sensitivity(envelope);
        if level != Sensitivity::Medium {
            let name = if level == Sensitivity::High {
                "SENSITIVITY_HIGH"
            } else {
                "SENSITIVITY_LOW"
            };
            let threshold = c.actions.threshold(level);
            hits.add(
                name,
                1.0,
                format!("{}: refused at {threshold}", who.unwrap_or_default()),
            );
        }
        let whitelisted = self.whitelisted(envelope);
        if let Some(who) = &whitelisted {
            hits.add(
                "WHITELISTED",
                1.0,
                format!("{who} is in whitelist.txt: content rules do not count"),
            );
        }
        let mut symbols: Vec<SymbolResult> = hits
            .0
            .into_iter()
            .map(|h| {
                let (group, weight) = match c.symbols.get(&h.symbol) {
                    Some(d) => (d.group.clone(), d.weight),
                    None => ("unknown".to_string(), 0.0),
                };
                let muted =
                    whitelisted.is_some() && c.groups.get(&group).is_some_and(|g| g.content);
                let score = if muted { 0.0 } else { weight * h.factor };
                SymbolResult {
                    name: h.symbol,
                    group,
                    weight,
                    factor: h.factor,
                    score,
                    evidence: h.evidence,
                }
            })
            .collect();
        // Group caps: scale a group's positive scores down to its max_score.
        let mut positive: HashMap<&str, f64> = HashMap::new();
        for s in &symbols {
            if s.score > 0.0 {
                *positive.entry(s.group.as_str()).or_default() += s.score;
            }
        }
        let scale: HashMap<String, f64> = positive
            .into_iter()
            .filter_map(|(g, sum)| {
                let cap = c.groups.get(g)?.max_score?;
                (sum > cap).then(|| (g.to_string(), cap / sum))
            })
            .collect();
        for s in &mut symbols {
            if s.score > 0.0 {
                if let Some(k) = scale.get(&s.group) {
                    s.score *= k;
                }
            }
            s.score = (s.score * 1000.0).round() / 1000.0;
        }
        symbols.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.name.cmp(&b.name))
        });
        let score = (symbols.iter().map(|s| s.score).sum::<f64>() * 100.0).round() / 100.0;
        ScanReport {
            score,
            symbols,
            ..ScanReport::default()
        }
    }

    /// The whitelist entry that matches the message's SASL login (its
    /// address, then its domain). The MAIL FROM is never consulted: any
    /// client may send any envelope sender.
    fn whitelisted(&self, envelope: &Envelope) -> Option<String> {
        if self.inner.whitelist.is_empty() {
            return None;
        }
        let login = envelope.auth_login.as_deref()?.trim().to_lowercase();
        if login.is_empty() {
            return None;
        }
        let domain = domain_of(&login);
        std::iter::once(login)
            .chain(domain)
            .find(|k| self.inner.whitelist.contains(k))
    }
}

/// Login and MAIL FROM, each as address then domain, lower case.
/// Login then envelope sender, each as address then domain, lower case,
/// with whether the key is the authenticated login's.
fn sender_keys(envelope: &Envelope) -> Vec<(String, bool)> {
    let mut keys = Vec::new();
    for (who, authenticated) in [
        (envelope.auth_login.as_deref(), true),
        (Some(envelope.mail_from.as_str()), false),
    ] {
        let Some(who) = who.map(|w| w.trim().to_lowercase()) else {
            continue;
        };
        if who.is_empty() {
            continue;
        }
        if let Some(d) = domain_of(&who) {
            keys.push((who, authenticated));
            keys.push((d, authenticated));
        } else {
            keys.push((who, authenticated));
        }
    }
    keys
}

fn summary(msg: &ParsedMessage) -> MessageSummary {
    MessageSummary {
        size: msg.size as u64,
        parts: msg.parts,
        subject: msg.subject.clone(),
        from: msg.from.as_ref().and_then(|f| f.address.clone()),
        to: msg.to.iter().take(50).cloned().collect(),
        message_id: msg.message_id.clone(),
        date: msg.date.clone(),
        attachments: msg
            .attachments
            .iter()
            .map(|a| AttachmentSummary {
                name: a.name.clone(),
                declared_type: a.declared_type.clone(),
                sniffed_type: a.sniffed_type.map(str::to_string),
                size: a.size,
            })
            .collect(),
        url_count: msg.urls.len() as u32,
        charsets: msg.charsets.clone(),
        dangerous_files: Vec::new(),
    }
}

fn log_loaded(source: &str, c: &Compiled) {
    info!(
        source,
        symbols = c.symbols.len(),
        keywords = c.keywords.pattern_count,
        keyword_automaton_bytes = c.keywords.memory_usage(),
        regex_rules = c.regex.len(),
        regex_engine = c.regex.engine(),
        "scores loaded"
    );
}
