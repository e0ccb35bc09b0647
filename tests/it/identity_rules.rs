//! The identity rules on their own (pure, no DNS): login vs MAIL FROM vs
//! header From with aliases, own-domain and authorised addresses; bounces;
//! alignment with the Public Suffix List; the DMARC-policy symbols; the
//! attribution of mail without SASL login; the accounts file.

use std::net::IpAddr;
use std::path::Path;

use outscore::auth::accounts::{AccountsDirectory, AccountsError};
use outscore::config::{Config, IdentityConfig, LocalAttribution};
use outscore::envelope::Envelope;
use outscore::rules::identity::{
    evaluate, header_from_addresses, AlignMode, DmarcLookup, DmarcPolicy, DmarcRecord,
    IdentityFacts, IdentityOptions, IdentitySymbol, IpRole, Sender, SpfCheck, SpfIdentity,
    SpfVerdict,
};

const ACCOUNTS: &str = r#"
[[account]]
login = "alice@customer.example"
aliases = ["Info@Customer.example"]
allowed = ["alice.private@gmail.com"]
domains = ["customer-shop.example"]

[[account]]
login = "bob@customer.example"
own_domain = true
"#;

fn directory(config: &IdentityConfig) -> AccountsDirectory {
    let mut dir = AccountsDirectory::from_config(config);
    dir.add_toml(Path::new("accounts.toml"), ACCOUNTS).unwrap();
    dir
}

fn message(from: &str) -> Vec<u8> {
    format!("From: Someone <{from}>\r\nTo: x@y.example\r\nSubject: hi\r\n\r\nbody\r\n").into_bytes()
}

fn envelope(login: Option<&str>, mail_from: &str) -> Envelope {
    Envelope {
        auth_login: login.map(String::from),
        mail_from: mail_from.into(),
        rcpts: vec!["x@y.example".into()],
        ..Envelope::default()
    }
}

fn run(
    env: &Envelope,
    raw: &[u8],
    facts: &IdentityFacts,
    dir: &AccountsDirectory,
) -> Vec<IdentitySymbol> {
    let sender = dir.sender(env);
    evaluate(
        env,
        &header_from_addresses(raw),
        facts,
        sender.as_ref(),
        IdentityOptions::default(),
    )
}

fn names(symbols: &[IdentitySymbol]) -> Vec<&'static str> {
    symbols.iter().map(|s| s.name).collect()
}

fn find<'a>(symbols: &'a [IdentitySymbol], name: &str) -> &'a IdentitySymbol {
    symbols
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} did not fire: {symbols:?}"))
}

fn spf(domain: &str, result: SpfVerdict) -> SpfCheck {
    SpfCheck {
        identity: SpfIdentity::MailFrom,
        domain: domain.into(),
        ip: "192.0.2.25".parse::<IpAddr>().unwrap(),
        role: IpRole::Egress,
        result,
        record: Some("v=spf1 ip4:203.0.113.0/24 -all".into()),
        consulted: vec![],
        detail: None,
        dns_queries: 1,
    }
}

fn dmarc(from: &str, policy: DmarcPolicy, aspf: AlignMode) -> DmarcLookup {
    DmarcLookup::Found(DmarcRecord {
        from_domain: from.into(),
        found_at: format!("_dmarc.{from}"),
        policy,
        aspf,
    })
}

#[test]
fn login_mismatch_says_which_identity_mismatched() {
    let dir = directory(&IdentityConfig::default());
    let env = envelope(Some("alice@customer.example"), "ceo@bank.example");
    let symbols = run(
        &env,
        &message("support@paypal.com"),
        &IdentityFacts::default(),
        &dir,
    );
    let mail_from = find(&symbols, "LOGIN_MAILFROM_MISMATCH");
    assert!(
        mail_from.evidence[0].contains("(mail from)"),
        "{mail_from:?}"
    );
    assert!(mail_from.evidence[0].contains("alice@customer.example"));
    assert!(mail_from.evidence[0].contains("ceo@bank.example"));
    let header = find(&symbols, "LOGIN_HEADER_FROM_MISMATCH");
    assert!(header.evidence[0].contains("(header)"), "{header:?}");
    assert!(header.evidence[0].contains("support@paypal.com"));
    assert!(!header.evidence[0].contains("ceo@bank.example"));
}

#[test]
fn allowed_identities_do_not_mismatch() {
    let dir = directory(&IdentityConfig::default());
    let allowed = [
        ("alice@customer.example", "ALICE@customer.example"),
        ("alice@customer.example", "info@customer.example"),
        ("alice@customer.example", "alice.private@gmail.com"),
        ("alice@customer.example", "sales@customer-shop.example"),
        ("bob@customer.example", "anyone@customer.example"),
        // Not in the directory: the login itself is always allowed.
        ("carol@other.example", "carol@other.example"),
    ];
    for (login, address) in allowed {
        let env = envelope(Some(login), address);
        let symbols = run(&env, &message(address), &IdentityFacts::default(), &dir);
        assert!(symbols.is_empty(), "{login} as {address}: {symbols:?}");
    }
    let refused = [
        // Alice may not use any address of her domain, only her aliases.
        ("alice@customer.example", "bob@customer.example"),
        ("bob@customer.example", "bob@customer-shop.example"),
        ("carol@other.example", "info@other.example"),
    ];
    for (login, address) in refused {
        let env = envelope(Some(login), address);
        let symbols = run(&env, &message(address), &IdentityFacts::default(), &dir);
        assert_eq!(
            names(&symbols),
            vec!["LOGIN_MAILFROM_MISMATCH", "LOGIN_HEADER_FROM_MISMATCH"],
            "{login} as {address}"
        );
    }
}

#[test]
fn own_domain_default_applies_to_unlisted_logins() {
    let config = IdentityConfig {
        own_domain_default: true,
        ..IdentityConfig::default()
    };
    let dir = directory(&config);
    let env = envelope(Some("carol@other.example"), "info@other.example");
    assert!(run(
        &env,
        &message("news@other.example"),
        &IdentityFacts::default(),
        &dir
    )
    .is_empty());
    // A listed account keeps its own setting (alice: own_domain unset → the
    // default; bob: explicitly true).
    let env = envelope(Some("alice@customer.example"), "bob@customer.example");
    assert!(run(
        &env,
        &message("bob@customer.example"),
        &IdentityFacts::default(),
        &dir
    )
    .is_empty());
}

#[test]
fn bounces_are_handled() {
    let dir = directory(&IdentityConfig::default());
    // An empty MAIL FROM claims no identity: no mail-from mismatch, no
    // misalignment; the header From is still the account's business.
    let env = envelope(Some("alice@customer.example"), "");
    let symbols = run(
        &env,
        &message("mailer-daemon@customer.example"),
        &IdentityFacts::default(),
        &dir,
    );
    assert_eq!(names(&symbols), vec!["LOGIN_HEADER_FROM_MISMATCH"]);
    let ok = run(
        &env,
        &message("alice@customer.example"),
        &IdentityFacts::default(),
        &dir,
    );
    assert!(ok.is_empty(), "{ok:?}");
    // A DMARC reject domain in the From of a bounce cannot align.
    let facts = IdentityFacts {
        spf: vec![],
        dmarc: dmarc("paypal.com", DmarcPolicy::Reject, AlignMode::Relaxed),
    };
    let symbols = run(&env, &message("service@paypal.com"), &facts, &dir);
    let heavy = find(&symbols, "DMARC_POLICY_REJECT_MISALIGNED");
    assert!(heavy.evidence[0].contains("null sender"), "{heavy:?}");
    assert!(!names(&symbols).contains(&"FROM_MAILFROM_MISALIGNED"));
}

#[test]
fn alignment_relaxed_and_strict_with_the_public_suffix_list() {
    let dir = AccountsDirectory::from_config(&IdentityConfig {
        attribution: LocalAttribution::None,
        ..IdentityConfig::default()
    });
    let facts = IdentityFacts::default();
    let env = envelope(None, "bounces@mail.example.co.uk");
    let raw = message("news@example.co.uk");
    let relaxed = run(&env, &raw, &facts, &dir);
    assert!(relaxed.is_empty(), "{relaxed:?}");
    let strict = evaluate(
        &env,
        &header_from_addresses(&raw),
        &facts,
        None,
        IdentityOptions {
            default_alignment: AlignMode::Strict,
        },
    );
    let sym = find(&strict, "FROM_MAILFROM_MISALIGNED");
    assert!(sym.evidence[0].contains("strict"), "{sym:?}");
    // Two registrable domains under the same public suffix never align.
    let other = run(&envelope(None, "a@other.co.uk"), &raw, &facts, &dir);
    let sym = find(&other, "FROM_MAILFROM_MISALIGNED");
    assert!(sym.evidence[0].contains("example.co.uk"));
    assert!(sym.evidence[0].contains("other.co.uk"));
    // The From domain's aspf=s overrides the relaxed default.
    let facts = IdentityFacts {
        spf: vec![],
        dmarc: dmarc("example.co.uk", DmarcPolicy::None, AlignMode::Strict),
    };
    assert_eq!(
        names(&run(&env, &raw, &facts, &dir)),
        vec!["FROM_MAILFROM_MISALIGNED"]
    );
}

#[test]
fn dmarc_policy_symbols() {
    let dir = AccountsDirectory::from_config(&IdentityConfig {
        attribution: LocalAttribution::None,
        ..IdentityConfig::default()
    });
    let env = envelope(None, "ceo@bank.example");
    let raw = message("support@paypal.com");
    let reject = IdentityFacts {
        spf: vec![spf("bank.example", SpfVerdict::Fail)],
        dmarc: dmarc("paypal.com", DmarcPolicy::Reject, AlignMode::Relaxed),
    };
    let symbols = run(&env, &raw, &reject, &dir);
    assert_eq!(
        names(&symbols),
        vec![
            "SPF_FAIL",
            "FROM_MAILFROM_MISALIGNED",
            "DMARC_POLICY_REJECT_MISALIGNED"
        ]
    );
    let heavy = find(&symbols, "DMARC_POLICY_REJECT_MISALIGNED");
    assert!(
        heavy.evidence[0].contains("p=reject at _dmarc.paypal.com"),
        "{heavy:?}"
    );
    let quarantine = IdentityFacts {
        dmarc: dmarc("paypal.com", DmarcPolicy::Quarantine, AlignMode::Relaxed),
        ..reject.clone()
    };
    assert!(
        names(&run(&env, &raw, &quarantine, &dir)).contains(&"DMARC_POLICY_QUARANTINE_MISALIGNED")
    );
    let none = IdentityFacts {
        dmarc: dmarc("paypal.com", DmarcPolicy::None, AlignMode::Relaxed),
        ..reject.clone()
    };
    assert!(!names(&run(&env, &raw, &none, &dir))
        .iter()
        .any(|n| n.starts_with("DMARC")));

    // Aligned and SPF passes from the relay: DMARC will pass, no symbol.
    let own = envelope(None, "bounce@mail.paypal.com");
    let passing = IdentityFacts {
        spf: vec![spf("mail.paypal.com", SpfVerdict::Pass)],
        dmarc: dmarc("paypal.com", DmarcPolicy::Reject, AlignMode::Relaxed),
    };
    assert_eq!(names(&run(&own, &raw, &passing, &dir)), vec!["SPF_PASS"]);
    // Aligned but SPF does not pass from the relay: it will still fail.
    let failing = IdentityFacts {
        spf: vec![spf("mail.paypal.com", SpfVerdict::SoftFail)],
        ..passing.clone()
    };
    let symbols = run(&own, &raw, &failing, &dir);
    let heavy = find(&symbols, "DMARC_POLICY_REJECT_MISALIGNED");
    assert!(
        heavy.evidence[0].contains("softfail from 192.0.2.25"),
        "{heavy:?}"
    );
    // A DNS failure of the DMARC lookup is not a symbol.
    let temp = IdentityFacts {
        dmarc: DmarcLookup::TempError("timeout".into()),
        ..reject
    };
    assert!(!names(&run(&env, &raw, &temp, &dir))
        .iter()
        .any(|n| n.starts_with("DMARC")));
}

#[test]
fn one_spf_symbol_per_distinct_result() {
    let dir = AccountsDirectory::from_config(&IdentityConfig {
        attribution: LocalAttribution::None,
        ..IdentityConfig::default()
    });
    let mut second = spf("bank.example", SpfVerdict::Fail);
    second.ip = "192.0.2.26".parse().unwrap();
    let facts = IdentityFacts {
        spf: vec![
            spf("bank.example", SpfVerdict::Fail),
            second,
            spf("bank.example", SpfVerdict::Pass),
        ],
        dmarc: DmarcLookup::NotChecked,
    };
    let env = envelope(None, "ceo@bank.example");
    let symbols = run(&env, &message("ceo@bank.example"), &facts, &dir);
    assert_eq!(names(&symbols), vec!["SPF_FAIL", "SPF_PASS"]);
    let fail = find(&symbols, "SPF_FAIL");
    assert_eq!(fail.evidence.len(), 2);
    assert!(fail.evidence[1].contains("192.0.2.26"));
    for verdict in SpfVerdict::ALL {
        let facts = IdentityFacts {
            spf: vec![spf("bank.example", verdict)],
            dmarc: DmarcLookup::NotChecked,
        };
        let symbols = run(&env, &message("ceo@bank.example"), &facts, &dir);
        assert_eq!(names(&symbols), vec![verdict.symbol()]);
        assert!(symbols[0].evidence[0].contains(&format!("spf={verdict}")));
    }
}

#[test]
fn local_submissions_are_attributed() {
    let local = |mail_from: &str| Envelope {
        local_submission: true,
        mail_from: mail_from.into(),
        ..Envelope::default()
    };
    // Default rule: the envelope sender's domain.
    let dir = directory(&IdentityConfig::default());
    let env = local("wordpress@shop.example");
    let sender = dir.sender(&env).expect("attributed");
    assert_eq!(sender.account, "shop.example");
    assert!(sender
        .how
        .contains("local submission attributed by sender domain"));
    let symbols = run(
        &env,
        &message("orders@shop.example"),
        &IdentityFacts::default(),
        &dir,
    );
    assert!(symbols.is_empty(), "{symbols:?}");
    // The account is the MAIL FROM domain itself: a foreign header From is
    // judged by alignment, not charged twice as a login mismatch.
    let foreign = message("security@paypal.com");
    let symbols = run(&env, &foreign, &IdentityFacts::default(), &dir);
    assert_eq!(names(&symbols), vec!["FROM_MAILFROM_MISALIGNED"]);
    // With a directory entry for the domain its allowed identities apply.
    let mut listed = directory(&IdentityConfig::default());
    listed
        .add_toml(
            Path::new("shop.toml"),
            "[[account]]\nlogin = \"shop.example\"\ndomains = [\"shop.example\"]\n",
        )
        .unwrap();
    let symbols = run(&env, &foreign, &IdentityFacts::default(), &listed);
    let header = find(&symbols, "LOGIN_HEADER_FROM_MISMATCH");
    assert!(header.evidence[0].contains("shop.example"), "{header:?}");
    assert!(
        header.evidence[0].contains("local submission attributed"),
        "{header:?}"
    );
    assert!(!names(&symbols).contains(&"LOGIN_MAILFROM_MISMATCH"));
    assert!(
        dir.sender(&local("")).is_none(),
        "a bounce has no sender domain"
    );

    // A mapping table: address first, then domain.
    let text = r#"
[identity]
attribution = "map"
attribution_map = { "www-data@relay.example" = "alice@customer.example", "shop.example" = "bob@customer.example" }
"#;
    let config = Config::parse(Path::new("o.toml"), text).unwrap().identity;
    let dir = directory(&config);
    let alice = dir.sender(&local("www-data@relay.example")).unwrap();
    assert_eq!(alice.account, "alice@customer.example");
    assert!(alice.how.contains("map entry www-data@relay.example"));
    assert!(alice.identity.permits("info@customer.example").is_some());
    let bob = dir.sender(&local("site@shop.example")).unwrap();
    assert_eq!(bob.account, "bob@customer.example");
    assert!(dir.sender(&local("nobody@elsewhere.example")).is_none());
    // Mail from the mapped website with alice's alias in the From is fine;
    // with someone else's address it is a header mismatch.
    let env = local("www-data@relay.example");
    assert!(!names(&run(
        &env,
        &message("info@customer.example"),
        &IdentityFacts::default(),
        &dir
    ))
    .contains(&"LOGIN_HEADER_FROM_MISMATCH"));
    assert!(names(&run(
        &env,
        &message("ceo@bank.example"),
        &IdentityFacts::default(),
        &dir
    ))
    .contains(&"LOGIN_HEADER_FROM_MISMATCH"));

    // No attribution: no sender, no login rules.
    let dir = AccountsDirectory::from_config(&IdentityConfig {
        attribution: LocalAttribution::None,
        ..IdentityConfig::default()
    });
    assert!(dir.sender(&local("wordpress@shop.example")).is_none());
    // A SASL login always wins over attribution.
    let sender: Sender = directory(&IdentityConfig::default())
        .sender(&Envelope {
            local_submission: true,
            ..envelope(Some("Alice@Customer.example"), "x@shop.example")
        })
        .unwrap();
    assert_eq!(sender.account, "alice@customer.example");
    assert_eq!(sender.how, "login");
}

#[test]
fn accounts_file_errors_name_the_problem() {
    let mut dir = AccountsDirectory::from_config(&IdentityConfig::default());
    let err = dir
        .add_toml(
            Path::new("a.toml"),
            "[[account]]\nlogin = \"a@b.example\"\nalias = []\n",
        )
        .unwrap_err();
    assert!(matches!(err, AccountsError::Parse { line: 3, .. }), "{err}");
    let err = dir
        .add_toml(
            Path::new("a.toml"),
            "[[account]]\nlogin = \"a@b.example\"\naliases = [\"nodomain\"]\n",
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("\"nodomain\" is not an address"),
        "{err}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ACCOUNTS).unwrap();
    let dir = AccountsDirectory::load(&IdentityConfig {
        accounts_file: Some(file.path().to_path_buf()),
        ..IdentityConfig::default()
    })
    .unwrap();
    assert_eq!(dir.len(), 2);
    assert!(dir
        .identity_for("ALICE@customer.example")
        .permits("info@customer.example")
        .is_some());
}
