//! Configuration: `outscore.toml` read raw (serde, unknown keys refused; each
//! refused entry is reported and blanked, and the rest read again), then
//! validated into [`Config`], collecting every problem with its file:line so
//! `outscore check` can list them all at once. Every key is optional; the
//! defaults are documented in README.md and here. Knows nothing of sockets.

mod dayzone;
mod duration;
mod policy;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use dayzone::{parse_offset, DayZone};
pub use duration::{human_duration, parse_duration};
use policy::{
    validate_accounts, validate_limits, validate_message_policy, validate_notify, RawAccounts,
    RawLimits, RawMessagePolicy, RawNotify,
};
pub use policy::{
    AccountsConfig, Enforce, Language, LimitsConfig, MessagePolicyConfig, Mode, ModeConfig,
    NotifyConfig, SmtpRelay,
};

use crate::diag::{line_of, read_file, ConfigError, ConfigErrors};
use crate::milter::address::ListenAddr;
use crate::rules::identity::AlignMode;

/// Default milter listen address (Postfix syntax). Its port, like the
/// review interface's, is one no well-known mail filter uses, so outscore
/// starts with its defaults beside Rspamd (11332-11335), SpamAssassin's spamd
/// (783), amavis (10024-10026), clamd (3310), OpenDKIM (8891), OpenDMARC
/// (8893) or Postgrey (10023); see [`OTHER_FILTER_PORTS`].
pub const DEFAULT_LISTEN: &str = "inet:127.0.0.1:7522";

/// Default address of the review interface (`[http] listen`): loopback.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7523);

/// TCP ports that other mail filters and policy services listen on by
/// default or in their documented set-ups; outscore's defaults avoid them.
pub const OTHER_FILTER_PORTS: &[(u16, &str)] = &[
    (783, "SpamAssassin spamd"),
    (3310, "ClamAV clamd"),
    (7357, "clamav-milter (documented example)"),
    (8080, "Stalwart web admin"),
    (8891, "OpenDKIM"),
    (8892, "dkimpy-milter"),
    (8893, "OpenDMARC"),
    (10023, "Postgrey"),
    (10024, "amavis"),
    (10025, "amavis reinjection (Postfix)"),
    (10026, "amavis ORIGINATING"),
    (10040, "postfwd"),
    (11332, "Rspamd proxy (milter)"),
    (11333, "Rspamd normal worker"),
    (11334, "Rspamd controller"),
    (11335, "Rspamd fuzzy storage"),
    (12340, "Dovecot quota-status"),
    (12525, "policyd-weight"),
];

/// What to answer when scoring cannot produce a verdict in time (overrun,
/// error or panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailSafe {
    /// Let the message through with a header saying the scan was skipped.
    #[default]
    Accept,
    /// Ask the client to try again later (451 4.7.1).
    Tempfail,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    data_dir: Option<toml::Spanned<String>>,
    mode: Option<Mode>,
    mode_for: Option<std::collections::BTreeMap<String, Mode>>,
    #[serde(default)]
    milter: RawMilter,
    #[serde(default)]
    scoring: RawScoring,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    spf: RawSpf,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    accounts: RawAccounts,
    #[serde(default)]
    message_policy: RawMessagePolicy,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
    listen: Option<toml::Spanned<String>>,
    session_hours: Option<toml::Spanned<i64>>,
    login_failures_per_ip: Option<toml::Spanned<i64>>,
    login_failures_per_user: Option<toml::Spanned<i64>>,
    login_failure_window: Option<toml::Spanned<String>>,
    trusted_proxies: Option<toml::Spanned<Vec<String>>>,
    secure_cookie: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMilter {
    listen: Option<toml::Spanned<Vec<String>>>,
    max_connections: Option<toml::Spanned<i64>>,
    max_frame_bytes: Option<toml::Spanned<i64>>,
    scan_timeout: Option<toml::Spanned<String>>,
    progress_interval: Option<toml::Spanned<String>>,
    idle_timeout: Option<toml::Spanned<String>>,
    shutdown_grace: Option<toml::Spanned<String>>,
    fail_safe: Option<FailSafe>,
    header_prefix: Option<toml::Spanned<String>>,
    add_headers: Option<bool>,
    allow_from: Option<toml::Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    scores_dir: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    database_url: Option<toml::Spanned<String>>,
    retention_hours: Option<toml::Spanned<i64>>,
    spool_dir: Option<String>,
    audit_retention_days: Option<toml::Spanned<i64>>,
    queue_capacity: Option<toml::Spanned<i64>>,
    write_timeout: Option<toml::Spanned<String>>,
    purge_interval: Option<toml::Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpf {
    enabled: Option<bool>,
    egress_ips: Option<toml::Spanned<Vec<String>>>,
    check_client_ip: Option<bool>,
    lookup_timeout: Option<toml::Spanned<String>>,
    budget: Option<toml::Spanned<String>>,
    resolver: Option<toml::Spanned<String>>,
    cache_entries: Option<toml::Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    accounts_file: Option<String>,
    own_domain_default: Option<bool>,
    alignment: Option<AlignMode>,
    attribution: Option<toml::Spanned<LocalAttribution>>,
    attribution_map: Option<toml::Spanned<BTreeMap<String, String>>>,
}

/// `[spf]`: SPF and DMARC-policy lookups over DNS.
#[derive(Debug, Clone, PartialEq)]
pub struct SpfConfig {
    /// `false` skips every DNS lookup (no SPF or DMARC symbols).
    pub enabled: bool,
    /// The relay's public egress addresses: what recipients' servers see and
    /// check SPF against. Empty: SPF is only checked for the client IP, if
    /// `check_client_ip` is on.
    pub egress_ips: Vec<IpAddr>,
    /// Also check the connecting client's IP (off by default: customers'
    /// own PCs are not in their domain's SPF record, the relay is).
    pub check_client_ip: bool,
    /// Timeout of one DNS query.
    pub lookup_timeout: Duration,
    /// Time allowed for all lookups of one message (SPF for every IP and the
    /// DMARC policy); when spent the result is temperror. Default 4 s, or
    /// half of `milter.scan_timeout` if that is less; must stay below it.
    pub budget: Duration,
    /// `ip:port` of the DNS server; `None` reads `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
    /// Answers kept in the shared TTL cache.
    pub cache_entries: usize,
}

impl Default for SpfConfig {
    fn default() -> Self {
        SpfConfig {
            enabled: true,
            egress_ips: Vec::new(),
            check_client_ip: false,
            lookup_timeout: Duration::from_secs(2),
            budget: Duration::from_secs(4),
            resolver: None,
            cache_entries: 10_000,
        }
    }
}

/// How mail without a SASL login (`sendmail` from websites, arriving through
/// `non_smtpd_milters`) is attributed to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LocalAttribution {
    /// Not attributed: no login rules, no account limits.
    None,
    /// The account is the envelope sender's domain.
    #[default]
    SenderDomain,
    /// `attribution_map`: envelope sender address, then its domain, → account.
    Map,
}

/// `[identity]`: who may send as whom.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityConfig {
    /// TOML file of accounts and their allowed identities; `None`: every
    /// login may only send as itself (and its own domain if
    /// `own_domain_default`).
    pub accounts_file: Option<PathBuf>,
    /// Whether a login not listed in the accounts file may send as any
    /// address of its own domain. Default `false` (the seeds' rule: the
    /// login itself or an authorised alias).
    pub own_domain_default: bool,
    /// Alignment mode when the From domain's DMARC record sets none.
    pub alignment: AlignMode,
    pub attribution: LocalAttribution,
    /// Lower-cased address or domain → account.
    pub attribution_map: BTreeMap<String, String>,
}

/// `[milter]`: the listeners and how sessions behave.
#[derive(Debug, Clone, PartialEq)]
pub struct MilterConfig {
    /// Addresses to listen on, Postfix syntax (`inet:host:port`, `unix:/path`).
    pub listen: Vec<ListenAddr>,
    /// Concurrent milter connections; more wait in the accept queue.
    pub max_connections: usize,
    /// Largest milter packet accepted; bigger ones close the connection.
    pub max_frame_bytes: usize,
    /// Budget for scoring one message at end-of-message.
    pub scan_timeout: Duration,
    /// How often SMFIR_PROGRESS is sent while a verdict is computed.
    pub progress_interval: Duration,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// On SIGTERM, how long in-flight connections may finish.
    pub shutdown_grace: Duration,
    pub fail_safe: FailSafe,
    /// Prefix of the headers added to accepted mail (`X-Outscore`).
    pub header_prefix: String,
    pub add_headers: bool,
    /// Peers a TCP listener serves (addresses or networks); anyone else is
    /// disconnected at once. Loopback by default. A unix socket is guarded
    /// by its directory's permissions instead.
    pub allow_from: Vec<ipnet::IpNet>,
}

/// Loopback, IPv4 and IPv6: the default `[milter] allow_from`.
pub fn loopback_nets() -> Vec<ipnet::IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("valid network"),
        "::1/128".parse().expect("valid network"),
    ]
}

/// `192.0.2.1` (one address) or `192.0.2.0/24`.
pub fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{text:?} is not an address or network like 127.0.0.1 or 10.0.0.0/8"))
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: vec![DEFAULT_LISTEN.parse().expect("default listen address")],
            max_connections: 1024,
            max_frame_bytes: 2 * 1024 * 1024,
            scan_timeout: Duration::from_secs(20),
            progress_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            fail_safe: FailSafe::Accept,
            header_prefix: "X-Outscore".into(),
            add_headers: true,
            allow_from: loopback_nets(),
        }
    }
}

/// `[scoring]`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoringConfig {
    /// Directory with the rule, keyword and weight files; `None` uses the set
    /// built into the binary.
    pub scores_dir: Option<PathBuf>,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`; `None` means an SQLite file in the data dir.
    pub database_url: Option<String>,
    pub retention: Duration,
    /// Where reports wait when the database is down; `None`: `<data_dir>/spool`.
    pub spool_dir: Option<PathBuf>,
    /// How long the audit log and unblock history are kept (400 days).
    pub audit_retention: Duration,
    /// Reports waiting for the writer; when full, they go to the spool.
    pub queue_capacity: usize,
    /// A batch write slower than this is abandoned and spooled.
    pub write_timeout: Duration,
    /// How often expired reports are purged.
    pub purge_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            database_url: None,
            retention: Duration::from_secs(72 * 3600),
            spool_dir: None,
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            queue_capacity: 10_000,
            write_timeout: Duration::from_secs(5),
            purge_interval: Duration::from_secs(600),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `outscore=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the database, spool and model live.
    pub data_dir: PathBuf,
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
    pub milter: MilterConfig,
    pub scoring: ScoringConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub spf: SpfConfig,
    pub identity: IdentityConfig,
    pub limits: LimitsConfig,
    pub notify: NotifyConfig,
    pub accounts: AccountsConfig,
    pub message_policy: MessagePolicyConfig,
    /// `mode` and `[mode_for]`: enforce, or only observe.
    pub mode: ModeConfig,
    pub http: HttpConfig,
}

/// `[http]`: the review API and pages.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub enabled: bool,
    /// Loopback by default: put a TLS proxy in front to publish it.
    pub listen: std::net::SocketAddr,
    /// How long a page login lasts.
    pub session_ttl: Duration,
    /// Failed logins (page or bearer token) that block a client address
    /// (an IPv6 /64) for the rest of `login_failure_window`.
    pub login_failures_per_ip: u32,
    /// Failed logins for one user name, from any address, that block it.
    pub login_failures_per_user: u32,
    /// Counted from the first failure; a block ends with it.
    pub login_failure_window: Duration,
    /// Peers whose `X-Forwarded-For` names the real client (the local TLS
    /// proxy). None by default: any local process could forge the header.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Mark the session cookie `Secure` (the pages are served over HTTPS
    /// by a proxy in front).
    pub secure_cookie: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: DEFAULT_HTTP_LISTEN,
            session_ttl: Duration::from_secs(8 * 3600),
            login_failures_per_ip: 5,
            login_failures_per_user: 20,
            login_failure_window: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            secure_cookie: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            source: None,
            milter: MilterConfig::default(),
            scoring: ScoringConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            spf: SpfConfig::default(),
            identity: IdentityConfig::default(),
            limits: LimitsConfig::default(),
            notify: NotifyConfig::default(),
            accounts: AccountsConfig::default(),
            message_policy: MessagePolicyConfig::default(),
            mode: ModeConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// `$OUTSCORE_DATA_DIR`, else `/var/lib/outscore` for root, else
/// `~/.local/share/outscore`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTSCORE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/outscore");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/outscore"),
        None => PathBuf::from("outscore-data"),
    }
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse(path, &read_file(path)?)
    }

    /// Validate configuration text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let parsed = Config::parse_all(path, text);
        if parsed.errors.is_empty() {
            Ok(parsed.config)
        } else {
            Err(ConfigErrors(parsed.errors))
        }
    }

    /// Read a configuration file for `outscore check`: every problem, and
    /// the configuration with each bad entry left at its default, so the
    /// files it names can be checked too.
    pub fn load_all(path: &Path) -> Result<Parsed, ConfigErrors> {
        Ok(Config::parse_all(path, &read_file(path)?))
    }

    /// Validate configuration text, collecting every problem: each unknown
    /// key and each value of the wrong type or out of range is reported at
    /// its line, and left at its default in [`Parsed::config`].
    pub fn parse_all(path: &Path, text: &str) -> Parsed {
        let mut errors = Errors {
            file: path.to_path_buf(),
            text,
            list: Vec::new(),
        };
        let mut config = Config {
            source: Some(path.to_path_buf()),
            ..Config::default()
        };
        let Some(raw) = read_raw(text, &mut errors) else {
            return Parsed {
                config,
                errors: errors.list,
                readable: false,
            };
        };
        if let Some(mode) = raw.mode {
            config.mode.default = mode;
        }
        if let Some(map) = raw.mode_for {
            config.mode.per_account = policy::account_keys(map);
        }
        if let Some(dir) = raw.data_dir {
            if dir.get_ref().is_empty() {
                errors.push(Some(dir.span().start), "data_dir must not be empty".into());
            } else {
                config.data_dir = PathBuf::from(dir.into_inner());
            }
        }
        let budget_at = raw
            .spf
            .budget
            .as_ref()
            .or(raw.milter.scan_timeout.as_ref())
            .map(|v| v.span().start);
        validate_milter(raw.milter, &mut config.milter, &mut errors);
        config.scoring.scores_dir = raw.scoring.scores_dir.map(PathBuf::from);
        validate_store(raw.store, &mut config.store, &mut errors);
        validate_http(raw.http, &mut config.http, &mut errors);
        if let Some(format) = raw.log.format {
            config.log.format = format;
        }
        if let Some(level) = raw.log.level {
            config.log.level = level;
        }
        let budget_set = raw.spf.budget.is_some();
        validate_spf(raw.spf, &mut config.spf, &mut errors);
        if !budget_set {
            // The default budget leaves at least half of the scan to the rest.
            config.spf.budget = config.spf.budget.min(config.milter.scan_timeout / 2);
        }
        validate_identity(raw.identity, &mut config.identity, &mut errors);
        if config.spf.enabled && config.spf.budget >= config.milter.scan_timeout {
            errors.push(
                budget_at,
                format!(
                    "spf.budget ({} ms) must be below milter.scan_timeout ({} ms): DNS must never use up the scan",
                    config.spf.budget.as_millis(),
                    config.milter.scan_timeout.as_millis()
                ),
            );
        }
        validate_limits(raw.limits, &mut config.limits, &mut errors);
        validate_notify(raw.notify, &mut config.notify, &mut errors);
        validate_accounts(raw.accounts, &mut config.accounts, &mut errors);
        validate_message_policy(raw.message_policy, &mut config.message_policy, &mut errors);
        // In file order, as an operator reads them.
        errors.list.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Parsed {
            config,
            errors: errors.list,
            readable: true,
        }
    }

    /// The database URL in force: the configured one or the SQLite default.
    pub fn database_url(&self) -> String {
        match &self.store.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("outscore.db").display()),
        }
    }

    /// The spool directory in force.
    pub fn spool_dir(&self) -> PathBuf {
        self.store
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }
}

/// What [`Config::parse_all`] found.
#[derive(Debug)]
pub struct Parsed {
    /// The configuration, with every entry in error at its default.
    pub config: Config,
    /// Every problem, in the order found.
    pub errors: Vec<ConfigError>,
    /// `false` when the file is not TOML at all: nothing in it was read.
    pub readable: bool,
}

/// Deserialise the raw file, reporting every entry serde refuses (unknown
/// key, wrong type, unknown variant) rather than only the first: each one
/// found is reported at its line and blanked out of the text, and the rest
/// is read again. Blanking keeps every byte offset, so lines stay true.
/// `None` when the text is not TOML (one syntax error is all there is).
fn read_raw(text: &str, errors: &mut Errors<'_>) -> Option<RawFile> {
    let mut current = text.to_string();
    // Each round blanks at least one entry; a file has fewer than this.
    for _ in 0..10_000 {
        let e = match toml::from_str::<RawFile>(&current) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let at = e.span().map(|s| s.start);
        let entry = at.and_then(|at| entry_at(&current, at));
        let message = e
            .message()
            .trim()
            .replace('\n', ": ")
            .replace("unknown field", "unknown key");
        match entry {
            Some(entry) => {
                errors.push(at, format!("{}: {message}", entry.path));
                let before = current.clone();
                for range in entry.ranges {
                    blank(&mut current, range);
                }
                if current == before || toml_edit::ImDocument::parse(current.as_str()).is_err() {
                    return None;
                }
            }
            None => {
                errors.push(at, message);
                return None;
            }
        }
    }
    None
}

/// A key-value (or a whole table) of a TOML text, by its dotted path and the
/// byte ranges it covers.
struct Entry {
    path: String,
    ranges: Vec<std::ops::Range<usize>>,
}

/// The entry of `text` that byte `at` falls in: a key of the top level or
/// of a section (a value that is a table inline counts as one entry).
fn entry_at(text: &str, at: usize) -> Option<Entry> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    find_entry(doc.as_table(), "", at, 0)
}

fn find_entry(table: &toml_edit::Table, prefix: &str, at: usize, depth: usize) -> Option<Entry> {
    for (name, _) in table.iter() {
        let (key, item) = table.get_key_value(name)?;
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let mut ranges = Vec::new();
        item_ranges(key, item, &mut ranges);
        if !ranges
            .iter()
            .any(|r| r.start <= at && at < r.end.max(r.start + 1))
        {
            continue;
        }
        // Inside a section: the key within it, when the position is in one
        // (else the header: the whole section).
        if let toml_edit::Item::Table(t) = item {
            if depth < 2 {
                if let Some(inner) = find_entry(t, &path, at, depth + 1) {
                    return Some(inner);
                }
            }
        }
        return Some(Entry { path, ranges });
    }
    None
}

/// The byte ranges of one entry: `key = value`, or a table (its span runs
/// from the header to its last entry) and every table under it.
fn item_ranges(
    key: &toml_edit::Key,
    item: &toml_edit::Item,
    out: &mut Vec<std::ops::Range<usize>>,
) {
    match item {
        toml_edit::Item::Table(t) => {
            out.extend(t.span());
            for (name, _) in t.iter() {
                if let Some((k, i)) = t.get_key_value(name) {
                    item_ranges(k, i, out);
                }
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for t in a.iter() {
                out.extend(t.span());
                for (name, _) in t.iter() {
                    if let Some((k, i)) = t.get_key_value(name) {
                        item_ranges(k, i, out);
                    }
                }
            }
        }
        toml_edit::Item::Value(v) => {
            if let (Some(k), Some(v)) = (key.span(), v.span()) {
                out.push(k.start..v.end);
            }
        }
        toml_edit::Item::None => {}
    }
}

/// Replace `range` of `text` with spaces, keeping its newlines.
fn blank(text: &mut String, range: std::ops::Range<usize>) {
    let range = range.start.min(text.len())..range.end.min(text.len());
    // One space per byte: every offset after the range stays where it was.
    let replaced: String = text[range.clone()]
        .chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c => " ".repeat(c.len_utf8()),
        })
        .collect();
    text.replace_range(range, &replaced);
}

struct Errors<'a> {
    file: PathBuf,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, offset: Option<usize>, message: String) {
        let line = offset.map(|o| line_of(self.text, o));
        self.list.push(ConfigError {
            file: self.file.clone(),
            line,
            message,
        });
    }

    fn duration(&mut self, value: Option<toml::Spanned<String>>, key: &str, into: &mut Duration) {
        let Some(value) = value else { return };
        match parse_duration(value.get_ref()) {
            Ok(d) if !d.is_zero() => *into = d,
            Ok(_) => self.push(
                Some(value.span().start),
                format!("{key} must be above zero"),
            ),
            Err(e) => self.push(Some(value.span().start), format!("{key}: {e}")),
        }
    }

    fn positive(
        &mut self,
        value: Option<toml::Spanned<i64>>,
        key: &str,
        max: i64,
    ) -> Option<usize> {
        let value = value?;
        let n = *value.get_ref();
        if n < 1 || n > max {
            self.push(
                Some(value.span().start),
                format!("{key} must be between 1 and {max}, got {n}"),
            );
            return None;
        }
        Some(n as usize)
    }
}

fn validate_milter(raw: RawMilter, into: &mut MilterConfig, errors: &mut Errors<'_>) {
    if let Some(listen) = raw.listen {
        let offset = listen.span().start;
        let mut parsed = Vec::new();
        for addr in listen.into_inner() {
            match addr.parse::<ListenAddr>() {
                Ok(a) => parsed.push(a),
                Err(e) => errors.push(Some(offset), format!("milter.listen: {e}")),
            }
        }
        if parsed.is_empty() {
            errors.push(
                Some(offset),
                "milter.listen needs at least one address".into(),
            );
        }
        into.listen = parsed;
    }
    if let Some(n) = errors.positive(raw.max_connections, "milter.max_connections", 1_000_000) {
        into.max_connections = n;
    }
    let frame_at = raw.max_frame_bytes.as_ref().map(|v| v.span().start);
    if let Some(n) = errors.positive(raw.max_frame_bytes, "milter.max_frame_bytes", 1 << 30) {
        if n < 65_536 {
            errors.push(
                frame_at,
                format!("milter.max_frame_bytes must be at least 65536 (Postfix sends 64 KiB body chunks), got {n}"),
            );
        } else {
            into.max_frame_bytes = n;
        }
    }
    errors.duration(
        raw.scan_timeout,
        "milter.scan_timeout",
        &mut into.scan_timeout,
    );
    errors.duration(
        raw.progress_interval,
        "milter.progress_interval",
        &mut into.progress_interval,
    );
    errors.duration(
        raw.idle_timeout,
        "milter.idle_timeout",
        &mut into.idle_timeout,
    );
    errors.duration(
        raw.shutdown_grace,
        "milter.shutdown_grace",
        &mut into.shutdown_grace,
    );
    if let Some(fs) = raw.fail_safe {
        into.fail_safe = fs;
    }
    if let Some(prefix) = raw.header_prefix {
        let ok = !prefix.get_ref().is_empty()
            && prefix
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            into.header_prefix = prefix.into_inner();
        } else {
            errors.push(
                Some(prefix.span().start),
                "milter.header_prefix must be letters, digits and '-'".into(),
            );
        }
    }
    if let Some(add) = raw.add_headers {
        into.add_headers = add;
    }
    if let Some(list) = raw.allow_from {
        let offset = list.span().start;
        let mut nets = Vec::new();
        for item in list.into_inner() {
            match parse_net(&item) {
                Ok(n) => nets.push(n),
                Err(e) => errors.push(Some(offset), format!("milter.allow_from: {e}")),
            }
        }
        into.allow_from = nets;
    }
}

fn validate_store(raw: RawStore, into: &mut StoreConfig, errors: &mut Errors<'_>) {
    if let Some(url) = raw.database_url {
        let at = url.span().start;
        let url = url.into_inner();
        if url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
        {
            into.database_url = Some(url);
        } else {
            errors.push(
                Some(at),
                format!("store.database_url must start with sqlite: or postgres://, got {url:?}"),
            );
        }
    }
    if let Some(hours) = errors.positive(raw.retention_hours, "store.retention_hours", 24 * 3650) {
        into.retention = Duration::from_secs(hours as u64 * 3600);
    }
    into.spool_dir = raw.spool_dir.map(PathBuf::from);
    if let Some(days) = errors.positive(
        raw.audit_retention_days,
        "store.audit_retention_days",
        36_500,
    ) {
        into.audit_retention = Duration::from_secs(days as u64 * 24 * 3600);
    }
    if let Some(n) = errors.positive(raw.queue_capacity, "store.queue_capacity", 10_000_000) {
        into.queue_capacity = n;
    }
    errors.duration(
        raw.write_timeout,
        "store.write_timeout",
        &mut into.write_timeout,
    );
    errors.duration(
        raw.purge_interval,
        "store.purge_interval",
        &mut into.purge_interval,
    );
}

fn validate_http(raw: RawHttp, into: &mut HttpConfig, errors: &mut Errors<'_>) {
    if let Some(enabled) = raw.enabled {
        into.enabled = enabled;
    }
    if let Some(listen) = raw.listen {
        let at = listen.span().start;
        let listen = listen.into_inner();
        match listen.parse() {
            Ok(addr) => into.listen = addr,
            Err(_) => errors.push(
                Some(at),
                format!("http.listen must be IP:PORT (e.g. {DEFAULT_HTTP_LISTEN}), got {listen:?}"),
            ),
        }
    }
    if let Some(hours) = errors.positive(raw.session_hours, "http.session_hours", 24 * 30) {
        into.session_ttl = Duration::from_secs(hours as u64 * 3600);
    }
    if let Some(n) = errors.positive(
        raw.login_failures_per_ip,
        "http.login_failures_per_ip",
        1000,
    ) {
        into.login_failures_per_ip = n as u32;
    }
    if let Some(n) = errors.positive(
        raw.login_failures_per_user,
        "http.login_failures_per_user",
        1000,
    ) {
        into.login_failures_per_user = n as u32;
    }
    errors.duration(
        raw.login_failure_window,
        "http.login_failure_window",
        &mut into.login_failure_window,
    );
    if let Some(secure) = raw.secure_cookie {
        into.secure_cookie = secure;
    }
    if let Some(proxies) = raw.trusted_proxies {
        let offset = proxies.span().start;
        let mut parsed = Vec::new();
        for p in proxies.into_inner() {
            match p.trim().parse() {
                Ok(ip) => parsed.push(ip),
                Err(_) => errors.push(
                    Some(offset),
                    format!("http.trusted_proxies entries must be IP addresses, got {p:?}"),
                ),
            }
        }
        into.trusted_proxies = parsed;
    }
}

fn validate_spf(raw: RawSpf, into: &mut SpfConfig, errors: &mut Errors<'_>) {
    if let Some(enabled) = raw.enabled {
        into.enabled = enabled;
    }
    if let Some(ips) = raw.egress_ips {
        let offset = ips.span().start;
        into.egress_ips.clear();
        for ip in ips.into_inner() {
            match ip.trim().parse::<IpAddr>() {
                Ok(ip) => into.egress_ips.push(ip),
                Err(_) => errors.push(
                    Some(offset),
                    format!("spf.egress_ips: {ip:?} is not an IP address"),
                ),
            }
        }
    }
    if let Some(check) = raw.check_client_ip {
        into.check_client_ip = check;
    }
    errors.duration(
        raw.lookup_timeout,
        "spf.lookup_timeout",
        &mut into.lookup_timeout,
    );
    errors.duration(raw.budget, "spf.budget", &mut into.budget);
    if let Some(resolver) = raw.resolver {
        let text = resolver.get_ref().trim();
        let parsed = text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(addr) => into.resolver = Some(addr),
            Err(_) => errors.push(
                Some(resolver.span().start),
                format!("spf.resolver must be ip or ip:port, got {text:?}"),
            ),
        }
    }
    if let Some(n) = errors.positive(raw.cache_entries, "spf.cache_entries", 10_000_000) {
        into.cache_entries = n;
    }
}

fn validate_identity(raw: RawIdentity, into: &mut IdentityConfig, errors: &mut Errors<'_>) {
    into.accounts_file = raw.accounts_file.map(PathBuf::from);
    if let Some(v) = raw.own_domain_default {
        into.own_domain_default = v;
    }
    if let Some(mode) = raw.alignment {
        into.alignment = mode;
    }
    let attribution_at = raw.attribution.as_ref().map(|a| a.span().start);
    if let Some(rule) = raw.attribution {
        into.attribution = rule.into_inner();
    }
    if let Some(map) = raw.attribution_map {
        let offset = map.span().start;
        for (key, account) in map.into_inner() {
            let key = crate::envelope::strip_brackets(&key).to_ascii_lowercase();
            if key.is_empty() || account.trim().is_empty() {
                errors.push(
                    Some(offset),
                    "identity.attribution_map keys and accounts must not be empty".into(),
                );
                continue;
            }
            into.attribution_map.insert(key, account.trim().to_string());
        }
    }
    if into.attribution == LocalAttribution::Map && into.attribution_map.is_empty() {
        errors.push(
            attribution_at,
            "identity.attribution = \"map\" needs an identity.attribution_map".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_defaults_to_enforce_and_overrides_per_domain_or_account() {
        let c = Config::parse(Path::new("t.toml"), "").unwrap();
        assert_eq!(c.mode.for_account("a@x.example"), Mode::Enforce);
        let text = "mode = \"observe\"\n[mode_for]\n\"X.example\" = \"enforce\"\n\"@y.example\" = \"observe\"\n\"boss@x.example\" = \"observe\"\n";
        let c = Config::parse(Path::new("t.toml"), text).unwrap();
        assert_eq!(c.mode.for_account("a@x.example"), Mode::Enforce);
        assert_eq!(c.mode.for_account("Boss@x.example"), Mode::Observe);
        assert_eq!(c.mode.for_account("a@z.example"), Mode::Observe);
        assert!(Config::parse(Path::new("t.toml"), "mode = \"watch\"\n").is_err());
    }

    #[test]
    fn default_ports_are_loopback_and_clear_of_other_mail_filters() {
        let c = Config::default();
        let [ListenAddr::Tcp(milter)] = c.milter.listen.as_slice() else {
            panic!("one TCP milter listener by default: {:?}", c.milter.listen)
        };
        assert!(milter.ip().is_loopback() && c.http.listen.ip().is_loopback());
        assert_ne!(milter.port(), c.http.listen.port());
        for port in [milter.port(), c.http.listen.port()] {
            if let Some((_, who)) = OTHER_FILTER_PORTS.iter().find(|(p, _)| *p == port) {
                panic!("default port {port} is {who}'s");
            }
            // Below the kernel's ephemeral range (32768-60999), so a test or a
            // client socket bound to port 0 never takes it.
            assert!(port < 32768, "{port}");
        }
    }

    #[test]
    fn the_packaged_configuration_is_valid_and_uses_the_units_directories() {
        let text = include_str!("../../packaging/deb/outscore.toml");
        let c = Config::parse(Path::new("/etc/outscore/outscore.toml"), text).unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/outscore"));
        assert_eq!(
            c.milter.listen,
            vec![ListenAddr::Unix("/run/outscore/milter.sock".into())]
        );
        assert_eq!(c.http.listen, DEFAULT_HTTP_LISTEN);
        // Every commented-out `key = value` is a real key with a valid value:
        // the file with them all switched on (the TCP listener instead of the
        // socket) still parses.
        let is_key_line = |l: &str| {
            l.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
        };
        let mut switched_on = 0;
        let on: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => {
                    switched_on += 1;
                    rest
                }
                _ if l.starts_with("listen = [\"unix:") => "",
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(switched_on, 5, "{on}");
        let c = Config::parse(Path::new("all-on.toml"), &on).unwrap();
        assert_eq!(c.milter.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(
            c.scoring.scores_dir.as_deref(),
            Some(Path::new("/etc/outscore/scores"))
        );
    }

    #[test]
    fn http_section() {
        let c = Config::parse(Path::new("x.toml"), "").unwrap();
        assert!(c.http.enabled);
        assert!(c.http.listen.ip().is_loopback());
        assert_eq!(c.http.listen, DEFAULT_HTTP_LISTEN);
        let c = Config::parse(
            Path::new("x.toml"),
            "[http]\nenabled = false\nlisten = \"[::1]:8080\"\nsession_hours = 2\n",
        )
        .unwrap();
        assert!(!c.http.enabled);
        assert_eq!(c.http.listen.to_string(), "[::1]:8080");
        assert_eq!(c.http.session_ttl, Duration::from_secs(7200));
        let errors = Config::parse(
            Path::new("x.toml"),
            "[http]\nlisten = \"localhost\"\nsession_hours = 0\n",
        )
        .unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(errors.to_string().contains("http.listen"));
        assert_eq!(c.http.login_failures_per_ip, 5);
        assert_eq!(c.http.login_failure_window, Duration::from_secs(300));
        let c = Config::parse(
            Path::new("x.toml"),
            "[http]\nlogin_failures_per_ip = 3\nlogin_failures_per_user = 9\nlogin_failure_window = \"10m\"\ntrusted_proxies = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.http.login_failures_per_ip,
                c.http.login_failures_per_user,
                c.http.login_failure_window,
                c.http.trusted_proxies.len()
            ),
            (3, 9, Duration::from_secs(600), 1)
        );
        let errors = Config::parse(
            Path::new("x.toml"),
            "[http]\nlogin_failures_per_ip = 0\ntrusted_proxies = [\"proxy\"]\n",
        )
        .unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(c.milter, MilterConfig::default());
        assert_eq!(c.store.retention, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text =
            "[milter]\nlisten = [\"tcp:1.2.3.4\"]\nmax_connections = 0\nscan_timeout = \"soon\"\n";
        let err = Config::parse(Path::new("o.toml"), text).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|e| e.line).collect();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(lines.contains(&Some(2)));
        assert!(lines.contains(&Some(3)));
        assert!(lines.contains(&Some(4)));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse(Path::new("o.toml"), "[milter]\nlisten_on = 1\n").unwrap_err();
        assert!(err.to_string().contains("o.toml:2:"), "{err}");
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported_in_one_run() {
        let text = "\
data_dir = \"/tmp/o\"
colour = \"blue\"
[milter]
listen_on = [\"inet:127.0.0.1:1\"]
max_connections = \"many\"
max_frame_bytes = 1024
fail_safe = \"maybe\"
scan_timeout = \"soon\"
[store]
retention_hours = 0
databse_url = \"sqlite://x\"
[stor]
a = 1
[http]
listen = \"localhost\"
[limits]
max_messages = 10
";
        let parsed = Config::parse_all(Path::new("o.toml"), text);
        let shown: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        let at = |line: usize, what: &str| {
            assert!(
                shown
                    .iter()
                    .any(|e| e.starts_with(&format!("o.toml:{line}: ")) && e.contains(what)),
                "no error at line {line} about {what}: {shown:#?}"
            )
        };
        at(2, "colour");
        at(4, "milter.listen_on");
        at(5, "milter.max_connections");
        at(6, "milter.max_frame_bytes");
        at(7, "milter.fail_safe");
        at(8, "milter.scan_timeout");
        at(10, "store.retention_hours");
        at(11, "store.databse_url");
        at(12, "stor");
        at(15, "http.listen");
        assert_eq!(shown.len(), 10, "{shown:#?}");
        assert!(parsed.readable);
        // What was valid is kept, what was not stays at its default.
        assert_eq!(parsed.config.data_dir, PathBuf::from("/tmp/o"));
        assert_eq!(parsed.config.limits.max_messages, 10);
        assert_eq!(parsed.config.milter, MilterConfig::default());
        // A file that is not TOML has one error, and nothing was read.
        let parsed = Config::parse_all(Path::new("o.toml"), "[milter\nx = 1\n");
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.errors[0].line, Some(1));
        assert!(!parsed.readable);
    }

    #[test]
    fn cross_key_errors_carry_a_line() {
        let text = "[milter]\nscan_timeout = \"2s\"\n[spf]\nbudget = \"3s\"\n[identity]\nattribution = \"map\"\n";
        let err = Config::parse(Path::new("o.toml"), text).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(4), Some(6)], "{err}");
    }

    #[test]
    fn values_are_applied() {
        let text = r#"
data_dir = "/tmp/x"
[milter]
listen = ["unix:/run/o.sock", "inet:[::1]:9999"]
fail_safe = "tempfail"
scan_timeout = "750ms"
[store]
database_url = "postgres://localhost/test"
retention_hours = 24
audit_retention_days = 30
queue_capacity = 500
write_timeout = "2s"
purge_interval = "1m"
"#;
        let c = Config::parse(Path::new("o.toml"), text).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.milter.listen.len(), 2);
        assert_eq!(c.milter.fail_safe, FailSafe::Tempfail);
        assert_eq!(c.milter.scan_timeout, Duration::from_millis(750));
        assert_eq!(c.database_url(), "postgres://localhost/test");
        assert_eq!(c.store.retention, Duration::from_secs(24 * 3600));
        assert_eq!(c.store.audit_retention, Duration::from_secs(30 * 86400));
        assert_eq!(c.store.queue_capacity, 500);
        assert_eq!(c.store.write_timeout, Duration::from_secs(2));
        assert_eq!(c.store.purge_interval, Duration::from_secs(60));
    }

    #[test]
    fn spf_and_identity_sections() {
        let text = r#"
[spf]
egress_ips = ["192.0.2.25", "2001:db8::25"]
lookup_timeout = "500ms"
budget = "2s"
resolver = "127.0.0.53:5353"
[identity]
alignment = "strict"
attribution = "map"
attribution_map = { "www-data@relay.example" = "shop@customer.example" }
"#;
        let c = Config::parse(Path::new("o.toml"), text).unwrap();
        assert_eq!(c.spf.egress_ips.len(), 2);
        assert_eq!(c.spf.lookup_timeout, Duration::from_millis(500));
        assert_eq!(c.spf.resolver, Some("127.0.0.53:5353".parse().unwrap()));
        assert_eq!(c.identity.alignment, AlignMode::Strict);
        assert_eq!(c.identity.attribution, LocalAttribution::Map);
        let bad =
            "[spf]\negress_ips = [\"nope\"]\nresolver = \"x\"\n[identity]\nattribution = \"map\"\n";
        let err = Config::parse(Path::new("o.toml"), bad).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        let slow = "[milter]\nscan_timeout = \"2s\"\n[spf]\nbudget = \"3s\"\n";
        let err = Config::parse(Path::new("o.toml"), slow).unwrap_err();
        assert!(err.to_string().contains("spf.budget"), "{err}");
    }
}
