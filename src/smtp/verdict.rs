//! Verdicts about a message or an SMTP command, as values: continue, accept,
//! refuse with a reply, and the header edits that go with an accepted
//! message. Shared by whoever decides (pipeline, policy) and whoever carries
//! the answer (milter); knows nothing of either.

use super::reply::SmtpReply;

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
