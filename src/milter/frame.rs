//! The milter wire codec: bytes ↔ [`Command`] (MTA → milter) and bytes ↔
//! [`Reply`] (milter → MTA). Every packet is `u32 length (big-endian)`, one
//! command byte, then `length - 1` bytes of payload.
//!
//! Decoding is pure and incremental: [`decode_command`] returns `Ok(None)` until
//! a whole packet is buffered, and refuses a packet longer than the caller's
//! limit from its length prefix alone, before any of it is buffered. Both
//! directions are implemented so that outscore's own client (tests, the load
//! generator) uses the same code.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::consts::{cmd, reply};

/// Why a packet could not be decoded. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("packet with zero length (no command byte)")]
    Empty,
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCommand(u8),
    #[error("malformed {command} packet: {reason}")]
    Malformed {
        command: &'static str,
        reason: &'static str,
    },
}

fn malformed(command: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { command, reason }
}

/// The client's address family in SMFIC_CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnFamily {
    Unknown,
    Unix,
    Inet,
    Inet6,
}

impl ConnFamily {
    fn byte(self) -> u8 {
        match self {
            ConnFamily::Unknown => b'U',
            ConnFamily::Unix => b'L',
            ConnFamily::Inet => b'4',
            ConnFamily::Inet6 => b'6',
        }
    }
}

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command `for_command`; the list may be empty.
    Macro {
        for_command: u8,
        pairs: Vec<(String, String)>,
    },
    Connect {
        hostname: String,
        family: ConnFamily,
        port: u16,
        address: String,
    },
    Helo(String),
    /// MAIL FROM argv: the sender (with brackets from smtpd), then ESMTP args.
    /// May be empty for sendmail(1) mail.
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    /// Header name and value as raw bytes (8-bit headers are not UTF-8).
    Header {
        name: Bytes,
        value: Bytes,
    },
    Eoh,
    Body(Bytes),
    /// End of message; sendmail may attach a last body chunk.
    BodyEob(Bytes),
    Abort,
    Quit,
    QuitNc,
    Unknown(String),
}

impl Command {
    /// The command's protocol name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::OptNeg { .. } => "OPTNEG",
            Command::Macro { .. } => "MACRO",
            Command::Connect { .. } => "CONNECT",
            Command::Helo(_) => "HELO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Header { .. } => "HEADER",
            Command::Eoh => "EOH",
            Command::Body(_) => "BODY",
            Command::BodyEob(_) => "BODYEOB",
            Command::Abort => "ABORT",
            Command::Quit => "QUIT",
            Command::QuitNc => "QUIT_NC",
            Command::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A reply from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to OPTNEG, with optional SETSYMLIST macro lists
    /// `(stage, "space separated names")`.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
        macros: Vec<(u32, String)>,
    },
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    /// `"550 5.7.1 text"`, lines joined by CRLF; already validated and escaped.
    ReplyCode(String),
    Skip,
    Progress,
    Shutdown,
    ConnFail,
    Quarantine(String),
    AddHeader {
        name: String,
        value: String,
    },
    InsHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// Change the `index`-th header of that name (1-based); an empty value
    /// deletes it.
    ChgHeader {
        index: u32,
        name: String,
        value: String,
    },
    ChgFrom {
        sender: String,
        args: Option<String>,
    },
    AddRcpt(String),
    AddRcptPar {
        rcpt: String,
        args: Option<String>,
    },
    DelRcpt(String),
    ReplBody(Bytes),
}

impl Reply {
    /// Whether this reply ends the MTA's wait for the current step.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Reply::Continue
                | Reply::Accept
                | Reply::Reject
                | Reply::Tempfail
                | Reply::Discard
                | Reply::ReplyCode(_)
                | Reply::Skip
                | Reply::Shutdown
                | Reply::ConnFail
                | Reply::OptNeg { .. }
        )
    }
}

/// Split one packet off `buf`: `Ok(None)` while it is incomplete. The length
/// prefix is checked against `max` before waiting for the payload.
fn split_packet(buf: &mut BytesMut, max: usize) -> Result<Option<(u8, Bytes)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut packet = buf.split_to(len).freeze();
    let code = packet.get_u8();
    Ok(Some((code, packet)))
}

/// Decode one command from `buf`, consuming it. `Ok(None)`: not all there yet.
pub fn decode_command(buf: &mut BytesMut, max: usize) -> Result<Option<Command>, FrameError> {
    let Some((code, data)) = split_packet(buf, max)? else {
        return Ok(None);
    };
    parse_command(code, data).map(Some)
}

fn parse_command(code: u8, mut data: Bytes) -> Result<Command, FrameError> {
    let command = match code {
        cmd::OPTNEG => {
            if data.len() < 12 {
                return Err(malformed("OPTNEG", "shorter than 12 bytes"));
            }
            Command::OptNeg {
                version: data.get_u32(),
                actions: data.get_u32(),
                protocol: data.get_u32(),
            }
        }
        cmd::MACRO => {
            if data.is_empty() {
                return Err(malformed("MACRO", "no command byte"));
            }
            let for_command = data.get_u8();
            let strings = split_strings(&data);
            let mut pairs = Vec::with_capacity(strings.len() / 2);
            let mut it = strings.into_iter();
            while let Some(name) = it.next() {
                let value = it.next().unwrap_or_default();
                pairs.push((lossy(&name), lossy(&value)));
            }
            Command::Macro { for_command, pairs }
        }
        cmd::CONNECT => {
            let hostname =
                take_cstr(&mut data).ok_or(malformed("CONNECT", "unterminated hostname"))?;
            if data.is_empty() {
                return Err(malformed("CONNECT", "no address family"));
            }
            let family = match data.get_u8() {
                b'4' => ConnFamily::Inet,
                b'6' => ConnFamily::Inet6,
                b'L' => ConnFamily::Unix,
                b'U' => ConnFamily::Unknown,
                _ => return Err(malformed("CONNECT", "unknown address family")),
            };
            let (port, address) = if family == ConnFamily::Unknown {
                (0, String::new())
            } else {
                if data.len() < 2 {
                    return Err(malformed("CONNECT", "no port"));
                }
                let port = data.get_u16();
                let address =
                    take_cstr(&mut data).ok_or(malformed("CONNECT", "unterminated address"))?;
                (port, lossy(&address))
            };
            Command::Connect {
                hostname: lossy(&hostname),
                family,
                port,
                address,
            }
        }
        cmd::HELO => Command::Helo(lossy(&take_cstr(&mut data).unwrap_or(data))),
        cmd::MAIL => Command::Mail(split_strings(&data).iter().map(|s| lossy(s)).collect()),
        cmd::RCPT => {
            let argv: Vec<String> = split_strings(&data).iter().map(|s| lossy(s)).collect();
            if argv.is_empty() {
                return Err(malformed("RCPT", "no recipient"));
            }
            Command::Rcpt(argv)
        }
        cmd::DATA => Command::Data,
        cmd::HEADER => {
            let name = take_cstr(&mut data).ok_or(malformed("HEADER", "unterminated name"))?;
            let value = take_cstr(&mut data).ok_or(malformed("HEADER", "unterminated value"))?;
            Command::Header { name, value }
        }
        cmd::EOH => Command::Eoh,
        cmd::BODY => Command::Body(data),
        cmd::BODYEOB => Command::BodyEob(data),
        cmd::ABORT => Command::Abort,
        cmd::QUIT => Command::Quit,
        cmd::QUIT_NC => Command::QuitNc,
        cmd::UNKNOWN => Command::Unknown(lossy(&take_cstr(&mut data).unwrap_or(data))),
        other => return Err(FrameError::UnknownCommand(other)),
    };
    Ok(command)
}

/// Decode one reply from `buf` (the MTA side of the codec).
pub fn decode_reply(buf: &mut BytesMut, max: usize) -> Result<Option<Reply>, FrameError> {
    let Some((code, mut data)) = split_packet(buf, max)? else {
        return Ok(None);
    };
    let reply = match code {
        reply::OPTNEG => {
            if data.len() < 12 {
                return Err(malformed("OPTNEG reply", "shorter than 12 bytes"));
            }
            let version = data.get_u32();
            let actions = data.get_u32();
            let protocol = data.get_u32();
            let mut macros = Vec::new();
            while data.len() >= 4 {
                let stage = data.get_u32();
                let list = take_cstr(&mut data)
                    .ok_or(malformed("OPTNEG reply", "unterminated macro list"))?;
                macros.push((stage, lossy(&list)));
            }
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            }
        }
        reply::CONTINUE => Reply::Continue,
        reply::ACCEPT => Reply::Accept,
        reply::REJECT => Reply::Reject,
        reply::TEMPFAIL => Reply::Tempfail,
        reply::DISCARD => Reply::Discard,
        reply::SKIP => Reply::Skip,
        reply::PROGRESS => Reply::Progress,
        reply::SHUTDOWN => Reply::Shutdown,
        reply::CONN_FAIL => Reply::ConnFail,
        reply::REPLYCODE => Reply::ReplyCode(lossy(&take_cstr(&mut data).unwrap_or(data))),
        reply::QUARANTINE => Reply::Quarantine(lossy(&take_cstr(&mut data).unwrap_or(data))),
        reply::ADDHEADER => {
            let name = take_cstr(&mut data).ok_or(malformed("ADDHEADER", "unterminated name"))?;
            let value = take_cstr(&mut data).ok_or(malformed("ADDHEADER", "unterminated value"))?;
            Reply::AddHeader {
                name: lossy(&name),
                value: lossy(&value),
            }
        }
        reply::INSHEADER | reply::CHGHEADER => {
            if data.len() < 4 {
                return Err(malformed("INSHEADER/CHGHEADER", "no index"));
            }
            let index = data.get_u32();
            let name = take_cstr(&mut data)
                .ok_or(malformed("INSHEADER/CHGHEADER", "unterminated name"))?;
            let value = take_cstr(&mut data)
                .ok_or(malformed("INSHEADER/CHGHEADER", "unterminated value"))?;
            let (name, value) = (lossy(&name), lossy(&value));
            if code == reply::INSHEADER {
                Reply::InsHeader { index, name, value }
            } else {
                Reply::ChgHeader { index, name, value }
            }
        }
        reply::CHGFROM | reply::ADDRCPT_PAR => {
            let first = take_cstr(&mut data)
                .ok_or(malformed("CHGFROM/ADDRCPT_PAR", "unterminated address"))?;
            let args = take_cstr(&mut data).map(|a| lossy(&a));
            if code == reply::CHGFROM {
                Reply::ChgFrom {
                    sender: lossy(&first),
                    args,
                }
            } else {
                Reply::AddRcptPar {
                    rcpt: lossy(&first),
                    args,
                }
            }
        }
        reply::ADDRCPT => Reply::AddRcpt(lossy(&take_cstr(&mut data).unwrap_or(data))),
        reply::DELRCPT => Reply::DelRcpt(lossy(&take_cstr(&mut data).unwrap_or(data))),
        reply::REPLBODY => Reply::ReplBody(data),
        other => return Err(FrameError::UnknownCommand(other)),
    };
    Ok(Some(reply))
}

/// Write one packet: length, code, payload written by `body`.
fn packet(out: &mut BytesMut, code: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(code);
    body(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// Append the wire form of `reply` to `out`.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    match reply {
        Reply::OptNeg {
            version,
            actions,
            protocol,
            macros,
        } => packet(out, reply::OPTNEG, |o| {
            o.put_u32(*version);
            o.put_u32(*actions);
            o.put_u32(*protocol);
            for (stage, list) in macros {
                o.put_u32(*stage);
                put_cstr(o, list.as_bytes());
            }
        }),
        Reply::Continue => packet(out, reply::CONTINUE, |_| {}),
        Reply::Accept => packet(out, reply::ACCEPT, |_| {}),
        Reply::Reject => packet(out, reply::REJECT, |_| {}),
        Reply::Tempfail => packet(out, reply::TEMPFAIL, |_| {}),
        Reply::Discard => packet(out, reply::DISCARD, |_| {}),
        Reply::Skip => packet(out, reply::SKIP, |_| {}),
        Reply::Progress => packet(out, reply::PROGRESS, |_| {}),
        Reply::Shutdown => packet(out, reply::SHUTDOWN, |_| {}),
        Reply::ConnFail => packet(out, reply::CONN_FAIL, |_| {}),
        Reply::ReplyCode(text) => packet(out, reply::REPLYCODE, |o| put_cstr(o, text.as_bytes())),
        Reply::Quarantine(reason) => {
            packet(out, reply::QUARANTINE, |o| put_cstr(o, reason.as_bytes()))
        }
        Reply::AddHeader { name, value } => packet(out, reply::ADDHEADER, |o| {
            put_cstr(o, name.as_bytes());
            put_cstr(o, value.as_bytes());
        }),
        Reply::InsHeader { index, name, value } | Reply::ChgHeader { index, name, value } => {
            let code = if matches!(reply, Reply::InsHeader { .. }) {
                reply::INSHEADER
            } else {
                reply::CHGHEADER
            };
            packet(out, code, |o| {
                o.put_u32(*index);
                put_cstr(o, name.as_bytes());
                put_cstr(o, value.as_bytes());
            })
        }
        Reply::ChgFrom { sender, args } => packet(out, reply::CHGFROM, |o| {
            put_cstr(o, sender.as_bytes());
            if let Some(args) = args {
                put_cstr(o, args.as_bytes());
            }
        }),
        Reply::AddRcpt(rcpt) => packet(out, reply::ADDRCPT, |o| put_cstr(o, rcpt.as_bytes())),
        Reply::AddRcptPar { rcpt, args } => packet(out, reply::ADDRCPT_PAR, |o| {
            put_cstr(o, rcpt.as_bytes());
            if let Some(args) = args {
                put_cstr(o, args.as_bytes());
            }
        }),
        Reply::DelRcpt(rcpt) => packet(out, reply::DELRCPT, |o| put_cstr(o, rcpt.as_bytes())),
        Reply::ReplBody(body) => packet(out, reply::REPLBODY, |o| o.put_slice(body)),
    }
}

/// Append the wire form of `command` to `out` (the MTA side of the codec).
pub fn encode_command(command: &Command, out: &mut BytesMut) {
    match command {
        Command::OptNeg {
            version,
            actions,
            protocol,
        } => packet(out, cmd::OPTNEG, |o| {
            o.put_u32(*version);
            o.put_u32(*actions);
            o.put_u32(*protocol);
        }),
        Command::Macro { for_command, pairs } => packet(out, cmd::MACRO, |o| {
            o.put_u8(*for_command);
            for (name, value) in pairs {
                put_cstr(o, name.as_bytes());
                put_cstr(o, value.as_bytes());
            }
        }),
        Command::Connect {
            hostname,
            family,
            port,
            address,
        } => packet(out, cmd::CONNECT, |o| {
            put_cstr(o, hostname.as_bytes());
            o.put_u8(family.byte());
            if *family != ConnFamily::Unknown {
                o.put_u16(*port);
                put_cstr(o, address.as_bytes());
            }
        }),
        Command::Helo(name) => packet(out, cmd::HELO, |o| put_cstr(o, name.as_bytes())),
        Command::Mail(argv) => packet(out, cmd::MAIL, |o| {
            argv.iter().for_each(|a| put_cstr(o, a.as_bytes()))
        }),
        Command::Rcpt(argv) => packet(out, cmd::RCPT, |o| {
            argv.iter().for_each(|a| put_cstr(o, a.as_bytes()))
        }),
        Command::Data => packet(out, cmd::DATA, |_| {}),
        Command::Header { name, value } => packet(out, cmd::HEADER, |o| {
            put_cstr(o, name);
            put_cstr(o, value);
        }),
        Command::Eoh => packet(out, cmd::EOH, |_| {}),
        Command::Body(chunk) => packet(out, cmd::BODY, |o| o.put_slice(chunk)),
        Command::BodyEob(chunk) => packet(out, cmd::BODYEOB, |o| o.put_slice(chunk)),
        Command::Abort => packet(out, cmd::ABORT, |_| {}),
        Command::Quit => packet(out, cmd::QUIT, |_| {}),
        Command::QuitNc => packet(out, cmd::QUIT_NC, |_| {}),
        Command::Unknown(line) => packet(out, cmd::UNKNOWN, |o| put_cstr(o, line.as_bytes())),
    }
}

/// Take a NUL-terminated string off the front of `data`.
fn take_cstr(data: &mut Bytes) -> Option<Bytes> {
    let nul = data.iter().position(|&b| b == 0)?;
    let s = data.split_to(nul);
    data.advance(1);
    Some(s)
}

/// Split a run of NUL-terminated strings; a trailing unterminated piece counts.
fn split_strings(data: &Bytes) -> Vec<Bytes> {
    let mut rest = data.clone();
    let mut out = Vec::new();
    while !rest.is_empty() {
        match take_cstr(&mut rest) {
            Some(s) => out.push(s),
            None => {
                out.push(rest.clone());
                break;
            }
        }
    }
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
