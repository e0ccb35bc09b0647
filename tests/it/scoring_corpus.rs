//! Corpus regression guard: over the shared labelled corpus, the built-in
//! rules keep false positives (ham at or above reject_score) under 0.5 % and
//! detect at least the share of spam they did when the rules were written.
//! `cargo run --release --example corpus_eval` prints the full breakdown.

use outscore::envelope::Envelope;
use outscore::scoring::Engine;

#[test]
fn false_positives_stay_under_half_a_percent() {
    let Some(corpus) = crate::support::common::shared_corpus() else {
        return;
    };
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let engine = Engine::builtin();
    let (mut ham, mut fp, mut spam, mut tp) = (0usize, 0usize, 0usize, 0usize);
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let raw = std::fs::read(corpus.join(cols[0])).unwrap();
        let over = engine.scan(&Envelope::default(), &raw).score >= engine.reject_score();
        if cols[1] == "ham" {
            ham += 1;
            fp += usize::from(over);
        } else {
            spam += 1;
            tp += usize::from(over);
        }
    }
    let fp_rate = fp as f64 / ham as f64;
    let detection = tp as f64 / spam as f64;
    eprintln!(
        "ham {ham}, false positives {fp} ({:.2}%); spam {spam}, detected {tp} ({:.2}%)",
        100.0 * fp_rate,
        100.0 * detection
    );
    assert!(ham > 4000 && spam > 4000);
    assert!(
        fp_rate < 0.005,
        "false-positive rate {:.2}%",
        100.0 * fp_rate
    );
    assert!(
        detection > 0.25,
        "detection rate fell to {:.2}%",
        100.0 * detection
    );
}

/// Every zip, RAR and 7z attachment in the shared corpus is listed from its
/// headers without breaking the message, and a real password-protected RAR
/// (headers encrypted) is flagged.
#[test]
fn archive_attachments_are_listed() {
    let Some(corpus) = crate::support::common::shared_corpus() else {
        return;
    };
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let (mut archives, mut listed) = (0usize, 0usize);
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let exts = cols.get(7).copied().unwrap_or("");
        if !exts.split(',').any(|e| matches!(e, "zip" | "rar" | "7z")) {
            continue;
        }
        let raw = std::fs::read(corpus.join(cols[0])).unwrap();
        let parsed = outscore::message::parse(&raw);
        for att in &parsed.attachments {
            if att
                .sniffed_type
                .is_some_and(|t| matches!(t, "zip" | "rar" | "7z"))
            {
                archives += 1;
                listed += usize::from(att.encrypted || !att.archive_members.is_empty());
            }
        }
    }
    eprintln!("{archives} archive attachments, {listed} with members or encryption seen");
    assert!(archives >= 30, "{archives}");
    assert!(listed * 10 >= archives * 9, "{listed} of {archives}");

    let raw = std::fs::read(corpus.join("spam/trec07p/5810f61224932bee32309998.eml")).unwrap();
    let report = Engine::builtin().scan(&Envelope::default(), &raw);
    let hit = report
        .symbols
        .iter()
        .find(|s| s.name == "ATTACH_ENCRYPTED_ARCHIVE")
        .expect("password-protected RAR flagged");
    assert!(
        hit.evidence.iter().any(|e| e.contains("hotfix-18220.rar")),
        "{hit:?}"
    );
}
