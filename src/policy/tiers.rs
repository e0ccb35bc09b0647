//! The L-SPAM tier table (`scores/tiers.toml`): ordered rules over the
//! message score, the symbols that fired and the account's history, each
//! naming one of the eight tiers. Pure: no I/O beyond reading the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::diag::{line_of, read_file, ConfigError, ConfigErrors};
use crate::smtp::SmtpReply;

/// The tier table shipped with the binary.
pub const BUILTIN_TIERS: &str = include_str!("../../scores/tiers.toml");

/// The eight L-SPAM tiers, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    #[serde(rename = "L-SPAM00")]
    LSpam00,
    #[serde(rename = "L-SPAM10")]
    LSpam10,
    #[serde(rename = "L-SPAM11")]
    LSpam11,
    #[serde(rename = "L-SPAM20")]
    LSpam20,
    #[serde(rename = "L-SPAM21")]
    LSpam21,
    #[serde(rename = "L-SPAM30")]
    LSpam30,
    #[serde(rename = "L-SPAM31")]
    LSpam31,
    #[serde(rename = "L-SPAM40")]
    LSpam40,
}

/// What a tier does to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The account is blocked until its password is changed.
    PasswordReset,
    /// Outgoing SMTP of the account is suspended.
    Suspension,
}

impl Tier {
    pub const ALL: [Tier; 8] = [
        Tier::LSpam00,
        Tier::LSpam10,
        Tier::LSpam11,
        Tier::LSpam20,
        Tier::LSpam21,
        Tier::LSpam30,
        Tier::LSpam31,
        Tier::LSpam40,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::LSpam00 => "L-SPAM00",
            Tier::LSpam10 => "L-SPAM10",
            Tier::LSpam11 => "L-SPAM11",
            Tier::LSpam20 => "L-SPAM20",
            Tier::LSpam21 => "L-SPAM21",
            Tier::LSpam30 => "L-SPAM30",
            Tier::LSpam31 => "L-SPAM31",
            Tier::LSpam40 => "L-SPAM40",
        }
    }

    /// Fixed by the providers' procedures: 00/10/11 reset, the rest suspend.
    pub fn family(self) -> Family {
        match self {
            Tier::LSpam00 | Tier::LSpam10 | Tier::LSpam11 => Family::PasswordReset,
            _ => Family::Suspension,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown tier {s:?} (want L-SPAM00, 10, 11, 20, 21, 30, 31 or 40)")
            })
    }
}

/// The account's recent history as the tier rules see it. Counts are of
/// events *before* this message; the evaluation adds this message to the
/// spam counts when it is spam-scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub spam_last_hour: u64,
    pub spam_last_day: u64,
    /// Blocks of the account since its last confirmed password reset (or
    /// ever).
    pub offences_since_reset: u64,
    /// Volume-limit hits (prison, daily budget) in the last 24 hours.
    pub limit_hits_last_day: u64,
    /// Suspensions lifted in the last 90 days.
    pub suspensions_90d: u64,
    /// Password resets confirmed in the last 90 days.
    pub resets_90d: u64,
    /// Messages refused by a message policy (attachment, sender mismatch,
    /// large message) in the last hour.
    #[serde(default)]
    pub refusals_last_hour: u64,
}

/// One scored message as the tier rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub score: f64,
    /// The threshold in force for this sender (sensitivity applied).
    pub reject_score: f64,
    pub symbols: &'a [&'a str],
    /// A message policy refuses this message (set by the policy itself).
    pub refused: bool,
}

impl Scored<'_> {
    /// At or over the line.
    pub fn is_spam(&self) -> bool {
        self.score >= self.reject_score
    }
}

/// A tier and why: which rule (index and line of tiers.toml) with which
/// counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierDecision {
    pub tier: Tier,
    pub family: Family,
    /// 0-based index among the `[[rule]]` entries.
    pub rule_index: usize,
    /// Line of the rule in its file.
    pub rule_line: usize,
    pub self_service: bool,
    /// `rule #3 (tiers.toml:97) L-SPAM20: score 18.0 >= 1.0 x 15.0; resets_90d 1 >= 1`
    pub explanation: String,
}

/// One history condition: field name, threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    SpamLastHour,
    SpamLastDay,
    OffencesSinceReset,
    LimitHitsLastDay,
    Suspensions90d,
    Resets90d,
    RefusalsLastHour,
}

impl Count {
    fn name(self) -> &'static str {
        match self {
            Count::SpamLastHour => "spam_last_hour",
            Count::SpamLastDay => "spam_last_day",
            Count::OffencesSinceReset => "offences_since_reset",
            Count::LimitHitsLastDay => "limit_hits_last_day",
            Count::Suspensions90d => "suspensions_90d",
            Count::Resets90d => "resets_90d",
            Count::RefusalsLastHour => "refusals_last_hour",
        }
    }

    fn value(self, h: &History, message: &Scored<'_>) -> u64 {
        let this = u64::from(message.is_spam());
        match self {
            Count::SpamLastHour => h.spam_last_hour + this,
            Count::SpamLastDay => h.spam_last_day + this,
            Count::OffencesSinceReset => h.offences_since_reset,
            Count::LimitHitsLastDay => h.limit_hits_last_day,
            Count::Suspensions90d => h.suspensions_90d,
            Count::Resets90d => h.resets_90d,
            Count::RefusalsLastHour => h.refusals_last_hour + u64::from(message.refused),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    tier: Tier,
    line: usize,
    score_ratio: Option<f64>,
    symbol_set: Option<String>,
    counts: Vec<(Count, u64)>,
    /// The rule's own reply template (else its tier's).
    reply: Option<String>,
}

/// Per-tier settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TierInfo {
    pub doc: String,
    /// Reply template with `{tier}` and `{report_id}`.
    pub reply: String,
    pub self_service: bool,
    /// How long a suspension under this tier lasts at least before the
    /// customer may unblock it themselves (the providers' "complaint
    /// period"); the abuse team can lift it at any time.
    pub complaint_period: chrono::Duration,
}

/// The loaded, validated tier table.
#[derive(Debug, Clone, PartialEq)]
pub struct TierTable {
    file: PathBuf,
    sets: BTreeMap<String, Vec<String>>,
    tiers: BTreeMap<Tier, TierInfo>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sets: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    tiers: BTreeMap<String, toml::Spanned<RawTier>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    doc: Option<String>,
    reply: Option<String>,
    self_service: Option<bool>,
    complaint_period: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    tier: String,
    score: Option<f64>,
    symbol_in: Option<String>,
    spam_last_hour: Option<u64>,
    spam_last_day: Option<u64>,
    offences_since_reset: Option<u64>,
    limit_hits_last_day: Option<u64>,
    suspensions_90d: Option<u64>,
    resets_90d: Option<u64>,
    refusals_last_hour: Option<u64>,
    reply: Option<String>,
    /// Free text for the analyst; ignored.
    #[allow(dead_code)]
    doc: Option<String>,
}

/// The complaint period of a tier unless `tiers.toml` sets one: a day for
/// a first suspension, three days for a spam run or a relapse.
fn default_complaint_period(tier: Tier) -> chrono::Duration {
    match tier {
        Tier::LSpam20 | Tier::LSpam21 => chrono::Duration::hours(24),
        Tier::LSpam30 | Tier::LSpam31 | Tier::LSpam40 => chrono::Duration::hours(72),
        _ => chrono::Duration::zero(),
    }
}

fn default_reply(tier: Tier) -> String {
    match tier.family() {
        Family::PasswordReset => {
            "550 5.7.1 {tier} outbound spam blocked, password change required, report {report_id}"
                .into()
        }
        Family::Suspension => {
            "550 5.7.1 {tier} outbound spam blocked, account suspended, report {report_id}".into()
        }
    }
}

/// A reply template must render to a permanent (5xx) SMTP reply.
fn check_reply(template: &str, tier: Tier) -> Result<(), String> {
    match SmtpReply::parse(&render(template, tier, "0123456789abcdef")) {
        Ok(r) if r.code() >= 500 => Ok(()),
        Ok(r) => Err(format!("reply must be permanent (5xx), got {}", r.code())),
        Err(e) => Err(format!("reply {template:?}: {e}")),
    }
}

/// Fill a reply template.
fn render(template: &str, tier: Tier, report_id: &str) -> String {
    template
        .replace("{tier}", tier.as_str())
        .replace("{report_id}", report_id)
}

impl TierTable {
    /// The table built into the binary.
    pub fn builtin() -> TierTable {
        TierTable::parse(Path::new("scores/tiers.toml"), BUILTIN_TIERS)
            .expect("built-in tiers.toml is valid")
    }

    /// Read `tiers.toml` from a file.
    pub fn load(path: &Path) -> Result<TierTable, ConfigErrors> {
        TierTable::parse(path, &read_file(path)?)
    }

    /// `<dir>/tiers.toml` when present, else the built-in table.
    pub fn load_dir(dir: Option<&Path>) -> Result<TierTable, ConfigErrors> {
        match dir.map(|d| d.join("tiers.toml")) {
            Some(path) if path.exists() => TierTable::load(&path),
            _ => Ok(TierTable::builtin()),
        }
    }

    /// Validate table text; every problem is reported with its line.
    pub fn parse(path: &Path, text: &str) -> Result<TierTable, ConfigErrors> {
        let mut errors = Vec::new();
        let err = |line: Option<usize>, message: String| ConfigError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start));
                return Err(ConfigErrors(vec![err(line, e.message().to_string())]));
            }
        };
        let mut tiers: BTreeMap<Tier, TierInfo> = Tier::ALL
            .into_iter()
            .map(|t| {
                (
                    t,
                    TierInfo {
                        doc: String::new(),
                        reply: default_reply(t),
                        self_service: t != Tier::LSpam40,
                        complaint_period: default_complaint_period(t),
                    },
                )
            })
            .collect();
        for (name, spanned) in raw.tiers {
            let line = line_of(text, spanned.span().start);
            let tier = match name.parse::<Tier>() {
                Ok(t) => t,
                Err(e) => {
                    errors.push(err(Some(line), format!("[tiers.{name}]: {e}")));
                    continue;
                }
            };
            let raw_tier = spanned.into_inner();
            let info = tiers.get_mut(&tier).expect("every tier has an entry");
            if let Some(doc) = raw_tier.doc {
                info.doc = doc;
            }
            if let Some(reply) = raw_tier.reply {
                match check_reply(&reply, tier) {
                    Ok(()) => info.reply = reply,
                    Err(e) => errors.push(err(Some(line), format!("[tiers.{name}] {e}"))),
                }
            }
            if let Some(period) = raw_tier.complaint_period {
                let parsed = crate::config::parse_duration(&period).and_then(|d| {
                    chrono::Duration::from_std(d).map_err(|_| format!("{period:?} is too long"))
                });
                match parsed {
                    Ok(d) if tier.family() == Family::Suspension => info.complaint_period = d,
                    Ok(_) => errors.push(err(
                        Some(line),
                        format!(
                            "[tiers.{name}] complaint_period applies to suspension tiers only ({name} asks for a password change)"
                        ),
                    )),
                    Err(e) => errors.push(err(
                        Some(line),
                        format!("[tiers.{name}] complaint_period: {e}"),
                    )),
                }
            }
            if let Some(self_service) = raw_tier.self_service {
                if tier == Tier::LSpam40 && self_service {
                    errors.push(err(
                        Some(line),
                        "L-SPAM40 is mass abuse and can never be unblocked by self-service".into(),
                    ));
                } else {
                    info.self_service = self_service;
                }
            }
        }
        for (name, symbols) in &raw.sets {
            if symbols.is_empty() {
                errors.push(err(None, format!("[sets] {name} is empty")));
            }
        }
        let mut rules = Vec::new();
        for spanned in raw.rule {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let tier = match r.tier.parse::<Tier>() {
                Ok(t) => t,
                Err(e) => {
                    errors.push(err(Some(line), format!("[[rule]] tier: {e}")));
                    continue;
                }
            };
            if let Some(ratio) = r.score {
                if !ratio.is_finite() || ratio < 0.0 {
                    errors.push(err(
                        Some(line),
                        format!(
                            "[[rule]] score must be a ratio of the reject score >= 0, got {ratio}"
                        ),
                    ));
                }
            }
            if let Some(set) = &r.symbol_in {
                if !raw.sets.contains_key(set) {
                    errors.push(err(
                        Some(line),
                        format!("[[rule]] symbol_in names {set:?}, which is not a list in [sets]"),
                    ));
                }
            }
            let counts: Vec<(Count, u64)> = [
                (Count::SpamLastHour, r.spam_last_hour),
                (Count::SpamLastDay, r.spam_last_day),
                (Count::OffencesSinceReset, r.offences_since_reset),
                (Count::LimitHitsLastDay, r.limit_hits_last_day),
                (Count::Suspensions90d, r.suspensions_90d),
                (Count::Resets90d, r.resets_90d),
                (Count::RefusalsLastHour, r.refusals_last_hour),
            ]
            .into_iter()
            .filter_map(|(c, v)| v.map(|v| (c, v)))
            .collect();
            if r.score.is_none() && r.symbol_in.is_none() && counts.is_empty() {
                errors.push(err(
                    Some(line),
                    "[[rule]] has no condition: it would refuse every message".into(),
                ));
            }
            if let Some(reply) = &r.reply {
                if let Err(e) = check_reply(reply, tier) {
                    errors.push(err(Some(line), format!("[[rule]] {e}")));
                }
            }
            rules.push(Rule {
                tier,
                line,
                score_ratio: r.score,
                symbol_set: r.symbol_in,
                counts,
                reply: r.reply,
            });
        }
        if errors.is_empty() {
            Ok(TierTable {
                file: path.to_path_buf(),
                sets: raw.sets,
                tiers,
                rules,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The first rule that holds, or `None`: the message is accepted.
    pub fn evaluate(&self, message: &Scored<'_>, history: &History) -> Option<TierDecision> {
        let (index, rule, symbol) = self.rules.iter().enumerate().find_map(|(i, rule)| {
            // Repeated refusals escalate only on a message that is refused.
            if !message.refused
                && rule
                    .counts
                    .iter()
                    .any(|(c, _)| *c == Count::RefusalsLastHour)
            {
                return None;
            }
            if rule
                .score_ratio
                .is_some_and(|ratio| message.score < ratio * message.reject_score)
            {
                return None;
            }
            let symbol = match &rule.symbol_set {
                Some(set) => {
                    let list = &self.sets[set];
                    Some(
                        *message
                            .symbols
                            .iter()
                            .find(|s| list.iter().any(|l| l == *s))?,
                    )
                }
                None => None,
            };
            rule.counts
                .iter()
                .all(|&(count, min)| count.value(history, message) >= min)
                .then_some((i, rule, symbol))
        })?;
        // Only the matching rule is explained (no formatting for the others).
        let mut why = Vec::new();
        if let Some(ratio) = rule.score_ratio {
            why.push(format!(
                "score {:.2} >= {ratio} x {:.2}",
                message.score, message.reject_score
            ));
        }
        if let (Some(symbol), Some(set)) = (symbol, &rule.symbol_set) {
            why.push(format!("symbol {symbol} in {set}"));
        }
        for &(count, min) in &rule.counts {
            why.push(format!(
                "{} {} >= {min}",
                count.name(),
                count.value(history, message)
            ));
        }
        let file = self
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = &self.tiers[&rule.tier];
        Some(TierDecision {
            tier: rule.tier,
            family: rule.tier.family(),
            rule_index: index,
            rule_line: rule.line,
            self_service: info.self_service,
            explanation: format!(
                "rule #{} ({file}:{}) {}: {}",
                index + 1,
                rule.line,
                rule.tier,
                why.join("; ")
            ),
        })
    }

    /// The reply refusing the message a rule tiered: the rule's own
    /// reason when it has one, else its tier's.
    pub fn reply_for(&self, decision: &TierDecision, report_id: &str) -> SmtpReply {
        match self
            .rules
            .get(decision.rule_index)
            .and_then(|r| r.reply.as_deref())
        {
            Some(template) => self.render_reply(template, decision.tier, report_id),
            None => self.reply(decision.tier, report_id),
        }
    }

    /// The reply refusing a message of this tier.
    pub fn reply(&self, tier: Tier, report_id: &str) -> SmtpReply {
        self.render_reply(&self.tiers[&tier].reply, tier, report_id)
    }

    fn render_reply(&self, template: &str, tier: Tier, report_id: &str) -> SmtpReply {
        let text = render(template, tier, report_id);
        SmtpReply::parse(&text).unwrap_or_else(|_| {
            // Only reachable with a report id that breaks the line (never a
            // hex id); fall back to the default wording without it.
            SmtpReply::parse(&render(&default_reply(tier), tier, "unknown"))
                .expect("default reply is valid")
        })
    }

    /// How long after a suspension under `tier` the customer may unblock
    /// it themselves; `None` when the tier is never self-service.
    pub fn self_service_after(&self, tier: Tier) -> Option<chrono::Duration> {
        let info = &self.tiers[&tier];
        info.self_service.then_some(info.complaint_period)
    }

    pub fn info(&self, tier: Tier) -> &TierInfo {
        &self.tiers[&tier]
    }

    /// How many `[[rule]]` entries there are.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Symbols listed in `[sets]`, for checking against the scoring symbols.
    pub fn set_symbols(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sets
            .iter()
            .flat_map(|(set, list)| list.iter().map(move |s| (set.as_str(), s.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(score: f64, symbols: &[&str], h: History) -> Option<Tier> {
        let t = TierTable::builtin();
        t.evaluate(
            &Scored {
                score,
                reject_score: 15.0,
                symbols,
                refused: false,
            },
            &h,
        )
        .map(|d| d.tier)
    }

    #[test]
    fn builtin_loads_and_documents_every_tier() {
        let t = TierTable::builtin();
        for tier in Tier::ALL {
            assert!(!t.info(tier).doc.is_empty(), "{tier} undocumented");
        }
        assert!(!t.info(Tier::LSpam40).self_service);
    }

    #[test]
    fn below_the_line_is_no_tier() {
        assert_eq!(eval(14.9, &[], History::default()), None);
    }

    #[test]
    fn single_borderline_message_is_lowest_tier() {
        assert_eq!(eval(16.0, &[], History::default()), Some(Tier::LSpam00));
    }

    #[test]
    fn explanation_names_rule_and_line() {
        let t = TierTable::builtin();
        let d = t
            .evaluate(
                &Scored {
                    score: 20.0,
                    reject_score: 15.0,
                    symbols: &[],
                    refused: false,
                },
                &History {
                    resets_90d: 1,
                    ..History::default()
                },
            )
            .unwrap();
        assert_eq!(d.tier, Tier::LSpam20);
        assert!(d.explanation.contains("tiers.toml:"), "{}", d.explanation);
        assert!(
            d.explanation.contains("resets_90d 1 >= 1"),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn complaint_periods_default_per_tier_and_are_checked() {
        let t = TierTable::builtin();
        assert_eq!(
            t.self_service_after(Tier::LSpam20),
            Some(chrono::Duration::hours(24))
        );
        assert_eq!(
            t.self_service_after(Tier::LSpam31),
            Some(chrono::Duration::hours(72))
        );
        assert_eq!(t.self_service_after(Tier::LSpam40), None);
        let text = "[tiers.L-SPAM20]\ncomplaint_period = \"2d\"\n[[rule]]\ntier = \"L-SPAM00\"\nscore = 1.0\n";
        let t = TierTable::parse(Path::new("t.toml"), text).unwrap();
        assert_eq!(
            t.self_service_after(Tier::LSpam20),
            Some(chrono::Duration::days(2))
        );
        let text = "[tiers.L-SPAM10]\ncomplaint_period = \"1d\"\n[tiers.L-SPAM30]\ncomplaint_period = \"soon\"\n";
        let e = TierTable::parse(Path::new("t.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:1:") && e.contains("suspension tiers only"),
            "{e}"
        );
        assert!(
            e.contains("t.toml:3:") && e.contains("complaint_period"),
            "{e}"
        );
    }

    #[test]
    fn a_rule_may_name_its_own_reason() {
        let t = TierTable::builtin();
        let h = History {
            limit_hits_last_day: 1,
            ..History::default()
        };
        let scored = Scored {
            score: 16.0,
            reject_score: 15.0,
            symbols: &[],
            refused: false,
        };
        let d = t.evaluate(&scored, &h).unwrap();
        assert_eq!(d.tier, Tier::LSpam11);
        let rule = t.reply_for(&d, "0123456789abcdef").to_string();
        assert!(rule.contains("over the sending limits"), "{rule}");
        let tier = t.reply(Tier::LSpam11, "0123456789abcdef").to_string();
        assert!(!tier.contains("dangerous"), "{tier}");
        let bad = "[[rule]]\ntier = \"L-SPAM00\"\nscore = 1.0\nreply = \"250 fine\"\n";
        let e = TierTable::parse(Path::new("t.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:1:") && e.contains("5xx"), "{e}");
    }

    #[test]
    fn errors_carry_lines() {
        let text = "[tiers.L-SPAM99]\ndoc = \"x\"\n\n[[rule]]\ntier = \"L-SPAM00\"\nsymbol_in = \"nope\"\n\n[tiers.L-SPAM40]\nself_service = true\n[tiers.L-SPAM00]\nreply = \"250 ok\"\n";
        let e = TierTable::parse(Path::new("t.toml"), text).unwrap_err();
        let s = e.to_string();
        assert_eq!(e.0.len(), 4, "{s}");
        assert!(s.contains("t.toml:1:"), "{s}");
        assert!(s.contains("t.toml:4:"), "{s}");
        assert!(s.contains("self-service"), "{s}");
        assert!(s.contains("250"), "{s}");
    }
}
