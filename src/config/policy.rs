//! `[limits]`, `[notify]` and `[accounts]`: volume limits, where
//! notifications go, the accounts directory and the unblock rule.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::dayzone::{parse_offset, DayZone};
use super::Errors;
use crate::smtp::SmtpReply;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_rcpts_per_message: Option<toml::Spanned<i64>>,
    max_messages: Option<toml::Spanned<i64>>,
    rate_window: Option<toml::Spanned<String>>,
    prison: Option<toml::Spanned<String>>,
    daily_external_rcpts: Option<toml::Spanned<i64>>,
    repeat_offender_daily: Option<toml::Spanned<i64>>,
    repeat_offender_after: Option<toml::Spanned<i64>>,
    repeat_offender_period: Option<toml::Spanned<String>>,
    max_message_mb: Option<toml::Spanned<i64>>,
    large_message_mb: Option<toml::Spanned<i64>>,
    large_message_rcpts: Option<toml::Spanned<i64>>,
    day_utc_offset: Option<toml::Spanned<String>>,
    day_timezone: Option<toml::Spanned<String>>,
    hosted_domains: Option<Vec<String>>,
    reply_too_many_rcpts: Option<toml::Spanned<String>>,
    reply_rate: Option<toml::Spanned<String>>,
    reply_daily: Option<toml::Spanned<String>>,
    reply_size: Option<toml::Spanned<String>>,
}

/// `[limits]`: per-account volume limits (defaults from the providers'
/// pages).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Recipients per message; the next RCPT gets `reply_too_many_rcpts`.
    pub max_rcpts_per_message: u64,
    /// Messages per `rate_window`; beyond it the account goes to prison.
    pub max_messages: u64,
    pub rate_window: Duration,
    /// How long everything from an account over the rate is temp-refused.
    pub prison: Duration,
    /// Distinct external recipients per local day.
    pub daily_external_rcpts: u64,
    /// The lowered daily budget of a repeat offender.
    pub repeat_offender_daily: u64,
    /// Offences (tiers, prison, daily-limit hits) within
    /// `repeat_offender_period` that make an account a repeat offender.
    pub repeat_offender_after: u64,
    pub repeat_offender_period: Duration,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u64,
    /// A message larger than this (bytes, as received)…
    pub large_message_bytes: u64,
    /// …may have at most this many recipients.
    pub large_message_rcpts: u64,
    /// The local day the daily budget resets in (00:00 local): a named
    /// time zone follows daylight saving time, a fixed offset does not.
    pub day_zone: DayZone,
    /// Domains hosted here (lower-case); recipients elsewhere are external.
    pub hosted_domains: Vec<String>,
    pub reply_too_many_rcpts: SmtpReply,
    pub reply_rate: SmtpReply,
    pub reply_daily: SmtpReply,
    pub reply_size: SmtpReply,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_rcpts_per_message: 150,
            max_messages: 250,
            rate_window: Duration::from_secs(20 * 60),
            prison: Duration::from_secs(20 * 60),
            daily_external_rcpts: 100,
            repeat_offender_daily: 20,
            repeat_offender_after: 2,
            repeat_offender_period: Duration::from_secs(30 * 86_400),
            max_message_bytes: 30 * 1024 * 1024,
            large_message_bytes: 10 * 1024 * 1024,
            large_message_rcpts: 10,
            day_zone: DayZone::default(),
            hosted_domains: Vec::new(),
            reply_too_many_rcpts: SmtpReply::parse("452 4.5.3 Too many recipients").expect("valid"),
            reply_rate: SmtpReply::parse(
                "451 4.7.1 Too many messages in a short time, policy violation; try again later",
            )
            .expect("valid"),
            reply_daily: SmtpReply::parse(
                "550 5.7.1 Fair usage limit: daily limit of external recipients reached",
            )
            .expect("valid"),
            reply_size: SmtpReply::parse("552 5.3.4 Message size exceeds fixed maximum")
                .expect("valid"),
        }
    }
}

/// A language of the customer's e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    It,
    Fr,
    El,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::It => "it",
            Language::Fr => "fr",
            Language::El => "el",
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    language: Option<Language>,
    language_for: Option<std::collections::BTreeMap<String, Language>>,
    webhook_url: Option<toml::Spanned<String>>,
    command: Option<toml::Spanned<Vec<String>>>,
    smtp_relay: Option<toml::Spanned<String>>,
    smtp_from: Option<String>,
    smtp_helo: Option<String>,
    email_subject: Option<String>,
    email_template: Option<String>,
    timeout: Option<toml::Spanned<String>>,
    retry_initial: Option<toml::Spanned<String>>,
    retry_max: Option<toml::Spanned<String>>,
    max_attempts: Option<toml::Spanned<i64>>,
    outbox_file: Option<String>,
}

/// Host and port of the SMTP relay notification e-mails go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
}

/// `[notify]`: where account events go (the provider's integration and
/// the customer's contact address).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// `http://host:port/path`: events are POSTed as JSON.
    pub webhook_url: Option<String>,
    /// argv of a command that gets each event as JSON on stdin.
    pub command: Option<Vec<String>>,
    /// Suspension e-mails to the account's contact go through this relay.
    pub smtp_relay: Option<SmtpRelay>,
    pub smtp_from: String,
    pub smtp_helo: String,
    /// Subject template (see README for placeholders).
    pub email_subject: String,
    /// A file with the body template; `None` uses the built-in one.
    pub email_template: Option<PathBuf>,
    /// Budget of one delivery attempt.
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// After this many failed attempts an event is given up (and logged).
    pub max_attempts: u32,
    /// The outbox file used when no database outbox is wired.
    pub outbox_file: Option<PathBuf>,
    /// The language of the suspension e-mail (`en`, `it`, `fr`, `el`)…
    pub language: Language,
    /// …per domain or account (lower-case keys).
    pub language_for: std::collections::BTreeMap<String, Language>,
}

impl NotifyConfig {
    /// The language of `account`'s e-mail.
    pub fn language_of(&self, account: &str) -> Language {
        per_account(&self.language_for, account).unwrap_or(self.language)
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            command: None,
            smtp_relay: None,
            smtp_from: "abuse@localhost".into(),
            smtp_helo: "localhost".into(),
            email_subject: "[{tier}] Outgoing mail of {account} suspended".into(),
            email_template: None,
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 100,
            outbox_file: None,
            language: Language::En,
            language_for: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccounts {
    directory_csv: Option<String>,
    self_service_every_days: Option<toml::Spanned<i64>>,
}

/// `[accounts]`
#[derive(Debug, Clone, PartialEq)]
pub struct AccountsConfig {
    /// CSV with login, contact, domain, sensitivity, overrides, identities.
    pub directory_csv: Option<PathBuf>,
    /// Self-service unblock at most once per this many days.
    pub self_service_every_days: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            directory_csv: None,
            self_service_every_days: 90,
        }
    }
}

/// Whether a message policy refuses the message or only adds its symbol's
/// score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    Refuse,
    Score,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessagePolicy {
    dangerous_attachments: Option<Enforce>,
    sender_mismatch: Option<Enforce>,
    sender_mismatch_for: Option<std::collections::BTreeMap<String, Enforce>>,
}

/// `[message_policy]`: the providers' rules that refuse a message whatever
/// its score. A refusal names the rule in its reply and is not an account
/// action by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePolicyConfig {
    /// Attachments with a dangerous extension or executable content, also
    /// inside archives.
    pub dangerous_attachments: Enforce,
    /// Sending as an address the login may not use (MAIL FROM, header From).
    pub sender_mismatch: Enforce,
    /// Per account (`login`) or domain (`example.com`): overrides
    /// `sender_mismatch`. Keys are lower-case.
    pub sender_mismatch_for: std::collections::BTreeMap<String, Enforce>,
}

impl Default for MessagePolicyConfig {
    fn default() -> Self {
        MessagePolicyConfig {
            dangerous_attachments: Enforce::Refuse,
            sender_mismatch: Enforce::Refuse,
            sender_mismatch_for: Default::default(),
        }
    }
}

impl MessagePolicyConfig {
    /// The sender-mismatch rule for `account`: its own entry, else its
    /// domain's, else the default.
    pub fn sender_mismatch_for(&self, account: &str) -> Enforce {
        per_account(&self.sender_mismatch_for, account).unwrap_or(self.sender_mismatch)
    }
}

/// The entry for `account` (a login, lower-case keys), else for its domain.
pub fn per_account<T: Copy>(
    map: &std::collections::BTreeMap<String, T>,
    account: &str,
) -> Option<T> {
    if map.is_empty() {
        return None;
    }
    let account = account.trim().to_ascii_lowercase();
    let domain = account.rsplit_once('@').map(|(_, d)| d);
    map.get(&account)
        .or_else(|| domain.and_then(|d| map.get(d)))
        .copied()
}

/// Whether outscore acts on what it finds, or only records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse, tier and act on accounts.
    #[default]
    Enforce,
    /// Score, report and add headers, but refuse nothing and change no
    /// account; the tier and reply it would have given are recorded.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }
}

/// `mode` and `[mode_for]`: the mode in force per account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModeConfig {
    pub default: Mode,
    /// Per domain or account (lower-case), overriding `default`.
    pub per_account: std::collections::BTreeMap<String, Mode>,
}

impl ModeConfig {
    pub fn for_account(&self, account: &str) -> Mode {
        per_account(&self.per_account, account).unwrap_or(self.default)
    }
}

/// Lower-case keys without a leading `@`.
pub(super) fn account_keys<T>(
    map: std::collections::BTreeMap<String, T>,
) -> std::collections::BTreeMap<String, T> {
    map.into_iter()
        .map(|(k, v)| (k.trim().trim_start_matches('@').to_ascii_lowercase(), v))
        .collect()
}

pub(super) fn validate_message_policy(
    raw: RawMessagePolicy,
    into: &mut MessagePolicyConfig,
    _errors: &mut Errors<'_>,
) {
    if let Some(e) = raw.dangerous_attachments {
        into.dangerous_attachments = e;
    }
    if let Some(e) = raw.sender_mismatch {
        into.sender_mismatch = e;
    }
    if let Some(map) = raw.sender_mismatch_for {
        into.sender_mismatch_for = account_keys(map);
    }
}

fn reply(
    errors: &mut Errors<'_>,
    value: Option<toml::Spanned<String>>,
    key: &str,
    into: &mut SmtpReply,
) {
    let Some(value) = value else { return };
    match SmtpReply::parse(value.get_ref()) {
        Ok(r) => *into = r,
        Err(e) => errors.push(Some(value.span().start), format!("{key}: {e}")),
    }
}

pub(super) fn validate_limits(raw: RawLimits, into: &mut LimitsConfig, errors: &mut Errors<'_>) {
    let big = 1_000_000_000;
    if let Some(n) = errors.positive(
        raw.max_rcpts_per_message,
        "limits.max_rcpts_per_message",
        big,
    ) {
        into.max_rcpts_per_message = n as u64;
    }
    if let Some(n) = errors.positive(raw.max_messages, "limits.max_messages", big) {
        into.max_messages = n as u64;
    }
    errors.duration(raw.rate_window, "limits.rate_window", &mut into.rate_window);
    errors.duration(raw.prison, "limits.prison", &mut into.prison);
    if let Some(n) = errors.positive(raw.daily_external_rcpts, "limits.daily_external_rcpts", big) {
        into.daily_external_rcpts = n as u64;
    }
    if let Some(n) = errors.positive(
        raw.repeat_offender_daily,
        "limits.repeat_offender_daily",
        big,
    ) {
        into.repeat_offender_daily = n as u64;
    }
    if let Some(n) = errors.positive(
        raw.repeat_offender_after,
        "limits.repeat_offender_after",
        big,
    ) {
        into.repeat_offender_after = n as u64;
    }
    errors.duration(
        raw.repeat_offender_period,
        "limits.repeat_offender_period",
        &mut into.repeat_offender_period,
    );
    if let Some(n) = errors.positive(raw.max_message_mb, "limits.max_message_mb", 1 << 20) {
        into.max_message_bytes = n as u64 * 1024 * 1024;
    }
    if let Some(n) = errors.positive(raw.large_message_mb, "limits.large_message_mb", 1 << 20) {
        into.large_message_bytes = n as u64 * 1024 * 1024;
    }
    if let Some(n) = errors.positive(raw.large_message_rcpts, "limits.large_message_rcpts", big) {
        into.large_message_rcpts = n as u64;
    }
    match (raw.day_timezone, raw.day_utc_offset) {
        (Some(_), Some(offset)) => errors.push(
            Some(offset.span().start),
            "limits: set day_timezone or day_utc_offset, not both".to_string(),
        ),
        (Some(zone), None) => match DayZone::parse(zone.get_ref()) {
            Ok(z) => into.day_zone = z,
            Err(e) => errors.push(Some(zone.span().start), format!("limits.day_timezone: {e}")),
        },
        (None, Some(offset)) => match parse_offset(offset.get_ref()) {
            Ok(o) => into.day_zone = DayZone::Fixed(o),
            Err(e) => errors.push(
                Some(offset.span().start),
                format!("limits.day_utc_offset: {e}"),
            ),
        },
        (None, None) => {}
    }
    if let Some(domains) = raw.hosted_domains {
        into.hosted_domains = domains
            .into_iter()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
    }
    reply(
        errors,
        raw.reply_too_many_rcpts,
        "limits.reply_too_many_rcpts",
        &mut into.reply_too_many_rcpts,
    );
    reply(
        errors,
        raw.reply_rate,
        "limits.reply_rate",
        &mut into.reply_rate,
    );
    reply(
        errors,
        raw.reply_daily,
        "limits.reply_daily",
        &mut into.reply_daily,
    );
    reply(
        errors,
        raw.reply_size,
        "limits.reply_size",
        &mut into.reply_size,
    );
}

pub(super) fn validate_notify(raw: RawNotify, into: &mut NotifyConfig, errors: &mut Errors<'_>) {
    if let Some(language) = raw.language {
        into.language = language;
    }
    if let Some(map) = raw.language_for {
        into.language_for = account_keys(map);
    }
    if let Some(url) = raw.webhook_url {
        if url.get_ref().starts_with("http://") {
            into.webhook_url = Some(url.into_inner());
        } else {
            errors.push(
                Some(url.span().start),
                format!(
                    "notify.webhook_url must be an http:// URL (put a local TLS proxy in front for https), got {:?}",
                    url.get_ref()
                ),
            );
        }
    }
    if let Some(command) = raw.command {
        if command.get_ref().is_empty() || command.get_ref()[0].is_empty() {
            errors.push(
                Some(command.span().start),
                "notify.command needs a program".into(),
            );
        } else {
            into.command = Some(command.into_inner());
        }
    }
    if let Some(relay) = raw.smtp_relay {
        let text = relay.get_ref().trim();
        let parsed = match text.rsplit_once(':') {
            Some((host, port)) => port.parse::<u16>().ok().map(|p| (host, p)),
            None => Some((text, 25)),
        };
        match parsed {
            Some((host, port)) if !host.is_empty() => {
                into.smtp_relay = Some(SmtpRelay {
                    host: host.trim_start_matches('[').trim_end_matches(']').into(),
                    port,
                })
            }
            _ => errors.push(
                Some(relay.span().start),
                format!("notify.smtp_relay must be host or host:port, got {text:?}"),
            ),
        }
    }
    if let Some(from) = raw.smtp_from {
        into.smtp_from = from;
    }
    if let Some(helo) = raw.smtp_helo {
        into.smtp_helo = helo;
    }
    if let Some(subject) = raw.email_subject {
        into.email_subject = subject;
    }
    into.email_template = raw.email_template.map(PathBuf::from);
    errors.duration(raw.timeout, "notify.timeout", &mut into.timeout);
    errors.duration(
        raw.retry_initial,
        "notify.retry_initial",
        &mut into.retry_initial,
    );
    errors.duration(raw.retry_max, "notify.retry_max", &mut into.retry_max);
    if let Some(n) = errors.positive(raw.max_attempts, "notify.max_attempts", 1_000_000) {
        into.max_attempts = n as u32;
    }
    into.outbox_file = raw.outbox_file.map(PathBuf::from);
}

pub(super) fn validate_accounts(
    raw: RawAccounts,
    into: &mut AccountsConfig,
    errors: &mut Errors<'_>,
) {
    into.directory_csv = raw.directory_csv.map(PathBuf::from);
    if let Some(n) = errors.positive(
        raw.self_service_every_days,
        "accounts.self_service_every_days",
        3650,
    ) {
        into.self_service_every_days = n as u32;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::FixedOffset;

    use super::super::Config;
    use super::*;

    #[test]
    fn defaults_are_the_seeds_numbers() {
        let c = Config::parse(Path::new("o.toml"), "").unwrap();
        assert_eq!(c.limits.max_rcpts_per_message, 150);
        assert_eq!(c.limits.max_messages, 250);
        assert_eq!(c.limits.rate_window, Duration::from_secs(1200));
        assert_eq!(c.limits.daily_external_rcpts, 100);
        assert_eq!(c.limits.max_message_bytes, 30 * 1024 * 1024);
        assert_eq!(c.accounts.self_service_every_days, 90);
    }

    #[test]
    fn limits_notify_accounts_parse_with_lines() {
        let text = r#"
[limits]
max_rcpts_per_message = 10
day_utc_offset = "+02:00"
hosted_domains = ["Example.COM"]
reply_daily = "250 Fair Usage Limit"
[notify]
webhook_url = "https://x"
smtp_relay = "127.0.0.1:2525"
[accounts]
self_service_every_days = 0
"#;
        let e = Config::parse(Path::new("o.toml"), text).unwrap_err();
        let s = e.to_string();
        assert_eq!(e.0.len(), 3, "{s}");
        assert!(s.contains("o.toml:6:"), "{s}");
        assert!(s.contains("o.toml:8:"), "{s}");
        assert!(s.contains("o.toml:11:"), "{s}");
        let ok = text
            .replace("250 Fair Usage Limit", "550 5.7.1 Fair usage")
            .replace("https", "http")
            .replace("= 0", "= 30");
        let c = Config::parse(Path::new("o.toml"), &ok).unwrap();
        assert_eq!(c.limits.max_rcpts_per_message, 10);
        assert_eq!(
            c.limits.day_zone,
            DayZone::Fixed(FixedOffset::east_opt(7200).unwrap())
        );
        assert_eq!(c.limits.hosted_domains, vec!["example.com"]);
        assert_eq!(
            c.notify.smtp_relay,
            Some(SmtpRelay {
                host: "127.0.0.1".into(),
                port: 2525
            })
        );
        assert_eq!(c.accounts.self_service_every_days, 30);
    }

    #[test]
    fn day_timezone_is_named_or_offset_not_both() {
        let c = Config::parse(
            Path::new("o.toml"),
            "[limits]\nday_timezone = \"Europe/Rome\"\n",
        )
        .unwrap();
        assert_eq!(c.limits.day_zone, DayZone::parse("Europe/Rome").unwrap());
        let e = Config::parse(
            Path::new("o.toml"),
            "[limits]\nday_timezone = \"Europe/Rome\"\nday_utc_offset = \"+01:00\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("o.toml:3:") && e.contains("not both"), "{e}");
        let e = Config::parse(
            Path::new("o.toml"),
            "[limits]\nday_timezone = \"Mars/Olympus\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("o.toml:2:") && e.contains("limits.day_timezone"),
            "{e}"
        );
    }
}
