//! Sender identity rules: SPF results, From/MAIL FROM alignment, the From
//! domain's DMARC policy, and login vs MAIL FROM vs header From mismatches,
//! turned into symbols with evidence. Pure: the DNS answers (SPF, DMARC) arrive
//! as [`IdentityFacts`] gathered beforehand by `auth`; the allowed identities of
//! the sending account arrive as an [`AccountIdentity`]. Knows no DNS, no store.
//!
//! Output is a list of [`IdentitySymbol`]s — (name, factor, evidence) — that the
//! scoring engine weighs with `scores/` like any other symbol.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::envelope::{domain_of, Envelope};

/// SPF result symbols, one per RFC 7208 result.
pub const SPF_PASS: &str = "SPF_PASS";
pub const SPF_FAIL: &str = "SPF_FAIL";
pub const SPF_SOFTFAIL: &str = "SPF_SOFTFAIL";
pub const SPF_NEUTRAL: &str = "SPF_NEUTRAL";
pub const SPF_NONE: &str = "SPF_NONE";
pub const SPF_PERMERROR: &str = "SPF_PERMERROR";
pub const SPF_TEMPERROR: &str = "SPF_TEMPERROR";
/// Header From domain does not align with the MAIL FROM domain.
pub const FROM_MAILFROM_MISALIGNED: &str = "FROM_MAILFROM_MISALIGNED";
/// From domain publishes `p=reject` and the message will not be SPF-aligned.
pub const DMARC_POLICY_REJECT_MISALIGNED: &str = "DMARC_POLICY_REJECT_MISALIGNED";
/// From domain publishes `p=quarantine` and the message will not be SPF-aligned.
pub const DMARC_POLICY_QUARANTINE_MISALIGNED: &str = "DMARC_POLICY_QUARANTINE_MISALIGNED";
/// The account may not use this envelope sender.
pub const LOGIN_MAILFROM_MISMATCH: &str = "LOGIN_MAILFROM_MISMATCH";
/// The account may not use this header From address.
pub const LOGIN_HEADER_FROM_MISMATCH: &str = "LOGIN_HEADER_FROM_MISMATCH";

/// Every symbol this module can emit, for the check that each has a weight.
pub const SYMBOLS: &[&str] = &[
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_NEUTRAL,
    SPF_NONE,
    SPF_PERMERROR,
    SPF_TEMPERROR,
    FROM_MAILFROM_MISALIGNED,
    DMARC_POLICY_REJECT_MISALIGNED,
    DMARC_POLICY_QUARANTINE_MISALIGNED,
    LOGIN_MAILFROM_MISMATCH,
    LOGIN_HEADER_FROM_MISMATCH,
];

/// One fired identity symbol. Maps one-to-one onto the scoring engine's
/// external symbol input: `name` is declared in `scores/`, `factor` scales the
/// weight, `evidence` goes to the report unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentitySymbol {
    pub name: &'static str,
    pub factor: f64,
    pub evidence: Vec<String>,
}

/// The seven results of RFC 7208 `check_host()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfVerdict {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    PermError,
    TempError,
}

impl SpfVerdict {
    /// Every result, in the order reports list them.
    pub const ALL: [SpfVerdict; 7] = [
        SpfVerdict::Fail,
        SpfVerdict::SoftFail,
        SpfVerdict::PermError,
        SpfVerdict::TempError,
        SpfVerdict::Neutral,
        SpfVerdict::None,
        SpfVerdict::Pass,
    ];

    /// The symbol this result fires.
    pub fn symbol(self) -> &'static str {
        match self {
            SpfVerdict::Pass => SPF_PASS,
            SpfVerdict::Fail => SPF_FAIL,
            SpfVerdict::SoftFail => SPF_SOFTFAIL,
            SpfVerdict::Neutral => SPF_NEUTRAL,
            SpfVerdict::None => SPF_NONE,
            SpfVerdict::PermError => SPF_PERMERROR,
            SpfVerdict::TempError => SPF_TEMPERROR,
        }
    }

    /// The RFC 7208 name (`softfail`, `permerror`…).
    pub fn as_str(self) -> &'static str {
        match self {
            SpfVerdict::Pass => "pass",
            SpfVerdict::Fail => "fail",
            SpfVerdict::SoftFail => "softfail",
            SpfVerdict::Neutral => "neutral",
            SpfVerdict::None => "none",
            SpfVerdict::PermError => "permerror",
            SpfVerdict::TempError => "temperror",
        }
    }
}

impl fmt::Display for SpfVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which SMTP identity SPF was checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfIdentity {
    /// The envelope MAIL FROM domain.
    MailFrom,
    /// The HELO name (MAIL FROM was empty: a bounce).
    Helo,
}

/// Why an IP was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpRole {
    /// A relay egress address: what the recipients' servers will see.
    Egress,
    /// The connecting client's address.
    Client,
}

/// One SPF evaluation: one domain against one IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpfCheck {
    pub identity: SpfIdentity,
    pub domain: String,
    pub ip: IpAddr,
    pub role: IpRole,
    pub result: SpfVerdict,
    /// The domain's published SPF record, as text, when one was read.
    pub record: Option<String>,
    /// Other names whose records the evaluation read (include/redirect chain).
    pub consulted: Vec<String>,
    /// Why an error result came about (timeout, budget spent, DNS error…).
    pub detail: Option<String>,
    /// DNS queries this evaluation sent (0 when the cache answered everything).
    pub dns_queries: u32,
}

impl SpfCheck {
    /// One evidence line: IP, domain, record, result.
    pub fn evidence(&self) -> String {
        let identity = match self.identity {
            SpfIdentity::MailFrom => "mail from",
            SpfIdentity::Helo => "helo",
        };
        let role = match self.role {
            IpRole::Egress => "egress",
            IpRole::Client => "client",
        };
        let mut line = format!(
            "spf={} for {} domain {} from {} ip {}",
            self.result, identity, self.domain, role, self.ip
        );
        match &self.record {
            Some(record) => line.push_str(&format!("; record \"{record}\"")),
            None => line.push_str("; no SPF record"),
        }
        if !self.consulted.is_empty() {
            line.push_str(&format!("; via {}", self.consulted.join(", ")));
        }
        if let Some(detail) = &self.detail {
            line.push_str(&format!("; {detail}"));
        }
        line
    }
}

/// A DMARC `p=` / `sp=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// Identifier alignment mode (RFC 7489 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlignMode {
    /// Same organisational domain (Public Suffix List).
    #[default]
    Relaxed,
    /// Exactly the same domain.
    Strict,
}

/// The DMARC policy that applies to the header From domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DmarcRecord {
    /// The header From domain the policy applies to.
    pub from_domain: String,
    /// Where the record was found (`_dmarc.example.com`).
    pub found_at: String,
    /// The policy in force for `from_domain` (`sp=` when found at the
    /// organisational domain for a subdomain).
    pub policy: DmarcPolicy,
    /// `aspf=`.
    pub aspf: AlignMode,
}

/// Outcome of the DMARC policy lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DmarcLookup {
    /// No header From domain, or the lookup was not made.
    NotChecked,
    /// The domain and its organisational domain publish no DMARC record.
    NotFound,
    Found(DmarcRecord),
    /// DNS failed or the budget ran out; never a symbol on its own.
    TempError(String),
}

/// Facts gathered over DNS for one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityFacts {
    /// One entry per IP evaluated (egress IPs, then the client if configured).
    pub spf: Vec<SpfCheck>,
    pub dmarc: DmarcLookup,
}

impl Default for IdentityFacts {
    fn default() -> Self {
        IdentityFacts {
            spf: Vec::new(),
            dmarc: DmarcLookup::NotChecked,
        }
    }
}

/// Who sent the message, for the login-mismatch rules: a SASL login, or an
/// account a local submission was attributed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The account's login or key.
    pub account: String,
    /// How the account was found, for evidence (`login`, `attributed by…`).
    pub how: String,
    pub identity: AccountIdentity,
    /// Whether the login-mismatch rules apply. Off for an account derived
    /// from the envelope sender's domain alone: MAIL FROM matches it by
    /// construction and the header From is already judged by alignment.
    pub check_identity: bool,
}

impl Sender {
    /// `address` is one this sender certainly may not use: the
    /// login-mismatch rules apply, and something is known of what the
    /// account may send as (a bare login outside the accounts directory,
    /// `alice` rather than `alice@example.com`, is only scored). The null
    /// sender claims no identity.
    pub fn may_not_send_as(&self, address: &str) -> bool {
        self.check_identity
            && !address.is_empty()
            && !self.identity.is_unknown()
            && self.identity.permits(address).is_none()
    }
}

/// The addresses one account may send as. Addresses and domains are stored
/// lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIdentity {
    /// The login itself, when it is an address.
    pub login: String,
    /// `true`: any address of `own_domain` is allowed.
    pub any_of_own_domain: bool,
    /// The domain of the login (or the attributed domain).
    pub own_domain: Option<String>,
    /// Aliases and explicitly authorised other addresses.
    pub addresses: Vec<String>,
    /// Other whole domains the account may send as.
    pub domains: Vec<String>,
}

impl AccountIdentity {
    /// The identity of a login with nothing extra authorised.
    pub fn for_login(login: &str, any_of_own_domain: bool) -> AccountIdentity {
        let login = login.trim().to_ascii_lowercase();
        AccountIdentity {
            own_domain: domain_of(&login),
            login,
            any_of_own_domain,
            addresses: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// An account known only by a domain (a website attributed by the
    /// envelope sender's domain): any address of that domain.
    pub fn for_domain(domain: &str) -> AccountIdentity {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        AccountIdentity {
            login: String::new(),
            any_of_own_domain: true,
            own_domain: Some(domain),
            addresses: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// Nothing is known of what the account may send as: a login that is
    /// not an address, with no directory entry.
    pub fn is_unknown(&self) -> bool {
        !self.login.contains('@')
            && self.own_domain.is_none()
            && self.addresses.is_empty()
            && self.domains.is_empty()
    }

    /// Whether the account may send as `address`, and by which rule.
    pub fn permits(&self, address: &str) -> Option<&'static str> {
        let address = address.trim().to_ascii_lowercase();
        if !self.login.is_empty() && address == self.login {
            return Some("the login itself");
        }
        if self.addresses.contains(&address) {
            return Some("an authorised address");
        }
        let domain = domain_of(&address)?;
        if self.any_of_own_domain && self.own_domain.as_deref() == Some(domain.as_str()) {
            return Some("an address of its own domain");
        }
        if self.domains.contains(&domain) {
            return Some("an authorised domain");
        }
        None
    }

    /// What is allowed, for evidence: `alice@a.example, any @a.example, …`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.login.is_empty() && self.login.contains('@') {
            parts.push(self.login.clone());
        }
        if self.any_of_own_domain {
            if let Some(domain) = &self.own_domain {
                parts.push(format!("any @{domain}"));
            }
        }
        parts.extend(self.addresses.iter().cloned());
        parts.extend(self.domains.iter().map(|d| format!("any @{d}")));
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Knobs of the identity rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentityOptions {
    /// Alignment mode when the From domain publishes no DMARC `aspf=`.
    pub default_alignment: AlignMode,
}

/// The organisational domain of `domain` by the Public Suffix List
/// (`mail.example.co.uk` → `example.co.uk`); the domain itself when the list
/// has no answer (a bare suffix, an invalid name).
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&domain) {
        Some(org) => org.to_string(),
        None => domain,
    }
}

/// Whether two domains align in `mode`.
pub fn aligned(a: &str, b: &str, mode: AlignMode) -> bool {
    let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim().trim_end_matches('.').to_ascii_lowercase();
    if a.is_empty() || b.is_empty() {
        return false;
    }
    match mode {
        AlignMode::Strict => a == b,
        AlignMode::Relaxed => a == b || organizational_domain(&a) == organizational_domain(&b),
    }
}

/// The addresses of the RFC 5322 From header(s), lower-cased, in order.
/// Never fails: a message without a parsable From gives an empty list.
pub fn header_from_addresses(raw: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    let Some(from) = message.from() else {
        return Vec::new();
    };
    from.iter()
        .filter_map(|addr| addr.address())
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The domain whose DMARC policy applies: the first header From address's.
pub fn header_from_domain(from: &[String]) -> Option<String> {
    from.iter().find_map(|a| domain_of(a))
}

/// Evaluate every identity rule for one message.
///
/// `header_from` is [`header_from_addresses`] of the raw message; `sender` is
/// the SASL login's identity, or the account a local submission was
/// attributed to, or `None` when neither is known.
pub fn evaluate(
    envelope: &Envelope,
    header_from: &[String],
    facts: &IdentityFacts,
    sender: Option<&Sender>,
    options: IdentityOptions,
) -> Vec<IdentitySymbol> {
    let mut out = Vec::new();
    spf_symbols(facts, &mut out);
    alignment_symbols(envelope, header_from, facts, options, &mut out);
    if let Some(sender) = sender.filter(|s| s.check_identity) {
        login_symbols(envelope, header_from, sender, &mut out);
    }
    out
}

/// One symbol per distinct SPF result, each with the evidence of its checks.
fn spf_symbols(facts: &IdentityFacts, out: &mut Vec<IdentitySymbol>) {
    for verdict in SpfVerdict::ALL {
        let evidence: Vec<String> = facts
            .spf
            .iter()
            .filter(|c| c.result == verdict)
            .map(SpfCheck::evidence)
            .collect();
        if !evidence.is_empty() {
            out.push(IdentitySymbol {
                name: verdict.symbol(),
                factor: 1.0,
                evidence,
            });
        }
    }
}

fn alignment_symbols(
    envelope: &Envelope,
    header_from: &[String],
    facts: &IdentityFacts,
    options: IdentityOptions,
    out: &mut Vec<IdentitySymbol>,
) {
    let Some(from_domain) = header_from_domain(header_from) else {
        return;
    };
    let record = match &facts.dmarc {
        DmarcLookup::Found(record) => Some(record),
        _ => None,
    };
    let mode = record.map_or(options.default_alignment, |r| r.aspf);
    let mode_name = match mode {
        AlignMode::Relaxed => "relaxed",
        AlignMode::Strict => "strict",
    };
    // A bounce (null sender) has no MAIL FROM domain; DMARC then aligns the
    // HELO name, which on a relay is the relay's own name: not a signal.
    let mail_from_domain = envelope.mail_from_domain();
    let is_aligned = match &mail_from_domain {
        Some(mf) => aligned(&from_domain, mf, mode),
        None => false,
    };
    if let Some(mf) = &mail_from_domain {
        if !is_aligned {
            out.push(IdentitySymbol {
                name: FROM_MAILFROM_MISALIGNED,
                factor: 1.0,
                evidence: vec![format!(
                    "header From domain {from_domain} does not align ({mode_name}) with mail from domain {mf} (organisational domains {} and {})",
                    organizational_domain(&from_domain),
                    organizational_domain(mf)
                )],
            });
        }
    }
    let Some(record) = record else { return };
    let name = match record.policy {
        DmarcPolicy::Reject => DMARC_POLICY_REJECT_MISALIGNED,
        DmarcPolicy::Quarantine => DMARC_POLICY_QUARANTINE_MISALIGNED,
        DmarcPolicy::None => return,
    };
    let mail_from_checks: Vec<&SpfCheck> = facts
        .spf
        .iter()
        .filter(|c| c.identity == SpfIdentity::MailFrom && c.role == IpRole::Egress)
        .collect();
    let spf_passes = !mail_from_checks.is_empty()
        && mail_from_checks
            .iter()
            .all(|c| c.result == SpfVerdict::Pass);
    if is_aligned && spf_passes {
        return;
    }
    let policy = match record.policy {
        DmarcPolicy::Reject => "reject",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::None => "none",
    };
    let why = match (&mail_from_domain, is_aligned) {
        (None, _) => "the null sender (bounce) cannot be SPF-aligned".to_string(),
        (Some(mf), false) => {
            format!("mail from domain {mf} does not align ({mode_name}) with it")
        }
        (Some(mf), true) => {
            let results: Vec<String> = mail_from_checks
                .iter()
                .map(|c| format!("{} from {}", c.result, c.ip))
                .collect();
            let results = if results.is_empty() {
                "not checked".to_string()
            } else {
                results.join(", ")
            };
            format!("mail from domain {mf} aligns but SPF does not pass from the relay ({results})")
        }
    };
    out.push(IdentitySymbol {
        name,
        factor: 1.0,
        evidence: vec![format!(
            "header From domain {from_domain} publishes DMARC p={policy} at {}; {why}",
            record.found_at
        )],
    });
}

fn login_symbols(
    envelope: &Envelope,
    header_from: &[String],
    sender: &Sender,
    out: &mut Vec<IdentitySymbol>,
) {
    let allowed = sender.identity.describe();
    // The null sender (a bounce) claims no identity: nothing to mismatch.
    if !envelope.mail_from.is_empty() && sender.identity.permits(&envelope.mail_from).is_none() {
        out.push(IdentitySymbol {
            name: LOGIN_MAILFROM_MISMATCH,
            factor: 1.0,
            evidence: vec![format!(
                "sender mismatch (mail from): {} {} may not send as mail from {} (allowed: {allowed})",
                sender.how, sender.account, envelope.mail_from
            )],
        });
    }
    let evidence: Vec<String> = header_from
        .iter()
        .filter(|a| sender.identity.permits(a).is_none())
        .map(|a| {
            format!(
                "sender mismatch (header): {} {} may not send as header From {a} (allowed: {allowed})",
                sender.how, sender.account
            )
        })
        .collect();
    if !evidence.is_empty() {
        out.push(IdentitySymbol {
            name: LOGIN_HEADER_FROM_MISMATCH,
            factor: 1.0,
            evidence,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_alignment_uses_the_public_suffix_list() {
        assert!(aligned(
            "mail.example.co.uk",
            "example.co.uk",
            AlignMode::Relaxed
        ));
        assert!(!aligned(
            "mail.example.co.uk",
            "example.co.uk",
            AlignMode::Strict
        ));
        assert!(!aligned("example.co.uk", "other.co.uk", AlignMode::Relaxed));
        assert_eq!(organizational_domain("a.b.example.com."), "example.com");
    }

    #[test]
    fn header_from_is_parsed_from_the_raw_message() {
        let raw = b"From: \"Support\" <Support@PayPal.com>\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(header_from_addresses(raw), vec!["support@paypal.com"]);
        assert!(header_from_addresses(b"Subject: none\r\n\r\n").is_empty());
    }
}
