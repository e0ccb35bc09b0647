//! SPF (RFC 7208) for the envelope sender and the DMARC policy of the header
//! From domain, over DNS with mail-auth and its hickory resolver. Every lookup
//! has a timeout, every message a budget, and answers are cached by TTL across
//! messages. The outcome is [`IdentityFacts`]: plain data for the identity
//! rules. A DNS outage gives temperror, never an `Err`. Knows nothing of
//! scoring or milter.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::resolver::ToFqdn;
use mail_auth::dmarc::{self, Dmarc};
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::Spf;
use mail_auth::{MessageAuthenticator, Parameters, RecordSet, SpfResult, Txt, MX};

use super::cache::{Tracked, TtlCache};
use crate::config::SpfConfig;
use crate::envelope::Envelope;
use crate::rules::identity::{
    organizational_domain, AlignMode, DmarcLookup, DmarcPolicy, DmarcRecord, IdentityFacts, IpRole,
    SpfCheck, SpfIdentity, SpfVerdict,
};

/// RFC 7208 4.6.4: at most this many mechanisms that query DNS.
const LOOKUP_LIMIT: usize = 10;

/// Could not set up the resolver.
#[derive(Debug, thiserror::Error)]
pub enum SpfError {
    #[error("cannot set up the DNS resolver ({source_desc}): {message}")]
    Resolver {
        source_desc: String,
        message: String,
    },
}

/// The answers kept across messages.
struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    /// The text of SPF records read at the top of an evaluation; empty
    /// caches "no SPF record".
    spf_text: TtlCache<Box<str>, Arc<str>>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    /// DMARC records by `_dmarc.` name; `None` caches "no record".
    dmarc: TtlCache<Box<str>, Option<Arc<Dmarc>>>,
}

/// SPF and DMARC-policy checker. One per daemon; cheap to share (`Arc`).
pub struct SpfChecker {
    auth: MessageAuthenticator,
    caches: Caches,
    egress_ips: Vec<IpAddr>,
    check_client_ip: bool,
    budget: Duration,
}

/// How long "no record" answers are kept at most (and when the server sends
/// no SOA to say).
const NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// A raw TXT answer.
enum TxtAnswer {
    /// Each record's strings joined, and when the answer expires.
    Records(Vec<String>, Instant),
    /// NXDOMAIN or no TXT records, and until when that may be believed.
    Missing(Instant),
    /// The server failed or timed out.
    Failed(String),
}

/// A top-level SPF record read, or why not.
enum TopRecord {
    Found(Arc<str>),
    Missing,
    Error(SpfVerdict, String),
}

impl SpfChecker {
    /// Build the resolver from `[spf]`: the configured server (tests point it
    /// at a loopback DNS server) or `/etc/resolv.conf`.
    pub fn new(config: &SpfConfig) -> Result<SpfChecker, SpfError> {
        let (resolver_config, mut opts, source_desc) =
            match config.resolver {
                Some(addr) => {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for conn in &mut ns.connections {
                        conn.port = addr.port();
                    }
                    (
                        ResolverConfig::from_name_servers(vec![ns]),
                        ResolverOpts::default(),
                        addr.to_string(),
                    )
                }
                None => {
                    let (c, o) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                        .map_err(|e| SpfError::Resolver {
                            source_desc: "/etc/resolv.conf".into(),
                            message: e.to_string(),
                        })?;
                    (c, o, "/etc/resolv.conf".into())
                }
            };
        opts.timeout = config.lookup_timeout;
        opts.attempts = 1;
        // One cache, ours: TTL-bounded, shared, and observable in tests.
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let auth =
            MessageAuthenticator::new(resolver_config, opts).map_err(|e| SpfError::Resolver {
                source_desc: source_desc.clone(),
                message: e.to_string(),
            })?;
        let n = config.cache_entries;
        Ok(SpfChecker {
            auth,
            caches: Caches {
                txt: TtlCache::new(n),
                spf_text: TtlCache::new(n),
                mx: TtlCache::new(n),
                ipv4: TtlCache::new(n),
                ipv6: TtlCache::new(n),
                ptr: TtlCache::new(n),
                dmarc: TtlCache::new(n),
            },
            egress_ips: config.egress_ips.clone(),
            check_client_ip: config.check_client_ip,
            budget: config.budget,
        })
    }

    /// Everything the identity rules need from DNS for one message, within
    /// the budget: SPF of the MAIL FROM domain (HELO name for bounces) for
    /// every egress IP (and the client IP if configured), and the DMARC
    /// policy of `from_domain`.
    pub async fn gather(&self, envelope: &Envelope, from_domain: Option<&str>) -> IdentityFacts {
        let deadline = tokio::time::Instant::now() + self.budget;
        let spf = self.check_envelope(envelope, deadline);
        let dmarc = async {
            match from_domain {
                Some(domain) => self.dmarc_policy(domain, deadline).await,
                None => DmarcLookup::NotChecked,
            }
        };
        let (spf, dmarc) = tokio::join!(spf, dmarc);
        IdentityFacts { spf, dmarc }
    }

    /// SPF for the envelope's identity against every IP to check.
    pub async fn check_envelope(
        &self,
        envelope: &Envelope,
        deadline: tokio::time::Instant,
    ) -> Vec<SpfCheck> {
        let mut ips: Vec<(IpAddr, IpRole)> = self
            .egress_ips
            .iter()
            .map(|ip| (*ip, IpRole::Egress))
            .collect();
        if self.check_client_ip {
            if let Some(ip) = envelope.client.addr {
                if !ips.iter().any(|(i, _)| *i == ip) {
                    ips.push((ip, IpRole::Client));
                }
            }
        }
        let helo = envelope
            .client
            .helo
            .as_deref()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default();
        let (identity, domain) = match envelope.mail_from_domain() {
            Some(domain) => (SpfIdentity::MailFrom, domain),
            None => (SpfIdentity::Helo, helo.clone()),
        };
        let host = envelope
            .mta_host
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let checks = ips.into_iter().map(|(ip, role)| {
            let domain = domain.clone();
            let helo = helo.clone();
            let host = host.clone();
            async move {
                let sender = match identity {
                    SpfIdentity::MailFrom => envelope.mail_from.to_ascii_lowercase(),
                    SpfIdentity::Helo => format!("postmaster@{domain}"),
                };
                self.check_host(identity, &domain, &sender, &helo, &host, ip, role, deadline)
                    .await
            }
        });
        futures::future::join_all(checks).await
    }

    /// RFC 7208 `check_host()` of `domain` for `ip`, bounded by `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_host(
        &self,
        identity: SpfIdentity,
        domain: &str,
        sender: &str,
        helo: &str,
        host: &str,
        ip: IpAddr,
        role: IpRole,
        deadline: tokio::time::Instant,
    ) -> SpfCheck {
        let mut check = SpfCheck {
            identity,
            domain: domain.to_string(),
            ip,
            role,
            result: SpfVerdict::None,
            record: None,
            consulted: Vec::new(),
            detail: None,
            dns_queries: 0,
        };
        if !is_domain_name(domain) {
            check.detail = Some(match identity {
                SpfIdentity::MailFrom => "mail from domain is not a domain name".into(),
                SpfIdentity::Helo => "null sender and no usable HELO name".into(),
            });
            if check.domain.is_empty() {
                check.domain = "(none)".into();
            }
            return check;
        }
        let misses = AtomicU32::new(0);
        let txt = Tracked::new(&self.caches.txt, &misses);
        let mx = Tracked::new(&self.caches.mx, &misses);
        let ipv4 = Tracked::new(&self.caches.ipv4, &misses);
        let ipv6 = Tracked::new(&self.caches.ipv6, &misses);
        let ptr = Tracked::new(&self.caches.ptr, &misses);
        let started = Instant::now();
        let evaluation = async {
            match self.top_record(domain, &misses).await {
                TopRecord::Missing => (SpfVerdict::None, None, None),
                TopRecord::Error(verdict, detail) => (verdict, None, Some(detail)),
                TopRecord::Found(text) => {
                    let params =
                        Parameters::new(SpfParameters::verify_mail_from(ip, helo, host, sender))
                            .with_txt_cache(&txt)
                            .with_mx_cache(&mx)
                            .with_ipv4_cache(&ipv4)
                            .with_ipv6_cache(&ipv6)
                            .with_ptr_cache(&ptr);
                    let output = self.auth.check_host(params).await;
                    (verdict_of(output.result()), Some(text), None)
                }
            }
        };
        match tokio::time::timeout_at(deadline, evaluation).await {
            Ok((result, record, detail)) => {
                check.result = result;
                check.record = record.map(|r| r.to_string());
                check.detail = detail;
                if result == SpfVerdict::TempError && check.detail.is_none() {
                    check.detail = Some("a DNS lookup failed or timed out".into());
                }
            }
            Err(_) => {
                check.result = SpfVerdict::TempError;
                check.record = self
                    .caches
                    .spf_text
                    .get_entry(domain.to_fqdn().as_ref())
                    .map(|(_, t)| t.to_string());
                check.detail = Some(format!(
                    "DNS budget spent after {} ms",
                    started.elapsed().as_millis()
                ));
            }
        }
        let top = domain.to_fqdn().into_owned();
        check.consulted = txt
            .names()
            .into_iter()
            .filter(|n| *n != top)
            .map(|n| n.trim_end_matches('.').to_string())
            .collect();
        check.dns_queries = misses.load(Ordering::Relaxed);
        if check.result == SpfVerdict::PermError
            && check.detail.is_none()
            && check.consulted.len() >= LOOKUP_LIMIT
        {
            check.detail = Some(format!(
                "more than {LOOKUP_LIMIT} DNS-querying mechanisms (RFC 7208 4.6.4)"
            ));
        }
        check
    }

    /// Read `domain`'s SPF record (text and parsed), from the cache or DNS,
    /// and leave the parsed record in the cache where mail-auth finds it.
    async fn top_record(&self, domain: &str, misses: &AtomicU32) -> TopRecord {
        let key = domain.to_fqdn().into_owned();
        if let Some((_, text)) = self.caches.spf_text.get_entry(key.as_str()) {
            if text.is_empty() {
                return TopRecord::Missing;
            }
            if self.caches.txt.get_entry(key.as_str()).is_some() {
                return TopRecord::Found(text);
            }
        }
        misses.fetch_add(1, Ordering::Relaxed);
        let (records, valid_until) = match self.txt(&key).await {
            TxtAnswer::Records(records, until) => (records, until),
            TxtAnswer::Missing(until) => {
                self.caches
                    .spf_text
                    .put(key.into_boxed_str(), Arc::from(""), until);
                return TopRecord::Missing;
            }
            TxtAnswer::Failed(e) => return TopRecord::Error(SpfVerdict::TempError, e),
        };
        let records: Vec<String> = records.into_iter().filter(|t| is_spf1(t)).collect();
        match records.len() {
            0 => {
                self.caches
                    .spf_text
                    .put(key.into_boxed_str(), Arc::from(""), valid_until);
                TopRecord::Missing
            }
            1 => {
                let text: Arc<str> = Arc::from(records[0].as_str());
                let parsed = match Spf::parse(text.as_bytes()) {
                    Ok(spf) => Txt::Spf(Arc::new(spf)),
                    Err(e) => Txt::Error(e),
                };
                self.caches
                    .txt
                    .put(key.clone().into_boxed_str(), parsed, valid_until);
                self.caches
                    .spf_text
                    .put(key.into_boxed_str(), text.clone(), valid_until);
                TopRecord::Found(text)
            }
            n => TopRecord::Error(
                SpfVerdict::PermError,
                format!("{n} SPF records published: {}", records.join(" | ")),
            ),
        }
    }

    /// The TXT strings at `fqdn`, each record's strings joined.
    async fn txt(&self, fqdn: &str) -> TxtAnswer {
        let name = match Name::from_str_relaxed(fqdn) {
            Ok(name) => name,
            Err(e) => return TxtAnswer::Failed(format!("bad name {fqdn}: {e}")),
        };
        match self.auth.resolver().txt_lookup(name).await {
            Ok(lookup) => {
                let records = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part).into_owned())
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect();
                TxtAnswer::Records(records, lookup.valid_until())
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => {
                let ttl = none
                    .negative_ttl
                    .map_or(NEGATIVE_TTL, |s| Duration::from_secs(s.into()))
                    .min(NEGATIVE_TTL);
                TxtAnswer::Missing(Instant::now() + ttl)
            }
            Err(e) => TxtAnswer::Failed(e.to_string()),
        }
    }

    /// The DMARC policy for `from_domain`: `_dmarc.<domain>`, else the
    /// organisational domain's record and its `sp=` (RFC 7489 6.6.3).
    pub async fn dmarc_policy(
        &self,
        from_domain: &str,
        deadline: tokio::time::Instant,
    ) -> DmarcLookup {
        let from_domain = from_domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !is_domain_name(&from_domain) {
            return DmarcLookup::NotChecked;
        }
        let lookup = async {
            match self.dmarc_record(&from_domain).await {
                Ok(Some(record)) => {
                    return Ok(Some((format!("_dmarc.{from_domain}"), record.p, record)))
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let org = organizational_domain(&from_domain);
            if org == from_domain {
                return Ok(None);
            }
            match self.dmarc_record(&org).await {
                Ok(Some(record)) => Ok(Some((format!("_dmarc.{org}"), record.sp, record))),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout_at(deadline, lookup).await {
            Err(_) => DmarcLookup::TempError("DNS budget spent".into()),
            Ok(Err(e)) => DmarcLookup::TempError(e),
            Ok(Ok(None)) => DmarcLookup::NotFound,
            Ok(Ok(Some((found_at, policy, record)))) => DmarcLookup::Found(DmarcRecord {
                from_domain: from_domain.clone(),
                found_at,
                policy: match policy {
                    dmarc::Policy::Reject => DmarcPolicy::Reject,
                    dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
                    dmarc::Policy::None | dmarc::Policy::Unspecified => DmarcPolicy::None,
                },
                aspf: match record.aspf {
                    dmarc::Alignment::Strict => AlignMode::Strict,
                    dmarc::Alignment::Relaxed => AlignMode::Relaxed,
                },
            }),
        }
    }

    /// The DMARC record at `_dmarc.<domain>`: `Ok(None)` when there is none.
    async fn dmarc_record(&self, domain: &str) -> Result<Option<Arc<Dmarc>>, String> {
        let key = format!("_dmarc.{domain}").to_fqdn().into_owned();
        if let Some((_, record)) = self.caches.dmarc.get_entry(key.as_str()) {
            return Ok(record);
        }
        let (record, until) = match self.txt(&key).await {
            TxtAnswer::Failed(e) => return Err(e),
            TxtAnswer::Missing(until) => (None, until),
            TxtAnswer::Records(records, until) => (
                records
                    .iter()
                    .filter(|t| {
                        t.trim_start()
                            .get(..8)
                            .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
                    })
                    .find_map(|t| Dmarc::parse(t.as_bytes()).ok())
                    .map(Arc::new),
                until,
            ),
        };
        self.caches
            .dmarc
            .put(key.into_boxed_str(), record.clone(), until);
        Ok(record)
    }

    /// Entries in the shared TXT cache (for tests and metrics).
    pub fn cached_records(&self) -> usize {
        self.caches.txt.len()
    }
}

fn verdict_of(result: SpfResult) -> SpfVerdict {
    match result {
        SpfResult::Pass => SpfVerdict::Pass,
        SpfResult::Fail => SpfVerdict::Fail,
        SpfResult::SoftFail => SpfVerdict::SoftFail,
        SpfResult::Neutral => SpfVerdict::Neutral,
        SpfResult::None => SpfVerdict::None,
        SpfResult::PermError => SpfVerdict::PermError,
        SpfResult::TempError => SpfVerdict::TempError,
    }
}

/// `v=spf1` followed by a space or nothing (RFC 7208 4.5).
fn is_spf1(text: &str) -> bool {
    let t = text.trim_start();
    t.len() >= 6
        && t[..6].eq_ignore_ascii_case("v=spf1")
        && t[6..].chars().next().is_none_or(|c| c == ' ')
}

/// A plausible DNS name: dotted, labels of letters, digits, '-' and '_'.
fn is_domain_name(domain: &str) -> bool {
    domain.len() <= 253
        && domain.contains('.')
        && domain.parse::<IpAddr>().is_err()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_version_tag() {
        assert!(is_spf1("v=spf1 -all"));
        assert!(is_spf1("V=SPF1"));
        assert!(!is_spf1("v=spf10 -all"));
        assert!(!is_spf1("google-site-verification=x"));
    }

    #[test]
    fn domain_names() {
        assert!(is_domain_name("mail.example.com"));
        assert!(!is_domain_name("localhost"));
        assert!(!is_domain_name("192.0.2.1"));
        assert!(!is_domain_name("[192.0.2.1]"));
        assert!(!is_domain_name("a..b"));
    }
}
