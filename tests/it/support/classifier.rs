//! Shared by the classifier test binaries: deterministic synthetic messages
//! and a model trained on them.

use outscore::classifier::{Classifier, Model, MIN_LEARNED};

/// A deterministic synthetic message drawn from a vocabulary.
pub fn message(vocab: &[&str], n: usize, subject: &str) -> Vec<u8> {
    let mut body = String::new();
    let mut x = n as u64 * 2_654_435_761 + 7;
    for i in 0..60 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        body.push_str(vocab[(x >> 33) as usize % vocab.len()]);
        body.push(if i % 12 == 11 { '\n' } else { ' ' });
    }
    format!(
        "From: a{n}@example.net\r\nTo: b@example.org\r\nSubject: {subject} {n}\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A classifier that has learned enough "Win big" messages from `spam` and
/// "Weekly sync" messages from `ham` to classify.
pub fn trained(spam: &[&str], ham: &[&str]) -> Classifier {
    let mut c = Classifier::new(Model::new(16, true));
    for n in 0..MIN_LEARNED as usize + 10 {
        assert!(c.add(&message(spam, n, "Win big"), true));
        assert!(c.add(&message(ham, n, "Weekly sync"), false));
    }
    c.finish();
    c
}
