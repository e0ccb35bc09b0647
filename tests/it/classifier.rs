//! The content classifier: tokenizer per script, learning, the model file and
//! `outscore train` through the real binary.

use std::path::Path;
use std::process::Command;

use crate::support::classifier::message;
use outscore::classifier::tokenize::text_tokens;
use outscore::classifier::{
    symbols, Classifier, Model, ModelError, Verdict, BAYES_HAM, BAYES_SPAM, MIN_LEARNED,
};

fn words(text: &str) -> Vec<String> {
    text_tokens(text, false)
}

#[test]
fn chinese_runs_become_character_bigrams() {
    assert_eq!(
        words("免费代开发票"),
        ["免费", "费代", "代开", "开发", "发票"]
    );
    // A single Han character between other scripts is kept as itself.
    assert_eq!(words("价 100"), ["价", "100"]);
}

#[test]
fn japanese_and_korean_runs_become_bigrams() {
    assert_eq!(words("セール中"), ["セー", "ール", "ル中"]);
    assert_eq!(words("무료 쿠폰"), ["무료", "쿠폰"]);
}

#[test]
fn greek_is_lowercased_with_one_sigma() {
    // Upper case, final sigma and the medial sigma all meet in one token;
    // accents are folded as the keyword rules fold them.
    assert_eq!(
        words("ΔΩΡΕΑΝ ΠΡΟΣΦΟΡΑΣ δωρεάν προσφορας"),
        ["δωρεαν", "προσφορασ", "δωρεαν", "προσφορασ"]
    );
    assert_eq!(words("Κέρδισε"), ["κερδισε"]);
}

#[test]
fn italian_folds_accents_and_splits_elisions() {
    assert_eq!(
        words("Perché l'offerta è già SCADUTA? Città"),
        ["perche", "offerta", "gia", "scaduta", "citta"]
    );
}

#[test]
fn mixed_text_fullwidth_and_invisible_characters() {
    assert_eq!(
        words("Hello 世界 ＦＲＥＥ fr\u{200B}ee Привет!"),
        ["hello", "世界", "free", "free", "привет"]
    );
}

#[test]
fn word_pairs_are_emitted_within_a_sentence_only() {
    let t = text_tokens("cheap pills now. buy", true);
    assert_eq!(
        t,
        ["cheap", "pills", "cheap pills", "now", "pills now", "buy"]
    );
}

const SPAM: &[&str] = &[
    "viagra",
    "cheap",
    "winner",
    "prize",
    "casino",
    "bonus",
    "click",
    "offer",
    "unsubscribe",
    "guaranteed",
    "free",
    "money",
    "loan",
    "crypto",
    "urgent",
    "免费",
    "发票",
];
const HAM: &[&str] = &[
    "meeting", "agenda", "minutes", "review", "patch", "build", "release", "thanks", "tomorrow",
    "report", "schedule", "draft", "project", "会议", "报告", "lunch",
];

fn trained() -> Classifier {
    crate::support::classifier::trained(SPAM, HAM)
}

#[test]
fn trained_model_separates_spam_and_ham() {
    let c = trained();
    let spam = c.classify(&message(SPAM, 9999, "Win big")).unwrap();
    let ham = c.classify(&message(HAM, 9999, "Weekly sync")).unwrap();
    assert!(spam.probability > 0.99, "{spam:?}");
    assert!(ham.probability < 0.01, "{ham:?}");
    assert!(spam
        .top_tokens
        .iter()
        .any(|(t, w)| SPAM.contains(&t.as_str()) && *w > 0.0));
    assert_eq!(symbols(&spam)[0].name, BAYES_SPAM);
    assert_eq!(symbols(&ham)[0].name, BAYES_HAM);
}

#[test]
fn learning_a_message_as_spam_moves_its_own_score_up() {
    let mut c = trained();
    // A message of neutral words plus a few of both sides.
    let raw = b"From: x@example.com\r\nSubject: quarterly numbers\r\n\r\n\
        quarterly numbers attached please review the spreadsheet free lunch \
        zebra orchid lantern\r\n";
    let before = c.classify(raw).unwrap().probability;
    assert!(c.learn(raw, true));
    let after = c.classify(raw).unwrap().probability;
    assert!(after > before, "before {before}, after {after}");
    assert_eq!(c.model().spam_messages(), MIN_LEARNED + 11);
}

#[test]
fn classifier_stays_silent_until_both_classes_are_learned() {
    let mut c = Classifier::new(Model::new(16, true));
    let raw = message(SPAM, 1, "x");
    assert!(c.classify(&raw).is_none());
    for n in 0..MIN_LEARNED as usize {
        c.add(&message(SPAM, n, "x"), true);
    }
    c.finish();
    assert!(c.classify(&raw).is_none(), "no ham learned yet");
}

#[test]
fn model_file_round_trip_and_damage_detection() {
    let c = trained();
    let bytes = c.model().to_bytes();
    let back = Model::from_bytes(&bytes).expect("decodes");
    assert_eq!(back.stats(), c.model().stats());
    let raw = message(SPAM, 4242, "Win big");
    let c2 = Classifier::new(back);
    assert_eq!(c.classify(&raw), c2.classify(&raw));
    // Through the file system as well.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/model.bin");
    c.model().save(&path).unwrap();
    assert_eq!(Model::load(&path).unwrap().stats(), c.model().stats());

    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    assert!(matches!(Model::from_bytes(&bad), Err(ModelError::Checksum)));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(Model::from_bytes(&bad), Err(ModelError::BadMagic)));
    assert!(matches!(
        Model::from_bytes(&bytes[..20]),
        Err(ModelError::Truncated { .. })
    ));
}

#[test]
fn symbol_factor_follows_the_probability() {
    let v = |p: f64| Verdict {
        probability: p,
        top_tokens: vec![("viagra".into(), 3.0), ("meeting".into(), -2.0)],
        features: 2,
        informative: 2,
    };
    assert!(symbols(&v(0.5)).is_empty());
    assert!(symbols(&v(0.9)).is_empty());
    let s = symbols(&v(0.945));
    assert_eq!(s[0].name, BAYES_SPAM);
    assert!((s[0].factor - 0.5).abs() < 1e-9);
    assert_eq!(symbols(&v(0.999))[0].factor, 1.0);
    assert!(s[0].evidence.iter().any(|e| e.contains("viagra")));
    assert!(!s[0].evidence.iter().any(|e| e.contains("meeting")));
    let h = symbols(&v(0.001));
    assert_eq!(h[0].name, BAYES_HAM);
    assert_eq!(h[0].factor, 1.0);
    assert!(h[0].evidence.iter().any(|e| e.contains("meeting")));
}

fn write_corpus(dir: &Path) {
    std::fs::create_dir_all(dir.join("spam/nested")).unwrap();
    std::fs::create_dir_all(dir.join("ham")).unwrap();
    for n in 0..MIN_LEARNED as usize {
        std::fs::write(
            dir.join(format!("spam/nested/{n}.eml")),
            message(SPAM, n, "Win big"),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("ham/{n}.eml")),
            message(HAM, n, "Weekly sync"),
        )
        .unwrap();
    }
    // Three more spam in one mbox file.
    let mut mbox = Vec::new();
    for n in 0..3 {
        mbox.extend_from_slice(b"From spammer@example.net Thu Jan  1 00:00:00 2026\n");
        mbox.extend_from_slice(&message(SPAM, 500 + n, "Mbox"));
    }
    std::fs::write(dir.join("spam.mbox"), mbox).unwrap();
    // Two more ham through a manifest.
    std::fs::write(dir.join("m1.eml"), message(HAM, 900, "Manifest")).unwrap();
    std::fs::write(dir.join("m2.eml"), message(HAM, 901, "Manifest")).unwrap();
    std::fs::write(
        dir.join("labels.tsv"),
        "path\tlabel\nm1.eml\tham\tsomesource\nm2.eml\tham\n",
    )
    .unwrap();
}

#[test]
fn train_cli_builds_a_model_from_dirs_mbox_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let out = dir.path().join("model.bin");
    let run = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .arg("train")
        .arg("--spam")
        .arg(dir.path().join("spam"))
        .arg(dir.path().join("spam.mbox"))
        .arg("--ham")
        .arg(dir.path().join("ham"))
        .arg("--manifest")
        .arg(dir.path().join("labels.tsv"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let model = Model::load(&out).expect("model written");
    assert_eq!(model.spam_messages(), MIN_LEARNED + 3);
    assert_eq!(model.ham_messages(), MIN_LEARNED + 2);
    let c = Classifier::new(model);
    assert!(
        c.classify(&message(SPAM, 7777, "Win big"))
            .unwrap()
            .probability
            > 0.9
    );

    // --update adds to the existing model.
    let run = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["train", "--update", "--spam"])
        .arg(dir.path().join("spam.mbox"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(Model::load(&out).unwrap().spam_messages(), MIN_LEARNED + 6);
}

#[test]
fn train_cli_defaults_to_the_data_dir_and_check_reports_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let data = dir.path().join("data");
    let conf = dir.path().join("outscore.toml");
    std::fs::write(
        &conf,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_outscore");
    let check = |expect: &str| {
        let run = Command::new(bin)
            .arg("check")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).to_string();
        assert!(run.status.success(), "{stdout}");
        assert!(stdout.contains(expect), "{expect:?} not in {stdout}");
    };
    check("the built-in default model is used");
    let run = Command::new(bin)
        .args(["train", "-c"])
        .arg(&conf)
        .arg("--spam")
        .arg(dir.path().join("spam"))
        .arg("--ham")
        .arg(dir.path().join("ham"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(data.join("model.bin").exists());
    check(&format!("{MIN_LEARNED} spam, {MIN_LEARNED} ham"));
}

#[test]
fn train_cli_rejects_a_bad_manifest_label_and_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.tsv"), "a.eml\tmaybe\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .arg("train")
        .arg("--manifest")
        .arg(dir.path().join("bad.tsv"))
        .arg("--out")
        .arg(dir.path().join("m.bin"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("bad.tsv:1") && err.contains("maybe"), "{err}");
    let run = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["train", "--out"])
        .arg(dir.path().join("m.bin"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(!dir.path().join("m.bin").exists());
}

#[test]
fn builtin_default_model_is_ready_and_used_without_a_model_file() {
    let m = outscore::classifier::builtin_model();
    assert!(
        m.spam_messages() >= 1000 && m.ham_messages() >= 1000,
        "{:?}",
        m.stats()
    );
    let dir = tempfile::tempdir().unwrap();
    let (loaded, source) = outscore::classifier::load_model(dir.path()).unwrap();
    assert_eq!(source, outscore::classifier::ModelSource::Builtin);
    assert_eq!(loaded.stats(), m.stats());
    // A damaged model file in the data dir is an error, not a fallback.
    std::fs::write(dir.path().join("model.bin"), b"OSBAYES\0garbage").unwrap();
    assert!(outscore::classifier::load_model(dir.path()).is_err());

    let c = Classifier::new(m);
    let spam = "From: promo@example.cn\r\nSubject: =?UTF-8?B?5Luj5byA5Y+R56Wo?=\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n\
        本公司长期代开各地发票，税点优惠，真实可查。联系电话 13800000000 李经理。\
        代开增值税发票，普通发票，建筑安装发票。欢迎来电咨询！\r\n";
    let ham = "From: alice@lists.example.org\r\nSubject: Re: build failure on the B210\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n\
        Hi Bob,\r\n\r\nI rebuilt UHD from the master branch and the B210 now enumerates \
        fine. Could you check whether the FPGA image matches the host version? The log \
        you attached shows a mismatch warning right before the timeout.\r\n\r\n\
        Thanks,\r\nAlice\r\n";
    let vs = c.classify(spam.as_bytes()).unwrap();
    let vh = c.classify(ham.as_bytes()).unwrap();
    assert!(vs.probability > 0.9, "{vs:?}");
    assert!(vh.probability < 0.5, "{vh:?}");
    assert!(!vs.top_tokens.is_empty());
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any text tokenizes without panicking, and every token is normalised
        /// (no upper case, no invisible characters).
        #[test]
        fn tokenizer_takes_any_text(text in "\\PC{0,200}") {
            const ZWSP: char = '\u{200B}';
            for t in text_tokens(&text, true) {
                prop_assert!(!t.chars().any(|c| c.is_uppercase() && c.to_lowercase().next() != Some(c)));
                prop_assert!(!t.contains(ZWSP), "zero-width space kept");
            }
        }

        /// Arbitrary bytes never panic the decoder or the classifier.
        #[test]
        fn decoder_and_classifier_take_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Model::from_bytes(&data);
            let mut framed = b"OSBAYES\0\x01\0\0\0".to_vec();
            framed.extend_from_slice(&data);
            let _ = Model::from_bytes(&framed);
            static C: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
            let c = C.get_or_init(|| Classifier::new(outscore::classifier::builtin_model()));
            let _ = c.classify(&data);
        }
    }
}
