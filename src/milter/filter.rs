//! What the milter layer asks of whoever decides about mail: the [`Filter`]
//! trait. It answers with the verdicts of [`crate::smtp`]; the milter layer
//! turns them into SMFIR replies and knows nothing of how they were reached.

use std::future::Future;

use bytes::Bytes;

use crate::envelope::Envelope;
use crate::smtp::{Decision, EomVerdict};

/// One message as the MTA delivered it to the milter.
#[derive(Debug, Clone)]
pub struct Message {
    /// Headers, blank line and body as RFC 5322 bytes with CRLF line ends;
    /// the body may be cut at the session's size limit.
    pub raw: Bytes,
    /// Bytes the MTA sent, counted even past the size limit.
    pub size: u64,
    /// `true` when `raw` holds less than the MTA sent.
    pub truncated: bool,
}

/// Why a message got the fail-safe verdict instead of the filter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipCause {
    /// The filter overran the scan budget.
    Timeout,
    /// The filter returned an error or panicked.
    Error,
}

impl SkipCause {
    /// `timeout` or `error`, as the `skipped (…)` header says it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipCause::Timeout => "timeout",
            SkipCause::Error => "error",
        }
    }
}

/// A message that got the fail-safe verdict: the cause and what happened
/// (`scan exceeded 20s`, `filter panicked`, `filter error: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub cause: SkipCause,
    pub detail: String,
}

/// A filter failed to decide; the session answers with the fail-safe verdict.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// Decides about messages. Methods are called from the connection's task;
/// `end_of_message` runs on its own task, under a time budget, with panics
/// contained.
pub trait Filter: Send + Sync + 'static {
    /// MAIL FROM arrived; `envelope` has the connection facts, the login and
    /// the sender. A refusal here saves reading the message.
    fn mail(&self, envelope: &Envelope) -> impl Future<Output = Decision> + Send;

    /// A recipient arrived (already appended to `envelope.rcpts`).
    fn rcpt(&self, envelope: &Envelope, rcpt: &str) -> impl Future<Output = Decision> + Send;

    /// The whole message is here.
    fn end_of_message(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> impl Future<Output = Result<EomVerdict, FilterError>> + Send;

    /// `end_of_message` gave no verdict (it overran the scan budget, failed
    /// or panicked), so the message got `verdict`, the fail-safe one. The
    /// envelope and message are the ones it was given; the filter may keep a
    /// trace of what passed unjudged. Called on the connection's task before
    /// the verdict is sent: it must not block. Does nothing by default.
    fn skipped(&self, envelope: Envelope, message: Message, skip: Skip, verdict: &EomVerdict) {
        let _ = (envelope, message, skip, verdict);
    }
}
