//! SPF and DMARC-policy lookups against a real DNS server (dnsmasq) on
//! loopback: every RFC 7208 result, include/redirect/a/mx/ip6/exists, the
//! lookup limit, syntax errors, DNS outages within the budget, and the shared
//! TTL cache.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::identity::{dead_port, Dns, SilentDns, EGRESS, EGRESS6};
use outscore::auth::identity::IdentityChecker;
use outscore::auth::spf::SpfChecker;
use outscore::config::{Config, SpfConfig};
use outscore::envelope::{Client, Envelope};
use outscore::rules::identity::{
    evaluate, DmarcLookup, DmarcPolicy, IdentityOptions, IpRole, SpfCheck, SpfIdentity, SpfVerdict,
};

fn config(resolver: SocketAddr) -> SpfConfig {
    SpfConfig {
        egress_ips: vec![EGRESS.parse().unwrap()],
        resolver: Some(resolver),
        lookup_timeout: Duration::from_secs(2),
        budget: Duration::from_secs(5),
        ..SpfConfig::default()
    }
}

fn deadline(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + d
}

async fn check(checker: &SpfChecker, domain: &str, ip: &str) -> SpfCheck {
    let ip: IpAddr = ip.parse().unwrap();
    checker
        .check_host(
            SpfIdentity::MailFrom,
            domain,
            &format!("user@{domain}"),
            "relay.outscore.test",
            "relay.outscore.test",
            ip,
            IpRole::Egress,
            deadline(Duration::from_secs(5)),
        )
        .await
}

#[tokio::test]
async fn every_rfc7208_result_from_a_real_dns_server() {
    let dns = Dns::start();
    let checker = SpfChecker::new(&config(dns.addr)).unwrap();
    let cases: &[(&str, &str, SpfVerdict)] = &[
        ("pass.test", EGRESS, SpfVerdict::Pass),
        ("fail.test", EGRESS, SpfVerdict::Fail),
        ("softfail.test", EGRESS, SpfVerdict::SoftFail),
        ("neutral.test", EGRESS, SpfVerdict::Neutral),
        ("nospf.test", EGRESS, SpfVerdict::None),
        ("no-such-domain.test", EGRESS, SpfVerdict::None),
        ("syntax.test", EGRESS, SpfVerdict::PermError),
        ("two.test", EGRESS, SpfVerdict::PermError),
        ("many.test", EGRESS, SpfVerdict::PermError),
        ("badinclude.test", EGRESS, SpfVerdict::PermError),
        // Mechanisms.
        ("incl.test", EGRESS, SpfVerdict::Pass),
        ("incl.test", "203.0.113.9", SpfVerdict::Fail),
        ("redir.test", EGRESS, SpfVerdict::Pass),
        ("redir.test", "203.0.113.9", SpfVerdict::Fail),
        ("arec.test", EGRESS, SpfVerdict::Pass),
        ("arec.test", "192.0.2.26", SpfVerdict::Fail),
        ("mxrec.test", EGRESS, SpfVerdict::Pass),
        ("mxrec.test", "192.0.2.26", SpfVerdict::Fail),
        ("six.test", EGRESS6, SpfVerdict::Pass),
        ("six.test", "2001:db9::1", SpfVerdict::Fail),
        ("exists.test", EGRESS, SpfVerdict::Pass),
        ("exists.test", "192.0.2.26", SpfVerdict::Fail),
    ];
    let mut failures = Vec::new();
    for (domain, ip, want) in cases {
        let got = check(&checker, domain, ip).await;
        if got.result != *want {
            failures.push(format!("{domain} from {ip}: want {want}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn evidence_shows_ip_domain_record_and_result() {
    let dns = Dns::start();
    let checker = SpfChecker::new(&config(dns.addr)).unwrap();
    let fail = check(&checker, "fail.test", EGRESS).await;
    let line = fail.evidence();
    for needle in [
        "spf=fail",
        "fail.test",
        EGRESS,
        "\"v=spf1 ip4:203.0.113.1 -all\"",
    ] {
        assert!(line.contains(needle), "{needle:?} missing in {line}");
    }
    let chain = check(&checker, "incl.test", EGRESS).await;
    assert_eq!(
        chain.record.as_deref(),
        Some("v=spf1 include:_spf.incl.test -all")
    );
    assert_eq!(chain.consulted, vec!["_spf.incl.test", "_spf2.incl.test"]);
    assert!(chain
        .evidence()
        .contains("via _spf.incl.test, _spf2.incl.test"));
    let syntax = check(&checker, "syntax.test", EGRESS).await;
    assert!(
        syntax.evidence().contains("ip4:not-an-address"),
        "{}",
        syntax.evidence()
    );
    let many = check(&checker, "many.test", EGRESS).await;
    assert!(
        many.evidence().contains("more than 10"),
        "{}",
        many.evidence()
    );
    let two = check(&checker, "two.test", EGRESS).await;
    assert!(
        two.evidence().contains("2 SPF records"),
        "{}",
        two.evidence()
    );
}

#[tokio::test]
async fn envelope_identity_and_ips() {
    let dns = Dns::start();
    let mut cfg = config(dns.addr);
    cfg.check_client_ip = true;
    let checker = SpfChecker::new(&cfg).unwrap();
    let envelope = Envelope {
        client: Client {
            addr: Some("198.51.100.7".parse().unwrap()),
            helo: Some("pass.test".into()),
            ..Client::default()
        },
        mail_from: "someone@fail.test".into(),
        ..Envelope::default()
    };
    let checks = checker
        .check_envelope(&envelope, deadline(Duration::from_secs(5)))
        .await;
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(checks[0].role, IpRole::Egress);
    assert_eq!(checks[0].ip.to_string(), EGRESS);
    assert_eq!(checks[0].domain, "fail.test");
    assert_eq!(checks[0].identity, SpfIdentity::MailFrom);
    assert_eq!(checks[1].role, IpRole::Client);
    assert_eq!(checks[1].ip.to_string(), "198.51.100.7");

    // A bounce: the HELO name is checked instead.
    let bounce = Envelope {
        mail_from: String::new(),
        ..envelope.clone()
    };
    let checks = checker
        .check_envelope(&bounce, deadline(Duration::from_secs(5)))
        .await;
    assert_eq!(checks[0].identity, SpfIdentity::Helo);
    assert_eq!(checks[0].domain, "pass.test");
    assert_eq!(checks[0].result, SpfVerdict::Pass);

    // A bounce without a usable HELO name: none, with the reason.
    let bare = Envelope {
        client: Client {
            helo: Some("[192.0.2.9]".into()),
            ..Client::default()
        },
        ..Envelope::default()
    };
    let checks = checker
        .check_envelope(&bare, deadline(Duration::from_secs(5)))
        .await;
    assert_eq!(checks[0].result, SpfVerdict::None);
    assert!(checks[0].evidence().contains("no usable HELO"));
}

#[tokio::test]
async fn answers_are_cached_across_messages_until_their_ttl() {
    let mut dns = Dns::start();
    let checker = SpfChecker::new(&config(dns.addr)).unwrap();
    let first = check(&checker, "incl.test", EGRESS).await;
    assert_eq!(first.result, SpfVerdict::Pass);
    assert!(first.dns_queries >= 3, "{first:?}");
    let dmarc = checker
        .dmarc_policy("paypal.com", deadline(Duration::from_secs(5)))
        .await;
    assert!(matches!(dmarc, DmarcLookup::Found(_)), "{dmarc:?}");

    // "No record" answers are cached too.
    for domain in ["nospf.test", "no-such-domain.test"] {
        assert_eq!(
            check(&checker, domain, EGRESS).await.result,
            SpfVerdict::None
        );
    }
    let absent = checker
        .dmarc_policy("nospf.test", deadline(Duration::from_secs(5)))
        .await;
    assert_eq!(absent, DmarcLookup::NotFound);

    dns.stop();
    for domain in ["nospf.test", "no-such-domain.test"] {
        let again = check(&checker, domain, EGRESS).await;
        assert_eq!(again.result, SpfVerdict::None, "{again:?}");
        assert_eq!(again.dns_queries, 0, "{again:?}");
    }
    let absent = checker
        .dmarc_policy("nospf.test", deadline(Duration::from_secs(5)))
        .await;
    assert_eq!(absent, DmarcLookup::NotFound);
    let second = check(&checker, "incl.test", EGRESS).await;
    assert_eq!(second.result, SpfVerdict::Pass, "{second:?}");
    assert_eq!(second.dns_queries, 0, "{second:?}");
    assert_eq!(second.record, first.record);
    assert_eq!(second.consulted, first.consulted);
    let dmarc = checker
        .dmarc_policy("paypal.com", deadline(Duration::from_secs(5)))
        .await;
    assert!(matches!(dmarc, DmarcLookup::Found(_)), "{dmarc:?}");

    // Something never asked before needs the (now dead) server: temperror.
    let fresh = check(&checker, "pass.test", EGRESS).await;
    assert_eq!(fresh.result, SpfVerdict::TempError, "{fresh:?}");
}

#[tokio::test]
async fn cache_entries_expire_with_the_ttl() {
    let mut dns = Dns::start_with_ttl(1);
    let checker = SpfChecker::new(&config(dns.addr)).unwrap();
    assert_eq!(
        check(&checker, "pass.test", EGRESS).await.result,
        SpfVerdict::Pass
    );
    dns.stop();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = check(&checker, "pass.test", EGRESS).await;
    assert_eq!(after.result, SpfVerdict::TempError, "{after:?}");
}

#[tokio::test]
async fn dns_outage_is_temperror_within_the_budget() {
    // Nothing listening: refused at once.
    let mut cfg = config(dead_port());
    cfg.lookup_timeout = Duration::from_millis(500);
    let checker = SpfChecker::new(&cfg).unwrap();
    let started = Instant::now();
    let down = check(&checker, "pass.test", EGRESS).await;
    assert_eq!(down.result, SpfVerdict::TempError, "{down:?}");
    assert!(down.detail.is_some());
    assert!(started.elapsed() < Duration::from_secs(5));

    // A server that never answers, with a per-lookup timeout far above the
    // budget: the budget ends it.
    let silent = SilentDns::start();
    let mut cfg = config(silent.addr);
    cfg.lookup_timeout = Duration::from_secs(30);
    cfg.budget = Duration::from_millis(300);
    let checker = SpfChecker::new(&cfg).unwrap();
    let envelope = Envelope {
        mail_from: "a@pass.test".into(),
        ..Envelope::default()
    };
    let started = Instant::now();
    let facts = checker.gather(&envelope, Some("paypal.com")).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(250), "took {elapsed:?}");
    assert_eq!(facts.spf[0].result, SpfVerdict::TempError);
    assert!(
        facts.spf[0].evidence().contains("budget"),
        "{}",
        facts.spf[0].evidence()
    );
    assert!(
        matches!(facts.dmarc, DmarcLookup::TempError(_)),
        "{:?}",
        facts.dmarc
    );

    // The per-lookup timeout alone also ends a silent lookup.
    let mut cfg = config(silent.addr);
    cfg.lookup_timeout = Duration::from_millis(200);
    cfg.budget = Duration::from_secs(30);
    let checker = SpfChecker::new(&cfg).unwrap();
    let started = Instant::now();
    let timed_out = check(&checker, "pass.test", EGRESS).await;
    assert_eq!(timed_out.result, SpfVerdict::TempError, "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Temperror is a symbol, never more.
    let symbols = evaluate(&envelope, &[], &facts, None, IdentityOptions::default());
    assert_eq!(symbols.len(), 1, "{symbols:?}");
    assert_eq!(symbols[0].name, "SPF_TEMPERROR");
}

#[tokio::test]
async fn dmarc_policy_lookup() {
    let dns = Dns::start();
    let checker = SpfChecker::new(&config(dns.addr)).unwrap();
    let d = deadline(Duration::from_secs(5));
    let DmarcLookup::Found(reject) = checker.dmarc_policy("PayPal.com", d).await else {
        panic!("no record for paypal.com");
    };
    assert_eq!(reject.policy, DmarcPolicy::Reject);
    assert_eq!(reject.found_at, "_dmarc.paypal.com");
    // A subdomain without its own record: the organisational domain's sp=.
    let DmarcLookup::Found(sub) = checker.dmarc_policy("mail.orgonly.test", d).await else {
        panic!("no record via the organisational domain");
    };
    assert_eq!(sub.policy, DmarcPolicy::Quarantine);
    assert_eq!(sub.found_at, "_dmarc.orgonly.test");
    assert_eq!(
        checker.dmarc_policy("orgonly.test", d).await,
        DmarcLookup::Found(outscore::rules::identity::DmarcRecord {
            from_domain: "orgonly.test".into(),
            found_at: "_dmarc.orgonly.test".into(),
            policy: DmarcPolicy::None,
            aspf: outscore::rules::identity::AlignMode::Relaxed,
        })
    );
    assert_eq!(
        checker.dmarc_policy("nospf.test", d).await,
        DmarcLookup::NotFound
    );
}

/// The scenario: login alice@customer.example, MAIL FROM
/// ceo@bank.example, header From support@paypal.com, through the one call
/// the pipeline makes, with a config file and an accounts file.
#[tokio::test]
async fn compromised_account_sending_as_a_bank_and_paypal() {
    let dns = Dns::start();
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.toml");
    std::fs::write(
        &accounts,
        "[[account]]\nlogin = \"alice@customer.example\"\naliases = [\"info@customer.example\"]\n",
    )
    .unwrap();
    let text = format!(
        "[spf]\negress_ips = [\"{EGRESS}\"]\nresolver = \"{}\"\nbudget = \"3s\"\n\
         [identity]\naccounts_file = \"{}\"\n",
        dns.addr,
        accounts.display()
    );
    let config = Config::parse(Path::new("outscore.toml"), &text).unwrap();
    let checker = IdentityChecker::from_config(&config).unwrap();
    let envelope = Envelope {
        auth_login: Some("alice@customer.example".into()),
        mail_from: "ceo@bank.example".into(),
        rcpts: vec!["victim@example.net".into()],
        client: Client {
            addr: Some("198.51.100.7".parse().unwrap()),
            helo: Some("pc.customer.example".into()),
            ..Client::default()
        },
        ..Envelope::default()
    };
    let raw = b"From: PayPal <support@paypal.com>\r\nTo: victim@example.net\r\n\
                Subject: Your account\r\n\r\nVerify now.\r\n";
    let outcome = checker.check(&envelope, raw).await;
    let by_name = |name: &str| {
        outcome
            .symbols
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing: {:#?}", outcome.symbols))
    };
    let spf = by_name("SPF_FAIL");
    assert!(spf.evidence[0].contains("bank.example"), "{spf:?}");
    assert!(spf.evidence[0].contains(EGRESS));
    assert!(spf.evidence[0].contains("v=spf1 ip4:203.0.113.0/24 -all"));
    assert!(by_name("LOGIN_MAILFROM_MISMATCH").evidence[0].contains("(mail from)"));
    assert!(by_name("LOGIN_HEADER_FROM_MISMATCH").evidence[0].contains("(header)"));
    assert!(by_name("FROM_MAILFROM_MISALIGNED").evidence[0].contains("paypal.com"));
    let dmarc = by_name("DMARC_POLICY_REJECT_MISALIGNED");
    assert!(dmarc.evidence[0].contains("_dmarc.paypal.com"), "{dmarc:?}");
    assert_eq!(outcome.symbols.len(), 5, "{:#?}", outcome.symbols);

    // The same account sending as itself through the relay: SPF passes,
    // everything aligns, nothing else fires (its domain has p=reject, aspf=s).
    let clean = Envelope {
        mail_from: "info@customer.example".into(),
        ..envelope
    };
    let raw = b"From: Alice <alice@customer.example>\r\nSubject: hi\r\n\r\nhello\r\n";
    let outcome = checker.check(&clean, raw).await;
    let names: Vec<_> = outcome.symbols.iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["SPF_PASS"], "{:#?}", outcome.symbols);
}

/// The same compromised account, through the milter: the daemon's pipeline
/// with the identity checker, over a real milter connection on loopback.
/// With the sender-mismatch policy set to score, the symbols reach the
/// `X-Outscore-Report` header and the stored report keeps their evidence.
#[tokio::test]
async fn compromised_account_through_the_milter() {
    use outscore::milter::client::{
        MilterClient, Submission, POSTFIX_ACTIONS, POSTFIX_PROTOCOL, POSTFIX_VERSION,
    };
    use outscore::milter::{Reply, SessionOptions};
    use outscore::pipeline::{Pipeline, PipelineOptions};
    use outscore::server::{Listener, Server};
    use outscore::store::{self, ReportStore};
    use std::sync::Arc;

    let dns = Dns::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[spf]\negress_ips = [\"{EGRESS}\"]\nresolver = \"{}\"\nbudget = \"3s\"\n[message_policy]\nsender_mismatch = \"score\"\n",
        dir.path().display(),
        dns.addr,
    );
    let config = Config::parse(Path::new("outscore.toml"), &text).unwrap();
    let db = store::open(&config).await.unwrap();
    let (sink, writer) = store::spawn_writer(db.clone(), &config).unwrap();
    let rules =
        outscore::ruleset::SharedRules::new(outscore::ruleset::RuleSet::compile(&config).unwrap());
    let pipeline = Arc::new(
        Pipeline::with_rules(
            rules,
            PipelineOptions {
                add_headers: true,
                header_prefix: "X-Outscore".into(),
            },
        )
        .with_identity(Arc::new(IdentityChecker::from_config(&config).unwrap()))
        .with_reports(sink),
    );
    let listener = Listener::bind(&"inet:127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let outscore::milter::ListenAddr::Tcp(addr) = listener.local_addr() else {
        panic!("tcp listener")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let server = Server::new(
        vec![listener],
        pipeline,
        SessionOptions::default(),
        8,
        Duration::from_secs(5),
    );
    let token = stop.clone();
    let task = tokio::spawn(async move { server.run(token).await });

    let mut c = MilterClient::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    c.negotiate(POSTFIX_VERSION, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)
        .await
        .unwrap();
    c.connect("pc.customer.example", "198.51.100.7", "pc.customer.example")
        .await
        .unwrap();
    let out = c
        .send_message(&Submission {
            mail_from: "<ceo@bank.example>".into(),
            rcpts: vec!["<victim@example.net>".into()],
            mail_macros: vec![("{auth_authen}".into(), "alice@customer.example".into())],
            headers: vec![
                ("From".into(), "PayPal <support@paypal.com>".into()),
                ("To".into(), "victim@example.net".into()),
                ("Subject".into(), "Your account".into()),
            ],
            body: bytes::Bytes::from_static(b"Verify now.\r\n"),
        })
        .await
        .unwrap();
    let header = out
        .eom
        .iter()
        .find_map(|r| match r {
            Reply::AddHeader { name, value } if name == "X-Outscore-Report" => Some(value.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no report header: {out:?}"));
    for symbol in [
        "SPF_FAIL",
        "LOGIN_MAILFROM_MISMATCH",
        "LOGIN_HEADER_FROM_MISMATCH",
        "FROM_MAILFROM_MISALIGNED",
        "DMARC_POLICY_REJECT_MISALIGNED",
    ] {
        assert!(header.contains(symbol), "{symbol} not in {header:?}");
    }
    stop.cancel();
    task.await.unwrap();
    writer.shutdown().await;

    let listed = db
        .list_reports(&Default::default(), 10, None)
        .await
        .unwrap();
    let stored = db.report(&listed.reports[0].id).await.unwrap().unwrap();
    let evidence = |name: &str| stored.report.symbol(name).unwrap().evidence.join(" | ");
    assert!(evidence("SPF_FAIL").contains("bank.example"));
    assert!(evidence("SPF_FAIL").contains(EGRESS));
    assert!(evidence("LOGIN_MAILFROM_MISMATCH").contains("(mail from)"));
    assert!(evidence("LOGIN_HEADER_FROM_MISMATCH").contains("(header)"));
    assert!(evidence("DMARC_POLICY_REJECT_MISALIGNED").contains("_dmarc.paypal.com"));
}
