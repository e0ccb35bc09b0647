//! Scoring engine: the built-in scores/ set, load errors with file:line,
//! the seed's Chinese keyword line, attachments, external symbols, group
//! caps, whitelist and sensitivity.

use std::path::Path;

use outscore::envelope::Envelope;
use outscore::scoring::scores::BUILTIN;
use outscore::scoring::{Engine, ExternalSymbol, GTUBE};

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Anna <anna@shop.example>\r\nTo: bob@client.example\r\nSubject: {subject}\r\n\
Message-ID: <1@shop.example>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn scores_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores"))
}

#[test]
fn builtin_list_matches_the_scores_directory() {
    let mut on_disk: Vec<String> = std::fs::read_dir(scores_dir().join("keywords"))
        .unwrap()
        .map(|e| format!("keywords/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    for e in std::fs::read_dir(scores_dir()).unwrap() {
        let e = e.unwrap();
        // tiers.toml belongs to the policy module, which embeds it itself.
        if e.file_type().unwrap().is_file() && e.file_name() != "tiers.toml" {
            on_disk.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    on_disk.sort();
    let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    builtin.sort();
    assert_eq!(
        builtin, on_disk,
        "add new scores files to scoring::scores::BUILTIN"
    );
    for (name, text) in BUILTIN {
        assert_eq!(
            &std::fs::read_to_string(scores_dir().join(name)).unwrap(),
            text
        );
    }
}

#[test]
fn load_from_directory_equals_builtin() {
    let loaded = Engine::load(scores_dir()).unwrap();
    let builtin = Engine::builtin();
    assert_eq!(loaded.reject_score(), builtin.reject_score());
    let raw = msg("Hello", "see you tomorrow");
    assert_eq!(
        loaded.scan(&Envelope::default(), &raw).symbols,
        builtin.scan(&Envelope::default(), &raw).symbols
    );
}

#[test]
fn gtube_scores_far_above_every_threshold() {
    let engine = Engine::builtin();
    let raw = msg("test", std::str::from_utf8(GTUBE).unwrap());
    let report = engine.scan(&Envelope::default(), &raw);
    assert!(
        report.score >= 50.0 * engine.reject_score(),
        "{}",
        report.score
    );
    assert_eq!(report.symbols[0].name, "GTUBE");
}

#[test]
fn ordinary_mail_scores_low() {
    let engine = Engine::builtin();
    for (subject, body) in [
        ("Meeting on Tuesday", "Hi Bob,\nthe project review moved to Tuesday 10:00. The invoice for October is attached as agreed.\nAnna"),
        ("Riunione di martedì", "Ciao, la riunione è spostata a martedì. Ti mando la fattura di ottobre.\nSaluti"),
        ("Réunion", "Bonjour, la réunion est déplacée à mardi. Cordialement"),
        ("Reunión", "Hola, la reunión se mueve al martes. Saludos cordiales"),
        ("Besprechung", "Hallo, die Besprechung ist am Dienstag. Viele Grüße"),
        ("Συνάντηση", "Καλημέρα, η συνάντηση μεταφέρθηκε την Τρίτη. Ευχαριστώ"),
        ("会议通知", "王经理您好，下周二上午十点在公司会议室开会，讨论第三季度的发票和合同。谢谢"),
        ("會議通知", "王經理您好，下週二上午十點在公司會議室開會，討論第三季度的合約。謝謝"),
    ] {
        let report = engine.scan(&Envelope::default(), &msg(subject, body));
        assert!(report.score < 3.0, "{subject}: {} {}", report.score, report.symbols_line());
    }
}

#[test]
fn seed_chinese_keyword_line_is_spam() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/seeds/003_3b272f0592daea86.txt"
    );
    let line = std::fs::read_to_string(seed)
        .map(|t| t.lines().next().unwrap_or("").to_string())
        .unwrap_or_else(|_| {
            "卖逼视频免费看片|狼人就干网中文字慕|成人av影院导航|人妻少妇精品无码专区二区妖婧|亚洲丝袜视频玖玖|一区二区免费中文|日本高清无码一区|国产91无码小说|国产黄片子视频91sese日韩|免费高清无码成人网站入口".to_string()
        });
    assert!(line.contains("无码"));
    let engine = Engine::builtin();
    let report = engine.scan(&Envelope::default(), &msg("你好", &line));
    assert!(
        report.score >= engine.reject_score(),
        "{} {}",
        report.score,
        report.symbols_line()
    );
    let kw = report.symbol("KW_ADULT").unwrap();
    assert!(
        kw.evidence.iter().any(|e| e == "keyword \"无码\" in body"),
        "{:?}",
        kw.evidence
    );
}

#[test]
fn keyword_evidence_names_keyword_and_place() {
    let engine = Engine::builtin();
    let report = engine.scan(
        &Envelope::default(),
        &msg("Cheap VIAGRA", "Online pharmacy, no prescription needed"),
    );
    let kw = report.symbol("KW_PHARMA").unwrap();
    assert!(
        kw.evidence
            .contains(&"keyword \"viagra\" in subject as \"VIAGRA\"".to_string()),
        "{:?}",
        kw.evidence
    );
    assert!(kw
        .evidence
        .contains(&"keyword \"online pharmacy\" in body as \"Online pharmacy\"".to_string()));
    // viagra (3) + subject bonus (1) + two phrases (3 + 3) = 10 → 10/4, past the weight.
    assert_eq!(kw.factor, 2.5);
}

#[test]
fn dangerous_attachment_alone_is_refused() {
    let raw = b"From: a@shop.example\r\nTo: b@c.example\r\nSubject: doc\r\nMessage-ID: <2@shop.example>\r\n\
Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf; name=\"invoice.pdf.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAA\r\n--b--\r\n";
    let engine = Engine::builtin();
    let report = engine.scan(&Envelope::default(), raw);
    for s in [
        "ATTACH_DANGEROUS_EXT",
        "ATTACH_DOUBLE_EXT",
        "ATTACH_TYPE_MISMATCH",
        "ATTACH_EXECUTABLE",
    ] {
        assert!(report.symbol(s).is_some(), "{s}: {}", report.symbols_line());
    }
    assert!(report.score >= engine.reject_score());
    // The attachments group cap (30) holds.
    let group: f64 = report
        .symbols
        .iter()
        .filter(|s| s.group == "attachments")
        .map(|s| s.score)
        .sum();
    assert!((group - 30.0).abs() < 0.01, "{group}");
    assert_eq!(
        report.message.attachments[0].sniffed_type.as_deref(),
        Some("pe")
    );
}

#[test]
fn external_symbols_are_weighted_and_unknown_ones_reported() {
    let engine = Engine::builtin();
    for name in [
        "SPF_PASS",
        "SPF_FAIL",
        "SPF_SOFTFAIL",
        "SPF_NEUTRAL",
        "SPF_NONE",
        "SPF_PERMERROR",
        "SPF_TEMPERROR",
        "FROM_MAILFROM_MISALIGNED",
        "DMARC_POLICY_REJECT_MISALIGNED",
        "DMARC_POLICY_QUARANTINE_MISALIGNED",
        "LOGIN_MAILFROM_MISMATCH",
        "LOGIN_HEADER_FROM_MISMATCH",
    ] {
        assert!(engine.knows_external(name), "{name}");
        assert_eq!(engine.symbol(name).unwrap().group, "identity");
    }
    assert!(!engine.knows_external("KW_ADULT"));
    let report = engine.scan_with(
        &Envelope::default(),
        &msg("Hello", "hi"),
        &[
            ExternalSymbol::new("SPF_FAIL", 1.0, "192.0.2.1 not permitted by shop.example"),
            ExternalSymbol::new("NOT_DECLARED", 1.0, "x"),
        ],
    );
    let spf = report.symbol("SPF_FAIL").unwrap();
    assert_eq!(spf.score, 4.0);
    assert_eq!(
        spf.evidence,
        vec!["192.0.2.1 not permitted by shop.example"]
    );
    let unknown = report.symbol("EXTERNAL_SYMBOL_UNKNOWN").unwrap();
    assert_eq!(
        (unknown.score, unknown.evidence.clone()),
        (0.0, vec!["NOT_DECLARED".to_string()])
    );
}

/// A copy of scores/ in a temporary directory, with edits.
fn scores_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keywords")).unwrap();
    for (name, text) in BUILTIN {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    edit(dir.path());
    dir
}

fn append(path: &Path, text: &str) {
    let mut t = std::fs::read_to_string(path).unwrap();
    t.push_str(text);
    std::fs::write(path, t).unwrap();
}

/// Regression: the whitelist matched the envelope sender, so any
/// login could write `MAIL FROM <x@whitelisted.example>` and have its spam
/// scored as if it came from the whitelisted customer. Only the SASL login
/// (its address or its domain) whitelists now.
#[test]
fn a_forged_mail_from_never_whitelists() {
    let dir = scores_copy(|d| {
        append(
            &d.join("whitelist.txt"),
            "shop.example
alerts@monitor.example
",
        );
    });
    let engine = Engine::load(dir.path()).unwrap();
    let spam = msg("Cheap VIAGRA", "Online pharmacy, no prescription needed");
    let pharma = |env: &Envelope| {
        let report = engine.scan(env, &spam);
        (
            report.symbol("WHITELISTED").is_some(),
            report.symbol("KW_PHARMA").unwrap().score > 0.0,
        )
    };
    // Another customer's login with the whitelisted domain as MAIL FROM.
    let forged = Envelope {
        auth_login: Some("mallory@customer.example".into()),
        mail_from: "x@shop.example".into(),
        ..Default::default()
    };
    assert_eq!(
        pharma(&forged),
        (false, true),
        "a login with a forged MAIL FROM"
    );
    // No login at all: the MAIL FROM is all there is, and it is forgeable.
    let unauthenticated = Envelope {
        mail_from: "alerts@monitor.example".into(),
        ..Default::default()
    };
    assert_eq!(pharma(&unauthenticated), (false, true), "no login");
    // A listed address does not whitelist its domain's other logins.
    let neighbour = Envelope {
        auth_login: Some("bob@monitor.example".into()),
        mail_from: "alerts@monitor.example".into(),
        ..Default::default()
    };
    assert_eq!(
        pharma(&neighbour),
        (false, true),
        "another login of a listed address's domain"
    );
    // The listed logins themselves, whatever MAIL FROM they use.
    for (login, from) in [
        ("Anna@Shop.Example", "newsletter@elsewhere.example"),
        ("alerts@monitor.example", ""),
    ] {
        let listed = Envelope {
            auth_login: Some(login.into()),
            mail_from: from.into(),
            ..Default::default()
        };
        assert_eq!(pharma(&listed), (true, false), "login {login}");
    }
}

#[test]
fn every_bad_line_is_reported_with_file_and_line() {
    let dir = scores_copy(|d| {
        // A weight without a symbol, and a symbol without a weight.
        append(&d.join("symbols.toml"), "\n[NOBODY_EMITS_THIS]\ngroup = \"headers\"\nweight = 1.0\ndescription = \"x\"\n\n[NO_WEIGHT]\ngroup = \"headers\"\ndescription = \"x\"\n");
        // A keyword list whose symbol has no weight.
        std::fs::write(
            d.join("keywords/new.en.txt"),
            "# symbol: KW_UNDECLARED\nfoo bar\nbaz | 99\n",
        )
        .unwrap();
        // A regex rule that does not compile.
        append(
            &d.join("regex.toml"),
            "\n[[rule]]\nsymbol = \"MONEY_LARGE_SUM\"\npattern = '(unclosed'\n",
        );
        append(&d.join("freemail.txt"), "not a domain\n");
    });
    let errors = Engine::load(dir.path()).unwrap_err().to_string();
    let symbols_lines = std::fs::read_to_string(dir.path().join("symbols.toml"))
        .unwrap()
        .lines()
        .count();
    let regex_lines = std::fs::read_to_string(dir.path().join("regex.toml"))
        .unwrap()
        .lines()
        .count();
    let freemail_lines = std::fs::read_to_string(dir.path().join("freemail.txt"))
        .unwrap()
        .lines()
        .count();
    let d = dir.path().display();
    for expected in [
        format!(
            "{d}/symbols.toml:{}: weight without symbol: no rule emits NOBODY_EMITS_THIS",
            symbols_lines - 7
        ),
        format!(
            "{d}/symbols.toml:{}: symbol NO_WEIGHT: symbol without a weight",
            symbols_lines - 2
        ),
        format!("{d}/keywords/new.en.txt:1: symbol KW_UNDECLARED has no weight in symbols.toml"),
        format!("{d}/keywords/new.en.txt:3: strength after '|' must be 1–10, got \"99\""),
        format!("{d}/regex.toml:{}: bad pattern", regex_lines - 2),
        format!("{d}/freemail.txt:{freemail_lines}: \"not a domain\" is not a domain"),
    ] {
        assert!(
            errors.contains(&expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

/// An operator's `symbols.toml` overlays the built-in one per symbol: a
/// copied file that lacks a symbol (say, one a newer release added) keeps
/// the built-in weight instead of failing start-up.
#[test]
fn a_copied_symbols_file_missing_a_symbol_keeps_the_builtin_weight() {
    let dir = scores_copy(|d| {
        let t = std::fs::read_to_string(d.join("symbols.toml")).unwrap();
        let t = t.replace("[EMPTY_SUBJECT]\ngroup = \"headers\"\nweight = 1.0\ndescription = \"Subject missing or empty\"\n", "");
        std::fs::write(d.join("symbols.toml"), t).unwrap();
    });
    let engine = Engine::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.declares("EMPTY_SUBJECT"));
    let report = engine.scan(&Envelope::default(), b"From: a@example.com\r\n\r\nbody\r\n");
    assert!(report.symbol("EMPTY_SUBJECT").is_some(), "{report:?}");
}

#[test]
fn whitelist_mutes_content_but_reports_it() {
    let dir = scores_copy(|d| {
        append(&d.join("whitelist.txt"), "shop.example\n");
        append(&d.join("actions.toml"), "\"strict.example\" = \"high\"\n");
    });
    let engine = Engine::load(dir.path()).unwrap();
    let spam = msg("Cheap VIAGRA", "Online pharmacy, no prescription needed");
    let listed = Envelope {
        auth_login: Some("anna@shop.example".into()),
        mail_from: "anna@shop.example".into(),
        ..Default::default()
    };
    let report = engine.scan(&listed, &spam);
    assert!(report.symbol("WHITELISTED").is_some());
    assert_eq!(report.symbol("KW_PHARMA").unwrap().score, 0.0);
    assert!(report.score < 1.0, "{}", report.symbols_line());
    let other = Envelope {
        mail_from: "x@other.example".into(),
        ..Default::default()
    };
    assert!(
        engine
            .scan(&other, &spam)
            .symbol("KW_PHARMA")
            .unwrap()
            .score
            > 0.0
    );
    // Sensitivity: a high-sensitivity sender gets the lower threshold.
    let strict = Envelope {
        auth_login: Some("joe@strict.example".into()),
        ..Default::default()
    };
    assert_eq!(engine.reject_score_for(&strict), 10.0);
    let strict_report = engine.scan(&strict, &spam);
    let ev = &strict_report.symbol("SENSITIVITY_HIGH").unwrap().evidence;
    assert_eq!(
        ev,
        &vec!["strict.example in actions.toml: refused at 10".to_string()]
    );
    assert_eq!(engine.reject_score_for(&other), 15.0);

    // The accounts directory's level for a login comes first: joe is
    // "low" there although his domain is "high" in actions.toml.
    let csv = "login,contact,sensitivity\njoe@strict.example,,low\nann@strict.example,,\n";
    let directory = outscore::policy::Directory::parse_csv("accounts.csv", csv).unwrap();
    let engine = engine.with_account_sensitivity(directory.sensitivities());
    assert_eq!(engine.reject_score_for(&strict), 20.0);
    let relaxed_report = engine.scan(&strict, &spam);
    let ev = &relaxed_report.symbol("SENSITIVITY_LOW").unwrap().evidence;
    assert_eq!(
        ev,
        &vec!["joe@strict.example in the accounts directory: refused at 20".to_string()]
    );
    // A login listed without a level keeps the actions.toml one.
    let ann = Envelope {
        auth_login: Some("ann@strict.example".into()),
        ..Default::default()
    };
    assert_eq!(engine.reject_score_for(&ann), 10.0);
}

#[test]
fn report_round_trips_through_json() {
    let engine = Engine::builtin();
    let report = engine.scan(
        &Envelope::default(),
        &msg("Cheap VIAGRA", "Online pharmacy"),
    );
    let json = serde_json::to_string(&report).unwrap();
    let back: outscore::scoring::ScanReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

mod never_fails {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary bytes, and mangled variants of a real MIME message, are
        /// scored without a panic and with a sane report.
        #[test]
        fn scan_survives_garbage(noise in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..600) {
            let engine = Engine::builtin();
            let report = engine.scan(&Envelope::default(), &noise);
            prop_assert!(report.score.is_finite());
            let mut real = msg("Re: offer", "<html><a href=\"http://198.51.100.7/\">www.bank.example</a></html>");
            real.truncate(cut.min(real.len()));
            real.extend_from_slice(&noise);
            let report = engine.scan(&Envelope::default(), &real);
            prop_assert!(report.score.is_finite());
            prop_assert_eq!(report.message.size as usize, real.len());
        }
    }
}

#[test]
fn keyword_lists_cover_the_required_languages_and_categories() {
    let names: Vec<&str> = BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.starts_with("keywords/"))
        .collect();
    for lang in ["en", "it", "fr", "es", "de", "el", "zh-Hans", "zh-Hant"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!(".{lang}.txt"))),
            "no keyword list in {lang}"
        );
    }
    for category in [
        "phishing",
        "advance-fee",
        "pharma",
        "adult",
        "crypto",
        "lottery",
        "malware",
        "extortion",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("keywords/{category}."))),
            "no {category} list"
        );
    }
}

#[test]
fn keywords_in_attachment_names_say_so() {
    let raw = b"From: a@shop.example\r\nSubject: hi\r\nMessage-ID: <3@shop.example>\r\n\
Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf; name=\"Outstanding invoice.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
    let report = Engine::builtin().scan(&Envelope::default(), raw);
    let kw = report.symbol("KW_MALWARE_LURE").unwrap();
    assert_eq!(
        kw.evidence,
        vec!["keyword \"outstanding invoice\" in attachment name as \"Outstanding invoice\""]
    );
    assert_eq!(
        report.message.attachments[0].sniffed_type.as_deref(),
        Some("pdf")
    );
    assert!(report.symbol("ATTACH_TYPE_MISMATCH").is_none());
}

#[test]
fn keyword_automaton_stays_small() {
    let compiled = outscore::scoring::scores::builtin().unwrap();
    let bytes = compiled.keywords.memory_usage();
    eprintln!(
        "{} keywords, automaton {bytes} bytes",
        compiled.keywords.pattern_count
    );
    assert!(compiled.keywords.pattern_count > 500);
    assert!(bytes < 32 * 1024 * 1024, "{bytes}");
}

/// A forged MAIL FROM cannot buy a more lenient line: by envelope sender
/// only "high" applies; "low" applies to the logged-in account.
#[test]
fn a_forged_mail_from_never_lowers_the_sensitivity() {
    let dir = scores_copy(|d| {
        append(
            &d.join("actions.toml"),
            "\"bulk.example\" = \"low\"\n\"watched.example\" = \"high\"\n",
        );
    });
    let engine = Engine::load(dir.path()).unwrap();
    let line = |login: Option<&str>, from: &str| {
        engine.reject_score_for(&Envelope {
            auth_login: login.map(str::to_string),
            mail_from: from.into(),
            ..Default::default()
        })
    };
    assert_eq!(line(None, "news@bulk.example"), 15.0, "forgeable: no low");
    assert_eq!(line(Some("mallory@x.example"), "news@bulk.example"), 15.0);
    assert_eq!(line(Some("news@bulk.example"), "news@bulk.example"), 20.0);
    assert_eq!(line(None, "a@watched.example"), 10.0, "high applies");
}
