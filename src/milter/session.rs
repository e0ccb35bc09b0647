//! The per-connection milter state machine, without I/O: feed it decoded
//! [`Command`]s, get back what to send ([`Step`]). Connection state (client,
//! HELO, connect macros, negotiated options) lives as long as the connection;
//! message state (envelope, headers, body) is reset on ABORT and on a new
//! MAIL, because Postfix sends ABORT after every message and reuses the
//! connection for the next one.
//!
//! A transaction opens with MAIL and closes at end-of-message or ABORT.
//! RCPT, DATA, HEADER, EOH, BODY and end-of-message outside one are a
//! protocol error ([`SessionError::OutOfOrder`]): the connection ends and no
//! message reaches the filter, so nothing is scored or recorded without an
//! envelope sender. Macros are never an error: Postfix sends each stage's
//! macro packet before the command (even an empty one, even for a step
//! negotiated away); macros for a stage with no transaction open are dropped.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::consts::{action, cmd, stage, step, PROTOCOL_VERSION};
use super::filter::Message;
use super::frame::{Command, ConnFamily, Reply};
use crate::envelope::{strip_brackets, Client, Envelope, Family};
use crate::smtp::{Decision, EomVerdict, HeaderEdit};

/// Actions outscore asks for: add and change headers, quarantine, macro lists.
const WANTED_ACTIONS: u32 =
    action::ADDHDRS | action::CHGHDRS | action::QUARANTINE | action::SETSYMLIST;

/// Steps outscore does not need a reply round-trip for, plus SKIP and the
/// original header spacing. DATA is answered on purpose: with NR_DATA over
/// TCP, Postfix's first header packet waited for our delayed ACK of the
/// unanswered DATA packet (Nagle), about 40 ms per message.
const WANTED_STEPS: u32 = step::NOUNKNOWN
    | step::NR_CONN
    | step::NR_HELO
    | step::NR_HDR
    | step::NR_EOH
    | step::NR_BODY
    | step::NR_UNKN
    | step::SKIP
    | step::HDR_LEADSPC;

/// Macros requested per stage with SETSYMLIST. A list replaces the MTA's
/// default list for that stage, so each names everything outscore reads.
pub const MACRO_LISTS: &[(u32, &str)] = &[
    (
        stage::CONNECT,
        "j {daemon_name} {daemon_addr} {client_addr} {client_name} {client_port} _",
    ),
    (
        stage::MAIL,
        "i {auth_type} {auth_authen} {auth_author} {mail_addr} {client_addr}",
    ),
    (stage::RCPT, "i {rcpt_addr} {rcpt_mailer}"),
    (stage::DATA, "i"),
    (stage::EOM, "i"),
];

/// What the connection must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this reply.
    Reply(Reply),
    /// Nothing to send (ABORT, MACRO, or a step negotiated as no-reply).
    Nothing,
    /// Ask the filter about MAIL FROM, then call [`Session::answer`].
    AskMail,
    /// Ask the filter about this recipient, then call [`Session::answer`].
    AskRcpt(String),
    /// The message is complete: take it with [`Session::take_message`], ask
    /// the filter, then call [`Session::end_of_message`].
    AskEom,
    /// Close the connection (QUIT, QUIT_NC).
    Close,
}

/// A command arrived that the session cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("MTA offered protocol version {0}; at least 2 is needed")]
    Version(u32),
    #[error("{0} before option negotiation")]
    NotNegotiated(&'static str),
    #[error("{0} outside a transaction: no MAIL FROM since the last end of message or ABORT")]
    OutOfOrder(&'static str),
}

/// What was agreed in option negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub steps: u32,
}

impl Negotiated {
    fn no_reply(&self, flag: u32) -> bool {
        self.steps & flag != 0
    }
}

#[derive(Debug, Default)]
struct MessageState {
    envelope: Envelope,
    mail_seen: bool,
    headers: BytesMut,
    body: BytesMut,
    size: u64,
    truncated: bool,
    body_started: bool,
    /// A refusal at RCPT for sendmail(1) mail, which must not be refused at
    /// RCPT (Postfix calls that a configuration error); applied at EOM.
    deferred: Option<Decision>,
}

/// One milter connection's state.
#[derive(Debug)]
pub struct Session {
    negotiated: Option<Negotiated>,
    client: Client,
    conn_macros: BTreeMap<String, String>,
    message: Option<MessageState>,
    max_message_bytes: usize,
    messages_seen: u64,
}

impl Session {
    /// A new session; message bytes past `max_message_bytes` are counted
    /// but not kept.
    pub fn new(max_message_bytes: usize) -> Session {
        Session {
            negotiated: None,
            client: Client::default(),
            conn_macros: BTreeMap::new(),
            message: None,
            max_message_bytes,
            messages_seen: 0,
        }
    }

    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The current message's envelope, if a message is open.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.message.as_ref().map(|m| &m.envelope)
    }

    /// How many messages reached end-of-message on this connection.
    pub fn messages_seen(&self) -> u64 {
        self.messages_seen
    }

    /// Advance the state machine by one command.
    pub fn handle(&mut self, command: Command) -> Result<Step, SessionError> {
        if self.negotiated.is_none()
            && !matches!(
                command,
                Command::OptNeg { .. }
                    | Command::Quit
                    | Command::QuitNc
                    | Command::Abort
                    | Command::Macro { .. }
            )
        {
            return Err(SessionError::NotNegotiated(command.name()));
        }
        if matches!(
            command,
            Command::Rcpt(_)
                | Command::Data
                | Command::Header { .. }
                | Command::Eoh
                | Command::Body(_)
                | Command::BodyEob(_)
        ) && !self.message.as_ref().is_some_and(|m| m.mail_seen)
        {
            return Err(SessionError::OutOfOrder(command.name()));
        }
        let step = match command {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => Step::Reply(self.negotiate(version, actions, protocol)?),
            Command::Macro { for_command, pairs } => {
                self.macros(for_command, pairs);
                Step::Nothing
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                self.client = Client {
                    hostname,
                    family: match family {
                        ConnFamily::Inet => Family::Inet,
                        ConnFamily::Inet6 => Family::Inet6,
                        ConnFamily::Unix => Family::Unix,
                        ConnFamily::Unknown => Family::Unknown,
                    },
                    addr: address.trim_start_matches("IPv6:").parse::<IpAddr>().ok(),
                    port,
                    helo: None,
                };
                self.message = None;
                self.ack(step::NR_CONN)
            }
            Command::Helo(name) => {
                self.client.helo = Some(name);
                self.ack(step::NR_HELO)
            }
            Command::Mail(argv) => {
                let fresh = matches!(&self.message, Some(m) if !m.mail_seen);
                if !fresh {
                    self.message = Some(self.new_message());
                }
                let msg = self.message.as_mut().expect("message just opened");
                let sender = argv.first().map(String::as_str).unwrap_or("");
                msg.envelope.local_submission = !sender.starts_with('<');
                msg.envelope.mail_from = strip_brackets(sender).to_string();
                msg.envelope.mail_args = argv.iter().skip(1).cloned().collect();
                msg.mail_seen = true;
                Step::AskMail
            }
            Command::Rcpt(argv) => {
                let msg = self.message_mut();
                let rcpt = strip_brackets(&argv[0]).to_string();
                msg.envelope.rcpts.push(rcpt.clone());
                Step::AskRcpt(rcpt)
            }
            Command::Data => self.ack(step::NR_DATA),
            Command::Header { name, value } => {
                let leadspc = self
                    .negotiated
                    .is_some_and(|n| n.no_reply(step::HDR_LEADSPC));
                let limit = self.max_message_bytes;
                let msg = self.message_mut();
                let len = name.len() + value.len() + 4;
                msg.size += len as u64;
                // Past the size limit headers are counted, not kept, like
                // the body: a header flood cannot grow memory.
                if msg.headers.len() + msg.body.len() + len > limit {
                    msg.truncated = true;
                } else {
                    append_header(&mut msg.headers, &name, &value, leadspc);
                }
                self.ack(step::NR_HDR)
            }
            Command::Eoh => self.ack(step::NR_EOH),
            Command::Body(chunk) => {
                let limit = self.max_message_bytes;
                let msg = self.message_mut();
                msg.body_started = true;
                msg.size += chunk.len() as u64;
                let room = limit.saturating_sub(msg.headers.len() + msg.body.len());
                if chunk.len() > room {
                    msg.body.put_slice(&chunk[..room]);
                    msg.truncated = true;
                } else {
                    msg.body.put_slice(&chunk);
                }
                let skip = self.negotiated.is_some_and(|n| n.steps & step::SKIP != 0);
                if self.negotiated.is_some_and(|n| n.no_reply(step::NR_BODY)) {
                    Step::Nothing
                } else if skip && self.message.as_ref().is_some_and(|m| m.truncated) {
                    Step::Reply(Reply::Skip)
                } else {
                    Step::Reply(Reply::Continue)
                }
            }
            Command::BodyEob(chunk) => {
                if !chunk.is_empty() {
                    self.message_mut().body.put_slice(&chunk);
                }
                self.messages_seen += 1;
                Step::AskEom
            }
            Command::Abort => {
                self.message = None;
                Step::Nothing
            }
            Command::Quit | Command::QuitNc => Step::Close,
            Command::Unknown(_) => self.ack(step::NR_UNKN),
        };
        Ok(step)
    }

    /// Turn the filter's answer at MAIL or RCPT into the reply to send.
    pub fn answer(&mut self, decision: Decision) -> Reply {
        let local = self
            .message
            .as_ref()
            .is_some_and(|m| m.envelope.local_submission);
        let at_rcpt = self
            .message
            .as_ref()
            .is_some_and(|m| !m.envelope.rcpts.is_empty());
        if local && at_rcpt && decision.is_refusal() {
            let msg = self.message_mut();
            msg.deferred.get_or_insert(decision);
            return Reply::Continue;
        }
        if decision.is_refusal() && at_rcpt {
            // A refused recipient is not part of the message.
            self.message_mut().envelope.rcpts.pop();
        }
        decision_reply(decision)
    }

    /// Hand out the finished message: envelope and raw RFC 5322 bytes.
    pub fn take_message(&mut self) -> (Envelope, Message) {
        let msg = self.message_mut();
        let mut raw = BytesMut::with_capacity(msg.headers.len() + 2 + msg.body.len());
        raw.put_slice(&msg.headers);
        raw.put_slice(b"\r\n");
        raw.put_slice(&msg.body);
        let message = Message {
            raw: raw.freeze(),
            size: msg.size,
            truncated: msg.truncated,
        };
        (msg.envelope.clone(), message)
    }

    /// The replies that end a message: header edits and quarantine the MTA
    /// allowed, then exactly one final reply.
    pub fn end_of_message(&mut self, verdict: EomVerdict) -> Vec<Reply> {
        let negotiated = self.negotiated.unwrap_or(Negotiated {
            version: 2,
            actions: 0,
            steps: 0,
        });
        // The message is over: Postfix sends its ABORT only when the next
        // transaction starts, so until then the connection counts as idle
        // (a shutdown may close it).
        let deferred = self.message.take().and_then(|m| m.deferred);
        let decision = match deferred {
            Some(refusal) if !verdict.decision.is_refusal() => refusal,
            _ => verdict.decision,
        };
        let mut out = Vec::new();
        if !decision.is_refusal() && decision != Decision::Discard {
            let leadspc = negotiated.no_reply(step::HDR_LEADSPC);
            for edit in verdict.headers {
                if let Some(reply) = header_reply(edit, negotiated.actions, leadspc) {
                    out.push(reply);
                }
            }
            if let Some(reason) = verdict.quarantine {
                if negotiated.actions & action::QUARANTINE != 0 {
                    out.push(Reply::Quarantine(reason));
                }
            }
        }
        out.push(decision_reply(decision));
        out
    }

    fn negotiate(
        &mut self,
        version: u32,
        actions: u32,
        protocol: u32,
    ) -> Result<Reply, SessionError> {
        if version < 2 {
            return Err(SessionError::Version(version));
        }
        let version = version.min(PROTOCOL_VERSION);
        let mut actions = WANTED_ACTIONS & actions;
        let steps = WANTED_STEPS & protocol;
        let macros = if version >= 6 && actions & action::SETSYMLIST != 0 {
            MACRO_LISTS
                .iter()
                .map(|(s, l)| (*s, l.to_string()))
                .collect()
        } else {
            actions &= !action::SETSYMLIST;
            Vec::new()
        };
        self.negotiated = Some(Negotiated {
            version,
            actions,
            steps,
        });
        Ok(Reply::OptNeg {
            version,
            actions,
            protocol: steps,
            macros,
        })
    }

    fn macros(&mut self, for_command: u8, pairs: Vec<(String, String)>) {
        match for_command {
            cmd::CONNECT | cmd::HELO => {
                for (name, value) in pairs {
                    if name == "{client_addr}" && self.client.addr.is_none() {
                        self.client.addr = value.parse().ok();
                    }
                    if within_budget(&self.conn_macros, &name, &value) {
                        self.conn_macros.insert(name, value);
                    }
                }
            }
            _ => {
                if for_command == cmd::MAIL && self.message.as_ref().is_none_or(|m| m.mail_seen) {
                    self.message = Some(self.new_message());
                }
                // Macros of a later stage with no transaction open (an
                // UNKNOWN command's between messages, say) belong to nothing.
                let Some(msg) = self.message.as_mut() else {
                    return;
                };
                for (name, value) in pairs {
                    if !within_budget(&msg.envelope.macros, &name, &value) {
                        continue;
                    }
                    apply_macro(&mut msg.envelope, &name, &value);
                    msg.envelope.macros.insert(name, value);
                }
            }
        }
    }

    fn new_message(&self) -> MessageState {
        let mut envelope = Envelope {
            client: self.client.clone(),
            macros: self.conn_macros.clone(),
            ..Envelope::default()
        };
        if let Some(j) = self.conn_macros.get("j") {
            envelope.mta_host = Some(j.clone());
        }
        MessageState {
            envelope,
            ..MessageState::default()
        }
    }

    /// The open message. [`Session::handle`] refuses every message command
    /// outside a transaction, so one is open wherever this is called; should
    /// a caller break that order, an empty message stands in rather than a
    /// panic.
    fn message_mut(&mut self) -> &mut MessageState {
        if self.message.is_none() {
            self.message = Some(self.new_message());
        }
        self.message.as_mut().expect("message opened above")
    }

    fn ack(&self, no_reply_flag: u32) -> Step {
        match self.negotiated {
            Some(n) if n.no_reply(no_reply_flag) => Step::Nothing,
            _ => Step::Reply(Reply::Continue),
        }
    }
}

/// Most bytes of macros kept per connection (connect and HELO macros) and
/// per message; Postfix sends a few hundred. A flood past it is dropped,
/// so a hostile client cannot grow memory through macros.
pub const MACRO_BUDGET: usize = 64 * 1024;

/// `name = value` fits in `kept`'s budget (a value that replaces another
/// counts only its own bytes).
fn within_budget(kept: &BTreeMap<String, String>, name: &str, value: &str) -> bool {
    let used: usize = kept
        .iter()
        .filter(|(k, _)| k.as_str() != name)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let fits = used + name.len() + value.len() <= MACRO_BUDGET;
    if !fits {
        tracing::warn!(macro_name = %name.escape_debug(), bytes = value.len(), "milter macro dropped: over the macro budget");
    }
    fits
}

fn apply_macro(envelope: &mut Envelope, name: &str, value: &str) {
    let set = |field: &mut Option<String>| {
        if !value.is_empty() {
            *field = Some(value.to_string());
        }
    };
    match name {
        "{auth_authen}" => set(&mut envelope.auth_login),
        "{auth_type}" => set(&mut envelope.auth_type),
        "i" => set(&mut envelope.queue_id),
        "j" => set(&mut envelope.mta_host),
        "{client_addr}" if envelope.client.addr.is_none() => {
            envelope.client.addr = value.parse().ok()
        }
        _ => {}
    }
}

/// Append one header to the raw header block. Folded values arrive with bare
/// LF between lines; the block uses CRLF.
fn append_header(out: &mut BytesMut, name: &[u8], value: &[u8], leadspc: bool) {
    out.put_slice(name);
    out.put_u8(b':');
    if !leadspc {
        out.put_u8(b' ');
    }
    let mut prev = 0u8;
    for &b in value {
        if b == b'\n' && prev != b'\r' {
            out.put_u8(b'\r');
        }
        out.put_u8(b);
        prev = b;
    }
    out.put_slice(b"\r\n");
}

fn decision_reply(decision: Decision) -> Reply {
    match decision {
        Decision::Continue => Reply::Continue,
        Decision::Accept => Reply::Accept,
        Decision::Discard => Reply::Discard,
        Decision::Reject => Reply::Reject,
        Decision::Tempfail => Reply::Tempfail,
        Decision::Reply(reply) => Reply::ReplyCode(reply.wire_text()),
    }
}

fn header_reply(edit: HeaderEdit, actions: u32, leadspc: bool) -> Option<Reply> {
    // With HDR_LEADSPC the MTA writes our value verbatim after the colon.
    let spaced = |v: String| if leadspc { format!(" {v}") } else { v };
    match edit {
        HeaderEdit::Add { name, value } if actions & action::ADDHDRS != 0 => {
            Some(Reply::AddHeader {
                name,
                value: spaced(value),
            })
        }
        HeaderEdit::Insert { index, name, value } if actions & action::ADDHDRS != 0 => {
            Some(Reply::InsHeader {
                index,
                name,
                value: spaced(value),
            })
        }
        HeaderEdit::Change { index, name, value } if actions & action::CHGHDRS != 0 => {
            Some(Reply::ChgHeader {
                index,
                name,
                value: spaced(value),
            })
        }
        HeaderEdit::Delete { index, name } if actions & action::CHGHDRS != 0 => {
            Some(Reply::ChgHeader {
                index,
                name,
                value: String::new(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn negotiated(protocol: u32) -> Session {
        let mut s = Session::new(64);
        s.handle(Command::OptNeg {
            version: 6,
            actions: 0x1FF,
            protocol,
        })
        .unwrap();
        s
    }

    fn header(name: &str, value: &str) -> Command {
        Command::Header {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn folded_headers_become_crlf_and_one_space_is_restored_without_leadspc() {
        // An MTA that offers no HDR_LEADSPC strips one space after the colon.
        let mut s = negotiated(0x7F);
        s.handle(Command::Mail(vec!["<a@b.example>".into()]))
            .unwrap();
        s.handle(header("Subject", "part1\n\tpart2")).unwrap();
        s.handle(header("X-Empty", "")).unwrap();
        s.handle(Command::Body(Bytes::from_static(b"hi\r\n")))
            .unwrap();
        assert_eq!(
            s.handle(Command::BodyEob(Bytes::new())).unwrap(),
            Step::AskEom
        );
        let (_, m) = s.take_message();
        assert_eq!(
            &m.raw[..],
            b"Subject: part1\r\n\tpart2\r\nX-Empty: \r\n\r\nhi\r\n"
        );
    }

    /// A header flood is counted (so the size limit refuses the message)
    /// but not kept past the limit; a macro flood is dropped past its
    /// budget. Neither grows memory.
    #[test]
    fn header_and_macro_floods_are_bounded() {
        let mut s = negotiated(0x1F_FFFF);
        let big = "x".repeat(MACRO_BUDGET);
        s.handle(Command::Macro {
            for_command: cmd::CONNECT,
            pairs: vec![
                ("j".into(), "relay".into()),
                ("{flood}".into(), big.clone()),
            ],
        })
        .unwrap();
        // Postfix sends a step's macros just before the step.
        s.handle(Command::Macro {
            for_command: cmd::MAIL,
            pairs: vec![
                ("{auth_authen}".into(), "a@b.example".into()),
                ("{flood}".into(), big),
            ],
        })
        .unwrap();
        s.handle(Command::Mail(vec!["<a@b.example>".into()]))
            .unwrap();
        for _ in 0..100 {
            s.handle(header("X-Flood", &"y".repeat(40))).unwrap();
        }
        s.handle(Command::BodyEob(Bytes::new())).unwrap();
        let (env, m) = s.take_message();
        assert!(m.truncated);
        assert!(
            m.size >= 100 * 47,
            "every header byte is counted: {}",
            m.size
        );
        assert!(m.raw.len() <= 64 + 2, "{}", m.raw.len());
        assert_eq!(env.auth_login.as_deref(), Some("a@b.example"));
        assert!(!env.macros.contains_key("{flood}"));
        let kept: usize = env.macros.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(kept <= MACRO_BUDGET, "{kept}");
    }

    #[test]
    fn bodies_past_the_limit_are_counted_not_kept() {
        let mut s = negotiated(0x1F_FFFF);
        s.handle(Command::Mail(vec!["<a@b.example>".into()]))
            .unwrap();
        assert_eq!(
            s.handle(Command::Body(Bytes::from(vec![b'x'; 100])))
                .unwrap(),
            Step::Nothing
        );
        s.handle(Command::BodyEob(Bytes::new())).unwrap();
        let (_, m) = s.take_message();
        assert!(m.truncated);
        assert_eq!(m.size, 100);
        assert_eq!(m.raw.len(), 2 + 64);
    }

    #[test]
    fn skip_is_sent_past_the_limit_when_body_steps_are_answered() {
        let mut s = negotiated(step::SKIP);
        s.handle(Command::Mail(vec!["<a@b.example>".into()]))
            .unwrap();
        assert_eq!(
            s.handle(Command::Body(Bytes::from(vec![b'x'; 10])))
                .unwrap(),
            Step::Reply(Reply::Continue)
        );
        assert_eq!(
            s.handle(Command::Body(Bytes::from(vec![b'x'; 100])))
                .unwrap(),
            Step::Reply(Reply::Skip)
        );
    }

    #[test]
    fn mail_macros_before_mail_belong_to_the_new_message() {
        let mut s = negotiated(0x1F_FFFF);
        s.handle(Command::Macro {
            for_command: b'C',
            pairs: vec![("j".into(), "relay.test".into())],
        })
        .unwrap();
        s.handle(Command::Mail(vec!["<old@b.example>".into()]))
            .unwrap();
        s.handle(Command::Abort).unwrap();
        s.handle(Command::Macro {
            for_command: b'M',
            pairs: vec![("{auth_authen}".into(), "bob".into())],
        })
        .unwrap();
        s.handle(Command::Mail(vec![
            "<new@b.example>".into(),
            "SIZE=10".into(),
        ]))
        .unwrap();
        let env = s.envelope().unwrap();
        assert_eq!(env.auth_login.as_deref(), Some("bob"));
        assert_eq!(env.mail_from, "new@b.example");
        assert_eq!(env.declared_size(), Some(10));
        assert_eq!(env.mta_host.as_deref(), Some("relay.test"));
        // A second MAIL without ABORT starts over without the old login.
        s.handle(Command::Mail(vec!["<third@b.example>".into()]))
            .unwrap();
        assert_eq!(s.envelope().unwrap().auth_login, None);
    }

    #[test]
    fn commands_before_negotiation_are_refused() {
        let mut s = Session::new(64);
        assert_eq!(
            s.handle(Command::Helo("x".into())),
            Err(SessionError::NotNegotiated("HELO"))
        );
        assert_eq!(
            s.handle(Command::OptNeg {
                version: 1,
                actions: 0,
                protocol: 0
            }),
            Err(SessionError::Version(1))
        );
    }

    fn macros(for_command: u8, pairs: &[(&str, &str)]) -> Command {
        Command::Macro {
            for_command,
            pairs: pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Every command that belongs to a transaction, with the macro stage
    /// Postfix announces before it.
    fn message_commands() -> Vec<(u8, Command)> {
        vec![
            (
                cmd::RCPT,
                Command::Rcpt(vec!["<bob@remote.example>".into()]),
            ),
            (cmd::DATA, Command::Data),
            (cmd::HEADER, header("Subject", "hi")),
            (cmd::EOH, Command::Eoh),
            (cmd::BODY, Command::Body(Bytes::from_static(b"spam\r\n"))),
            (cmd::BODYEOB, Command::BodyEob(Bytes::new())),
        ]
    }

    /// Regression: BODY or end-of-message with no MAIL FROM was
    /// scored and recorded with an empty envelope.
    #[test]
    fn message_commands_without_mail_are_a_protocol_error() {
        for (stage, command) in message_commands() {
            let name = command.name();
            let mut s = negotiated(0x1F_FFFF);
            s.handle(Command::Connect {
                hostname: "client.example".into(),
                family: ConnFamily::Inet,
                port: 40000,
                address: "192.0.2.10".into(),
            })
            .unwrap();
            // The stage's macros come first and are no error by themselves.
            assert_eq!(s.handle(macros(stage, &[("i", "4ABC")])), Ok(Step::Nothing));
            assert_eq!(
                s.handle(command),
                Err(SessionError::OutOfOrder(name)),
                "{name} with no MAIL"
            );
            assert_eq!(s.messages_seen(), 0);
        }
    }

    #[test]
    fn a_finished_or_aborted_transaction_takes_no_more_content() {
        for end in ["eom", "abort"] {
            let mut s = negotiated(0x1F_FFFF);
            s.handle(Command::Mail(vec!["<a@b.example>".into()]))
                .unwrap();
            s.handle(Command::Rcpt(vec!["<c@d.example>".into()]))
                .unwrap();
            if end == "eom" {
                assert_eq!(s.handle(Command::BodyEob(Bytes::new())), Ok(Step::AskEom));
                s.take_message();
                s.end_of_message(EomVerdict::accept());
            } else {
                s.handle(Command::Abort).unwrap();
            }
            for (_, command) in message_commands() {
                let name = command.name();
                assert_eq!(
                    s.handle(command),
                    Err(SessionError::OutOfOrder(name)),
                    "{name} after {end}"
                );
            }
        }
        let e = SessionError::OutOfOrder("BODY").to_string();
        assert!(e.contains("BODY") && e.contains("MAIL FROM"), "{e}");
    }

    /// What Postfix really sends stays valid: a macro packet before every
    /// command (empty ones too, and one for an UNKNOWN step negotiated
    /// away, with no transaction open), ABORT after every message, two
    /// ABORTs in a row, and several messages on one connection.
    #[test]
    fn postfix_order_with_macros_aborts_and_two_messages_is_accepted() {
        let mut s = negotiated(0x1F_FFFF);
        s.handle(macros(cmd::CONNECT, &[("j", "relay.test")]))
            .unwrap();
        s.handle(Command::Connect {
            hostname: "[192.0.2.10]".into(),
            family: ConnFamily::Inet,
            port: 40000,
            address: "192.0.2.10".into(),
        })
        .unwrap();
        s.handle(macros(cmd::HELO, &[])).unwrap();
        s.handle(Command::Helo("client.example".into())).unwrap();
        s.handle(macros(cmd::UNKNOWN, &[])).unwrap();
        s.handle(Command::Abort).unwrap();
        assert!(s.envelope().is_none(), "stray macros open no message");
        for (n, login) in ["ann", "bob"].into_iter().enumerate() {
            s.handle(macros(cmd::MAIL, &[("{auth_authen}", login)]))
                .unwrap();
            let from = format!("<{login}@customer.example>");
            assert_eq!(s.handle(Command::Mail(vec![from])), Ok(Step::AskMail));
            s.answer(Decision::Continue);
            for (stage, command) in message_commands() {
                s.handle(macros(stage, &[("i", "4ABC")])).unwrap();
                if let Ok(Step::AskRcpt(_)) = s.handle(command) {
                    s.answer(Decision::Continue);
                }
            }
            let (env, m) = s.take_message();
            assert_eq!(env.auth_login.as_deref(), Some(login));
            assert_eq!(env.mail_from, format!("{login}@customer.example"));
            assert_eq!(env.rcpts, vec!["bob@remote.example".to_string()]);
            assert_eq!(env.queue_id.as_deref(), Some("4ABC"));
            assert!(m.raw.ends_with(b"\r\nspam\r\n"), "{:?}", m.raw);
            s.end_of_message(EomVerdict::accept());
            assert_eq!(s.messages_seen(), n as u64 + 1);
            s.handle(Command::Abort).unwrap();
            s.handle(Command::Abort).unwrap();
        }
        assert_eq!(s.handle(Command::Quit), Ok(Step::Close));
    }

    #[test]
    fn refusals_carry_no_header_edits() {
        let mut s = negotiated(0x1F_FFFF);
        s.handle(Command::Mail(vec!["<a@b.example>".into()]))
            .unwrap();
        s.handle(Command::BodyEob(Bytes::new())).unwrap();
        let verdict = EomVerdict {
            decision: Decision::Reject,
            quarantine: Some("x".into()),
            headers: vec![HeaderEdit::Add {
                name: "X-A".into(),
                value: "1".into(),
            }],
        };
        assert_eq!(s.end_of_message(verdict), vec![Reply::Reject]);
    }
}
