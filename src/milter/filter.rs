//! What the milter layer asks of whoever decides about mail: the [`Filter`]
//! trait, and the verdicts it answers with. The milter layer turns verdicts
//! into SMFIR replies; it knows nothing of how they were reached.

use std::future::Future;

use bytes::Bytes;

use super::reply::SmtpReply;
use crate::envelope::Envelope;

/// The answer at MAIL FROM, at each RCPT, and the final answer at
/// end-of-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on with this message.
    Continue,
    /// Accept the message without looking at the rest of it.
    Accept,
    /// Accept towards the client but drop the message.
    Discard,
    /// Postfix's default rejection (`550 5.7.1 Command rejected`).
    Reject,
    /// Postfix's default temporary failure (`451 4.7.1 …`).
    Tempfail,
    /// Refuse with this reply; a 4xx is temporary, a 5xx permanent.
    Reply(SmtpReply),
}

impl Decision {
    /// `true` for anything that refuses the command.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Decision::Reject | Decision::Tempfail | Decision::Reply(_)
        )
    }
}

/// A change to the message's headers, applied by the MTA at end-of-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Append at the end of the headers.
    Add { name: String, value: String },
    /// Insert at a position among all headers (0 = first).
    Insert {
        index: u32,
        name: String,
        value: String,
    },
    /// Replace the `index`-th (1-based) header of that name; appended when
    /// there is no such header.
    Change {
        index: u32,
        name: String,
        value: String,
    },
    /// Remove the `index`-th (1-based) header of that name.
    Delete { index: u32, name: String },
}

/// The complete answer at end-of-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomVerdict {
    pub decision: Decision,
    /// Put the message on hold with this reason.
    pub quarantine: Option<String>,
    pub headers: Vec<HeaderEdit>,
}

impl EomVerdict {
    pub fn accept() -> EomVerdict {
        EomVerdict {
            decision: Decision::Accept,
            quarantine: None,
            headers: Vec::new(),
        }
    }

    pub fn with_decision(decision: Decision) -> EomVerdict {
        EomVerdict {
            decision,
            ..EomVerdict::accept()
        }
    }
}

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
}
