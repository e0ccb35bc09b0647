//! SMTP replies a filter may give (`550 5.7.1 text`), validated the way
//! Postfix checks them: a 4xx or 5xx code, an enhanced status code of the same
//! class, at most 32 lines of at most 980 characters, no CR or LF inside a
//! line, and every `%` doubled on the wire (Postfix reads the text as a format
//! string).

use std::fmt;

/// A reply text that cannot be sent as an SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply code {0} is not a 4xx or 5xx code")]
    Code(u16),
    #[error("enhanced status {status:?} does not match reply code {code}")]
    Enhanced { code: u16, status: String },
    #[error("reply has {0} lines; at most 32 are allowed")]
    TooManyLines(usize),
    #[error("reply line of {0} characters; at most 980 are allowed")]
    LineTooLong(usize),
    #[error("reply line contains CR, LF or NUL")]
    ControlCharacter,
    #[error("reply has no text")]
    Empty,
}

/// A validated SMTP reply: code, optional enhanced status, one or more lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    code: u16,
    enhanced: Option<String>,
    lines: Vec<String>,
}

impl SmtpReply {
    /// Build and validate a reply. `enhanced` is `x.y.z` with `x` equal to
    /// the code's first digit.
    pub fn new(code: u16, enhanced: Option<&str>, lines: &[&str]) -> Result<SmtpReply, ReplyError> {
        if !(400..600).contains(&code) {
            return Err(ReplyError::Code(code));
        }
        if let Some(status) = enhanced {
            let parts: Vec<&str> = status.split('.').collect();
            let valid = parts.len() == 3
                && parts.iter().all(|p| {
                    !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
                })
                && parts[0] == (code / 100).to_string();
            if !valid {
                return Err(ReplyError::Enhanced {
                    code,
                    status: status.to_string(),
                });
            }
        }
        if lines.is_empty() {
            return Err(ReplyError::Empty);
        }
        if lines.len() > 32 {
            return Err(ReplyError::TooManyLines(lines.len()));
        }
        for line in lines {
            if line.chars().count() > 980 {
                return Err(ReplyError::LineTooLong(line.chars().count()));
            }
            if line.contains(['\r', '\n', '\0']) {
                return Err(ReplyError::ControlCharacter);
            }
        }
        Ok(SmtpReply {
            code,
            enhanced: enhanced.map(str::to_string),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        })
    }

    /// Parse `"550 5.7.1 text"` as an operator writes it in configuration.
    pub fn parse(text: &str) -> Result<SmtpReply, ReplyError> {
        let text = text.trim();
        let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
        let code: u16 = code.parse().map_err(|_| ReplyError::Code(0))?;
        let (enhanced, rest) = match rest.split_once(' ') {
            Some((first, tail)) if first.contains('.') => (Some(first), tail),
            _ if rest.contains('.')
                && !rest.contains(' ')
                && rest.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
            {
                (Some(rest), "")
            }
            _ => (None, rest),
        };
        let lines: Vec<&str> = rest.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        SmtpReply::new(code, enhanced, &lines)
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> Option<&str> {
        self.enhanced.as_deref()
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// `true` for a 4xx (temporary) reply.
    pub fn is_temporary(&self) -> bool {
        self.code < 500
    }

    /// The SMFIR_REPLYCODE payload: lines joined by CRLF (none at the end),
    /// `%` doubled.
    pub fn wire_text(&self) -> String {
        let last = self.lines.len() - 1;
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push_str("\r\n");
            }
            out.push_str(&self.code.to_string());
            out.push(if i == last { ' ' } else { '-' });
            if let Some(status) = &self.enhanced {
                out.push_str(status);
                out.push(' ');
            }
            out.push_str(&line.replace('%', "%%"));
        }
        out
    }
}

impl fmt::Display for SmtpReply {
    /// The reply as the SMTP client sees it (one line per text line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire_text().replace("%%", "%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_percent() {
        let r = SmtpReply::new(550, Some("5.7.1"), &["100% spam"]).unwrap();
        assert_eq!(r.wire_text(), "550 5.7.1 100%% spam");
        assert_eq!(r.to_string(), "550 5.7.1 100% spam");
    }

    #[test]
    fn multi_line_uses_crlf_between_lines_only() {
        let r = SmtpReply::new(451, Some("4.7.1"), &["one", "two", "three"]).unwrap();
        assert_eq!(
            r.wire_text(),
            "451-4.7.1 one\r\n451-4.7.1 two\r\n451 4.7.1 three"
        );
    }

    #[test]
    fn class_mismatch_and_bad_codes_are_refused() {
        assert_eq!(
            SmtpReply::new(550, Some("4.7.1"), &["x"]),
            Err(ReplyError::Enhanced {
                code: 550,
                status: "4.7.1".into()
            })
        );
        assert_eq!(
            SmtpReply::new(250, None, &["x"]),
            Err(ReplyError::Code(250))
        );
        assert_eq!(
            SmtpReply::new(550, None, &["a\nb"]),
            Err(ReplyError::ControlCharacter)
        );
        assert!(matches!(
            SmtpReply::new(550, None, &["x"; 33]),
            Err(ReplyError::TooManyLines(33))
        ));
        assert!(matches!(
            SmtpReply::new(550, None, &[&"x".repeat(981)]),
            Err(ReplyError::LineTooLong(981))
        ));
    }

    #[test]
    fn parse_operator_text() {
        let r = SmtpReply::parse("550 5.7.1 L-SPAM20 outbound spam blocked").unwrap();
        assert_eq!(r.code(), 550);
        assert_eq!(r.enhanced(), Some("5.7.1"));
        assert_eq!(r.lines(), ["L-SPAM20 outbound spam blocked"]);
        let r = SmtpReply::parse("452 too many recipients").unwrap();
        assert_eq!(r.enhanced(), None);
        assert!(SmtpReply::parse("550 4.7.1 nope").is_err());
    }
}
