//! Rules: pure, synchronous checks that turn a parsed message and its envelope
//! into named symbols with evidence. No I/O; facts that need the network (SPF,
//! counters, account state) arrive as data. Rules know symbol names, never
//! weights: those live in `scores/` and are applied by `scoring`.

pub mod attachments;
pub mod identity;
pub mod keywords;
pub mod matcher;
pub mod structure;

use crate::message::{Normalized, ParsedMessage};

/// One symbol a rule emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub symbol: String,
    /// How strongly the rule matched, 0.0–1.0 for most rules.
    pub factor: f64,
    pub evidence: Vec<String>,
}

/// The symbols one message produced, at most one entry per symbol.
#[derive(Debug, Default)]
pub struct Hits(pub Vec<Hit>);

/// Evidence strings kept per symbol.
const MAX_EVIDENCE: usize = 8;

impl Hits {
    /// Record `symbol`; a repeated symbol keeps the highest factor and
    /// collects the evidence.
    pub fn add(&mut self, symbol: &str, factor: f64, evidence: impl Into<String>) {
        let evidence = evidence.into();
        if let Some(hit) = self.0.iter_mut().find(|h| h.symbol == symbol) {
            hit.factor = hit.factor.max(factor);
            if hit.evidence.len() < MAX_EVIDENCE && !hit.evidence.contains(&evidence) {
                hit.evidence.push(evidence);
            }
            return;
        }
        self.0.push(Hit {
            symbol: symbol.to_string(),
            factor,
            evidence: vec![evidence],
        });
    }

    pub fn get(&self, symbol: &str) -> Option<&Hit> {
        self.0.iter().find(|h| h.symbol == symbol)
    }
}

/// Where a match was found; evidence names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Subject,
    Body,
    AttachmentName,
    Url,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Subject => "subject",
            Place::Body => "body",
            Place::AttachmentName => "attachment name",
            Place::Url => "url",
        }
    }
}

/// A parsed message with its normalised texts, computed once per message.
pub struct Context<'a> {
    pub msg: &'a ParsedMessage,
    pub subject: Normalized,
    pub body: Normalized,
    /// Normalised attachment names (and zip member names), with the source.
    pub names: Vec<(String, Normalized)>,
}

impl<'a> Context<'a> {
    pub fn new(msg: &'a ParsedMessage) -> Context<'a> {
        let subject = Normalized::new(msg.subject.as_deref().unwrap_or(""));
        let body = Normalized::new(&msg.text);
        let names = msg
            .attachments
            .iter()
            .flat_map(|a| a.name.iter().chain(a.archive_members.iter()))
            .take(64)
            .map(|n| (n.clone(), Normalized::new(n)))
            .collect();
        Context {
            msg,
            subject,
            body,
            names,
        }
    }

    /// The source text a place's normalised text came from.
    pub fn source(&self, place: Place) -> &str {
        match place {
            Place::Subject => self.msg.subject.as_deref().unwrap_or(""),
            Place::Body => &self.msg.text,
            Place::AttachmentName | Place::Url => "",
        }
    }
}

/// Every symbol emitted by rule code (not by keyword lists or regex rules,
/// whose symbols are named in their files). `scores/symbols.toml` must give
/// each a weight.
pub const CODE_SYMBOLS: &[&str] = &[
    // structure.rs
    "GTUBE",
    "MIME_MALFORMED",
    "MIME_LIMITS_EXCEEDED",
    "MISSING_MESSAGE_ID",
    "INVALID_MESSAGE_ID",
    "MISSING_DATE",
    "INVALID_DATE",
    "MISSING_FROM",
    "MULTIPLE_FROM",
    "EMPTY_SUBJECT",
    "SUBJECT_ALL_CAPS",
    "SUBJECT_EXCLAIM",
    "SUBJECT_DOLLARS",
    "HTML_ONLY",
    "HTML_HIDDEN_TEXT",
    "LINK_TEXT_DOMAIN_MISMATCH",
    "MANY_LINKS_ONE_HOST",
    "URL_IP_LITERAL",
    "URL_USERINFO",
    "REPLYTO_FREEMAIL_DIFFERS",
    "FROM_NAME_HAS_ADDRESS",
    "NO_TEXT_BODY",
    // attachments.rs
    "ATTACH_DANGEROUS_EXT",
    "ATTACH_DOUBLE_EXT",
    "ATTACH_BIDI_NAME",
    "ATTACH_TYPE_MISMATCH",
    "ATTACH_EXECUTABLE",
    "ATTACH_ARCHIVE_DANGEROUS",
    "ATTACH_ENCRYPTED_ARCHIVE",
    "ATTACH_HTML",
    // scoring (policy)
    "WHITELISTED",
    "EXTERNAL_SYMBOL_UNKNOWN",
    "SENSITIVITY_HIGH",
    "SENSITIVITY_LOW",
];
