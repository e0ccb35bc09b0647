//! The scan report: what the engine found in one message, symbol by symbol.
//! It is what the store keeps, what the review pages show and what
//! `outscore scan` prints, so it is plain serialisable data.

use serde::{Deserialize, Serialize};

/// One symbol that fired, with the weight that made its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolResult {
    /// `UPPER_SNAKE` name, as declared in `scores/`.
    pub name: String,
    /// Group the symbol belongs to (its cap applies to the group's sum).
    pub group: String,
    /// Weight from `scores/`.
    pub weight: f64,
    /// How strongly the rule matched (1.0 for a plain hit).
    pub factor: f64,
    /// Contribution to the total after group caps: `weight * factor`, capped.
    pub score: f64,
    /// Human-readable proof: the keyword and where it was found, the file
    /// name, the header…
    pub evidence: Vec<String>,
}

/// An attachment as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentSummary {
    pub name: Option<String>,
    pub declared_type: Option<String>,
    pub sniffed_type: Option<String>,
    pub size: u64,
}

/// Facts about the message that the report keeps beside the symbols.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub size: u64,
    pub parts: u32,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub attachments: Vec<AttachmentSummary>,
    pub url_count: u32,
    pub charsets: Vec<String>,
    /// Files the attachment policy blocks whatever the score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dangerous_files: Vec<crate::rules::attachments::DangerousFile>,
}

/// Time spent per stage, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub parse_us: u64,
    pub rules_us: u64,
    pub total_us: u64,
}

/// Why a message was let through (or deferred) without a scan: the milter's
/// fail-safe answered because scoring overran its budget or failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanSkipped {
    /// `timeout` or `error`.
    pub cause: String,
    /// What happened: `scan exceeded 20s`, `filter panicked`, …
    pub detail: String,
}

/// The result of scoring one message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Sum of the symbols' scores.
    pub score: f64,
    /// Every symbol that fired, highest score first.
    pub symbols: Vec<SymbolResult>,
    pub message: MessageSummary,
    pub timings: Timings,
    /// The message policy that refused the message (`dangerous_attachment`,
    /// `sender_mismatch`, `large_message`), set by the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The SMTP reply the sender got when the message was refused (in
    /// observe mode: the reply it would have got).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Decided in observe mode: nothing was refused and no account changed;
    /// the tier, refusal and reply are what enforcement would have done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
    /// Set when no rule ran: the message got the fail-safe verdict. Its
    /// score is then 0 and means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<ScanSkipped>,
}

impl ScanReport {
    /// The symbol with this name, if it fired.
    pub fn symbol(&self, name: &str) -> Option<&SymbolResult> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// `NAME(score)` pairs joined by commas, for a one-line header or log.
    pub fn symbols_line(&self) -> String {
        self.symbols
            .iter()
            .map(|s| format!("{}({:.2})", s.name, s.score))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
