//! Message policies: the providers' rules that refuse one message whatever
//! its spam score — a dangerous attachment, sending as an address the login
//! may not use, a large message to many recipients. The pipeline gathers
//! the facts ([`Outgoing`]); this module turns them into a [`Refusal`] whose
//! reply names the rule. A refusal is not an account action: only a spam
//! tier is. Refusals are counted per hour so that a tier rule
//! (`refusals_last_hour` in `tiers.toml`) can escalate when they repeat.
//! Pure: no I/O, the configuration comes with the [`Policy`].

use serde::{Deserialize, Serialize};

use super::Policy;
use crate::config::Enforce;
use crate::rules::attachments::DangerousFile;
use crate::smtp::SmtpReply;

/// What the pipeline knows of one message when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing<'a> {
    /// Size as received, in bytes.
    pub size: u64,
    pub rcpts: usize,
    /// Files the attachment policy blocks.
    pub dangerous_files: &'a [DangerousFile],
    /// Header From addresses the sending login may not use.
    pub foreign_header_from: &'a [String],
}

impl Outgoing<'static> {
    /// A message of `size` bytes to one recipient, with nothing else known.
    pub fn sized(size: u64) -> Outgoing<'static> {
        Outgoing {
            size,
            rcpts: 1,
            ..Outgoing::default()
        }
    }
}

/// Which message policy refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    DangerousAttachment,
    /// Found at MAIL FROM (`mail from`) or in the header From (`header`).
    SenderMismatch,
    LargeMessage,
    /// Over the hard size limit (`[limits] max_message_mb`).
    Size,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::DangerousAttachment => "dangerous_attachment",
            RefusalReason::SenderMismatch => "sender_mismatch",
            RefusalReason::LargeMessage => "large_message",
            RefusalReason::Size => "size",
        }
    }
}

/// A message refused by a message policy, with the reply that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub reply: SmtpReply,
}

impl Refusal {
    fn new(reason: RefusalReason, text: &str) -> Refusal {
        Refusal {
            reason,
            reply: SmtpReply::new(550, Some("5.7.1"), &[text])
                .expect("reply text is sanitised to one printable line"),
        }
    }
}

/// A name from the message as a reply may quote it: printable ASCII only
/// (others become `?`), no double quotes, at most 80 characters.
fn quoted(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .take(80)
        .collect();
    if name.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb.fract() == 0.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

impl Policy {
    /// The first message policy `message` breaks, if any: a dangerous
    /// attachment, then a header From the login may not use, then too many
    /// recipients for a large message.
    pub fn message_refusal(&self, account: &str, message: &Outgoing<'_>) -> Option<Refusal> {
        if self.messages.dangerous_attachments == Enforce::Refuse {
            if let Some(file) = message.dangerous_files.first() {
                let name = quoted(&file.name);
                let why = match (&file.member, file.sniffed) {
                    (Some(member), _) => format!(
                        "it contains \"{}\" and .{} files are not allowed",
                        quoted(member),
                        file.ext
                    ),
                    (None, true) => format!(
                        "it is an executable program ({}) whatever its name says",
                        file.ext
                    ),
                    (None, false) => format!(".{} files are not allowed", file.ext),
                };
                return Some(Refusal::new(
                    RefusalReason::DangerousAttachment,
                    &format!("Attachment \"{name}\" refused: {why}"),
                ));
            }
        }
        if let Some(address) = message.foreign_header_from.first() {
            if self.messages.sender_mismatch_for(account) == Enforce::Refuse {
                return Some(Refusal::new(
                    RefusalReason::SenderMismatch,
                    &format!(
                        "Sender mismatch (header): {} may not send as From {}",
                        quoted(account),
                        quoted(address)
                    ),
                ));
            }
        }
        let limits = &self.limits;
        if message.size > limits.large_message_bytes
            && message.rcpts as u64 > limits.large_message_rcpts
        {
            return Some(Refusal::new(
                RefusalReason::LargeMessage,
                &format!(
                    "Messages over {} may have at most {} recipients; this one has {} and {} recipients",
                    megabytes(limits.large_message_bytes),
                    limits.large_message_rcpts,
                    megabytes(message.size),
                    message.rcpts
                ),
            ));
        }
        None
    }

    /// At MAIL FROM: the envelope sender is an address the login may not
    /// use. `None` when the mismatch is only scored for this account.
    pub fn mail_from_refusal(&self, account: &str, mail_from: &str) -> Option<Refusal> {
        (self.messages.sender_mismatch_for(account) == Enforce::Refuse).then(|| {
            Refusal::new(
                RefusalReason::SenderMismatch,
                &format!(
                    "Sender mismatch (mail from): {} may not send as {}",
                    quoted(account),
                    quoted(mail_from)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy() -> Policy {
        Policy::from_config(&Config::default()).unwrap()
    }

    fn file(name: &str, member: Option<&str>, ext: &str, sniffed: bool) -> DangerousFile {
        DangerousFile {
            name: name.into(),
            member: member.map(str::to_string),
            ext: ext.into(),
            sniffed,
        }
    }

    #[test]
    fn a_dangerous_attachment_is_named_in_the_reply() {
        let p = policy();
        let files = [file("report.exe", None, "exe", false)];
        let msg = Outgoing {
            size: 1000,
            rcpts: 1,
            dangerous_files: &files,
            ..Outgoing::default()
        };
        let r = p.message_refusal("a@x.example", &msg).unwrap();
        assert_eq!(r.reason, RefusalReason::DangerousAttachment);
        assert_eq!(
            r.reply.to_string(),
            "550 5.7.1 Attachment \"report.exe\" refused: .exe files are not allowed"
        );
        let files = [file("tools.zip", Some("bin/setup.js"), "js", false)];
        let r = p
            .message_refusal(
                "a@x.example",
                &Outgoing {
                    dangerous_files: &files,
                    ..msg
                },
            )
            .unwrap();
        assert!(
            r.reply.to_string().contains(
                "\"tools.zip\" refused: it contains \"bin/setup.js\" and .js files are not allowed"
            ),
            "{}",
            r.reply
        );
        let files = [file("f\u{202e}dp.exe\"\r\n", None, "exe", false)];
        let r = p
            .message_refusal(
                "a@x.example",
                &Outgoing {
                    dangerous_files: &files,
                    ..msg
                },
            )
            .unwrap();
        assert!(
            r.reply.to_string().contains("\"f?dp.exe'??\""),
            "{}",
            r.reply
        );
    }

    #[test]
    fn score_mode_does_not_refuse() {
        let mut p = policy();
        p.messages.dangerous_attachments = Enforce::Score;
        p.messages.sender_mismatch = Enforce::Score;
        let files = [file("report.exe", None, "exe", false)];
        let foreign = ["boss@other.example".to_string()];
        let msg = Outgoing {
            size: 10,
            rcpts: 1,
            dangerous_files: &files,
            foreign_header_from: &foreign,
        };
        assert_eq!(p.message_refusal("a@x.example", &msg), None);
        assert_eq!(
            p.mail_from_refusal("a@x.example", "boss@other.example"),
            None
        );
        // A per-domain entry turns it back on for that domain only.
        p.messages
            .sender_mismatch_for
            .insert("x.example".into(), Enforce::Refuse);
        assert!(p.mail_from_refusal("a@x.example", "b@o.example").is_some());
        assert!(p.mail_from_refusal("a@y.example", "b@o.example").is_none());
        let r = p.message_refusal("a@x.example", &msg).unwrap();
        assert_eq!(
            r.reply.to_string(),
            "550 5.7.1 Sender mismatch (header): a@x.example may not send as From boss@other.example"
        );
    }

    #[test]
    fn a_large_message_may_go_to_few_recipients() {
        let p = policy();
        let mb = 1024 * 1024;
        let at = |size: u64, rcpts: usize| {
            p.message_refusal(
                "a@x.example",
                &Outgoing {
                    size,
                    rcpts,
                    ..Outgoing::default()
                },
            )
        };
        let r = at(11 * mb, 11).unwrap();
        assert_eq!(r.reason, RefusalReason::LargeMessage);
        assert_eq!(
            r.reply.to_string(),
            "550 5.7.1 Messages over 10 MB may have at most 10 recipients; this one has 11 MB and 11 recipients"
        );
        assert_eq!(at(11 * mb, 10), None);
        assert_eq!(at(9 * mb, 50), None);
        assert_eq!(at(10 * mb, 50), None, "the limit itself is allowed");
    }
}
