//! Hyperscan and the pure-Rust regex-set engine give the same matches for
//! the built-in regex rules over the messages of the shared corpus.

#![cfg(feature = "hyperscan")]

use outscore::message::parse;
use outscore::rules::matcher::{MatcherKind, RegexRules};
use outscore::rules::Context;
use outscore::scoring::scores::{parse_regex_rules, BUILTIN};

fn engines() -> (RegexRules, RegexRules) {
    let text = BUILTIN.iter().find(|(n, _)| *n == "regex.toml").unwrap().1;
    let rules = parse_regex_rules(text).unwrap();
    let hs = RegexRules::with_kind(rules.clone(), MatcherKind::Hyperscan).unwrap();
    let rs = RegexRules::with_kind(rules, MatcherKind::RegexSet).unwrap();
    assert_eq!((hs.engine(), rs.engine()), ("hyperscan", "regex-set"));
    (hs, rs)
}

/// Texts that exercise every rule, so the test means something without the
/// corpus too.
const SAMPLES: &[&str] = &[
    "win $ 12,500,000.00 now\n4.5 million us dollars via western union, mtcn 123\n",
    "95% off and 100% free!\ncheap v1agra and c i a l i s or v.i.a.g.r.a\nlove pi11 and wh0res\n",
    "please verify your account password\nyour account has been suspended within 24 hours\n",
    "dear friend, mailbox quota exceeded\nclick here, whatsapp me\nqq:12345678 电话:0755-12345678\n",
    "https://bit.ly/x\nhttp://login.example.xyz/\nhttp://xn--pypal-4ve.com/\nhttps://x.web.app/\nhttp://a.example/wp-content/paypal/login.php\n",
    "verifica il tuo account\nverifiez votre compte\nverifique su cuenta\nbestatigen sie ihr konto\nihr konto wurde gesperrt\n点击这里\n",
];

#[test]
fn engines_agree_on_samples_and_every_rule_fires() {
    let (hs, rs) = engines();
    let mut fired = vec![false; hs.len()];
    for s in SAMPLES {
        let a = hs.matching(s);
        assert_eq!(a, rs.matching(s), "on {s:?}");
        for id in a {
            fired[id] = true;
        }
    }
    let silent: Vec<usize> = fired
        .iter()
        .enumerate()
        .filter(|(_, f)| !**f)
        .map(|(i, _)| i)
        .collect();
    assert!(
        silent.is_empty(),
        "rules never exercised by the samples: {silent:?}"
    );
}

#[test]
fn engines_agree_on_the_corpus() {
    let Some(corpus) = crate::support::common::shared_corpus() else {
        return;
    };
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let (hs, rs) = engines();
    let (mut compared, mut with_matches) = (0, 0);
    for line in manifest.lines().skip(1) {
        let path = line.split('\t').next().unwrap();
        let raw = std::fs::read(corpus.join(path)).unwrap();
        let msg = parse(&raw);
        let ctx = Context::new(&msg);
        let hay = RegexRules::haystack(&ctx);
        let a = hs.matching(&hay);
        assert_eq!(a, rs.matching(&hay), "{path}");
        compared += 1;
        with_matches += usize::from(!a.is_empty());
    }
    assert!(compared > 9000, "{compared}");
    assert!(
        with_matches > 1000,
        "only {with_matches} messages matched any rule"
    );
    eprintln!("{compared} messages compared, {with_matches} with matches");
}
