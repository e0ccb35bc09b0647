//! SMTP envelope facts of one message: who connected, who logged in, who the
//! message is from and for. Plain data shared by the milter layer (which fills
//! it), the pipeline and the rules (which read it); it knows nothing else.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How the client reached the MTA, as the milter CONNECT step reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Unknown or not reported.
    #[default]
    Unknown,
    Inet,
    Inet6,
    /// A unix-domain socket (local submission).
    Unix,
}

/// Facts about the SMTP client connection; one per milter connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Verified host name, or `[ip]` when Postfix could not verify one.
    pub hostname: String,
    pub family: Family,
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// The HELO/EHLO name, when the client sent one.
    pub helo: Option<String>,
}

/// Everything known about one message before its content is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub client: Client,
    /// SASL login (`{auth_authen}`), when the client authenticated.
    pub auth_login: Option<String>,
    /// SASL mechanism (`{auth_type}`).
    pub auth_type: Option<String>,
    /// Envelope sender without angle brackets; empty for the null sender.
    pub mail_from: String,
    /// ESMTP parameters of MAIL FROM as the client sent them (`SIZE=123`).
    pub mail_args: Vec<String>,
    /// Accepted recipients, without angle brackets, in order.
    pub rcpts: Vec<String>,
    /// Postfix queue id (`i` macro), once known.
    pub queue_id: Option<String>,
    /// MTA host name (`j` macro).
    pub mta_host: Option<String>,
    /// `true` when the message came from sendmail(1) (`non_smtpd_milters`)
    /// rather than an SMTP session.
    pub local_submission: bool,
    /// Every macro seen for this message, latest value wins.
    pub macros: BTreeMap<String, String>,
}

impl Envelope {
    /// The `SIZE=` the client declared at MAIL FROM, if any.
    pub fn declared_size(&self) -> Option<u64> {
        self.mail_args.iter().find_map(|arg| {
            let (key, value) = arg.split_once('=')?;
            key.eq_ignore_ascii_case("size")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
    }

    /// The domain part of the envelope sender, lower-cased.
    pub fn mail_from_domain(&self) -> Option<String> {
        domain_of(&self.mail_from)
    }
}

/// The lower-cased domain of an address (`user@Example.COM` → `example.com`).
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Strip the angle brackets Postfix keeps around SMTP addresses; sendmail(1)
/// addresses come without them.
pub fn strip_brackets(address: &str) -> &str {
    let address = address.trim();
    address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_size_is_case_insensitive() {
        let env = Envelope {
            mail_args: vec!["BODY=8BITMIME".into(), "size=2048".into()],
            ..Default::default()
        };
        assert_eq!(env.declared_size(), Some(2048));
    }

    #[test]
    fn brackets_and_domains() {
        assert_eq!(strip_brackets("<a@b.c>"), "a@b.c");
        assert_eq!(strip_brackets("<>"), "");
        assert_eq!(strip_brackets("local@host"), "local@host");
        assert_eq!(domain_of("Bob@Example.COM."), Some("example.com".into()));
        assert_eq!(domain_of("postmaster"), None);
    }
}
