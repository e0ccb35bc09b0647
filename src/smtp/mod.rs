//! SMTP-level answers every layer may name: a validated reply text
//! ([`SmtpReply`]) and the verdicts built from it ([`Decision`],
//! [`EomVerdict`], [`HeaderEdit`]). A leaf module: it imports nothing else of
//! the crate.

pub mod reply;
pub mod verdict;

pub use reply::{ReplyError, SmtpReply};
pub use verdict::{Decision, EomVerdict, HeaderEdit};
