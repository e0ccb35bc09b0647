//! Message analysis: raw RFC 5322 bytes → [`ParsedMessage`], the facts the
//! rules read. Never fails: a broken message is parsed as well as possible
//! and the problem is recorded in [`ParsedMessage::malformed`]. Limits on
//! MIME depth, part count and decoded size defend against bombs. No I/O, no
//! knowledge of rules or weights.

pub mod archive;
pub mod html;
pub mod normalize;
pub mod sniff;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};

pub use html::Link;
pub use normalize::Normalized;

/// Bounds on the work one message may cause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Raw bytes handed to the MIME parser; the rest is ignored.
    pub max_raw_bytes: usize,
    /// Nested `message/rfc822` depth followed.
    pub max_depth: usize,
    /// MIME parts examined.
    pub max_parts: usize,
    /// Decoded text (all text parts together) kept for matching.
    pub max_text_bytes: usize,
    /// URLs kept.
    pub max_urls: usize,
    /// Members listed per archive (zip, RAR).
    pub max_archive_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_raw_bytes: 32 * 1024 * 1024,
            max_depth: 4,
            max_parts: 256,
            max_text_bytes: 512 * 1024,
            max_urls: 500,
            max_archive_members: 1000,
        }
    }
}

/// A mailbox from a header: display name and address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Address as written, `None` when the header held no address.
    pub address: Option<String>,
}

impl Mailbox {
    /// The lower-cased domain of the address.
    pub fn domain(&self) -> Option<String> {
        crate::envelope::domain_of(self.address.as_deref()?)
    }
}

/// A URL found in the text or HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub url: String,
    /// Lower-cased host without port or user info; empty if none.
    pub host: String,
}

/// An attachment, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// File name after RFC 2047/2231 decoding.
    pub name: Option<String>,
    /// `type/subtype` from Content-Type.
    pub declared_type: Option<String>,
    pub size: u64,
    /// Type from magic bytes (see [`sniff::sniff`]).
    pub sniffed_type: Option<&'static str>,
    /// Member names when the attachment is a zip or RAR archive.
    pub archive_members: Vec<String>,
    /// The archive has encrypted members.
    pub encrypted: bool,
}

/// Everything the rules know about the message content.
#[derive(Debug, Clone, Default)]
pub struct ParsedMessage {
    pub size: usize,
    /// The MIME parser found no message at all (no header, no body);
    /// `text` then holds the raw bytes.
    pub unparsed: bool,
    /// Why the message is not well-formed (empty when it is).
    pub malformed: Vec<String>,
    /// Which limit cut the analysis short (empty when none did).
    pub limits_hit: Vec<String>,
    pub subject: Option<String>,
    pub from: Option<Mailbox>,
    /// Number of addresses in From.
    pub from_count: usize,
    pub reply_to: Option<Mailbox>,
    pub return_path: Option<String>,
    pub to: Vec<String>,
    /// Parsed Message-ID; `message_id_raw` is the header as written.
    pub message_id: Option<String>,
    pub message_id_raw: Option<String>,
    /// Date as RFC 3339 when it parsed; `date_raw` is the header as written.
    pub date: Option<String>,
    pub date_raw: Option<String>,
    pub x_mailer: Option<String>,
    pub user_agent: Option<String>,
    pub list_unsubscribe: Option<String>,
    /// Visible body text: text/plain parts, and HTML rendered to text when a
    /// part has no plain alternative.
    pub text: String,
    /// Some body came as text/plain.
    pub has_text_part: bool,
    /// Some body came as text/html.
    pub has_html_part: bool,
    pub html_hidden_chars: usize,
    pub html_hidden_sample: String,
    pub links: Vec<Link>,
    pub urls: Vec<Url>,
    pub attachments: Vec<Attachment>,
    pub parts: u32,
    /// Declared charsets of the text parts, lower-cased, deduplicated.
    pub charsets: Vec<String>,
}

/// Parse a raw message with the default [`Limits`].
pub fn parse(raw: &[u8]) -> ParsedMessage {
    parse_with(raw, &Limits::default())
}

/// Parse a raw message. Never fails and never panics on bad input.
pub fn parse_with(raw: &[u8], limits: &Limits) -> ParsedMessage {
    let mut out = ParsedMessage {
        size: raw.len(),
        ..ParsedMessage::default()
    };
    let raw = strip_mbox_line(raw);
    let raw = if raw.len() > limits.max_raw_bytes {
        out.limits_hit.push(format!(
            "message larger than {} bytes",
            limits.max_raw_bytes
        ));
        &raw[..limits.max_raw_bytes]
    } else {
        raw
    };
    if !has_header_block(raw) {
        out.malformed.push("no header block".into());
    }
    let parser = MessageParser::default();
    let Some(message) = parser.parse(raw) else {
        out.unparsed = true;
        out.malformed.push("MIME parser found no message".into());
        let text = String::from_utf8_lossy(&raw[..raw.len().min(limits.max_text_bytes)]);
        out.text = text.into_owned();
        return out;
    };
    headers(&message, &mut out);
    let mut state = Walk {
        limits,
        urls_seen: Default::default(),
    };
    walk(&message, 0, &mut out, &mut state);
    // URLs in plain text (HTML links were collected while walking).
    let text_urls = find_urls(&out.text, limits.max_urls);
    for u in text_urls {
        state.add_url(&mut out, u);
    }
    out.limits_hit.dedup();
    out
}

struct Walk<'a> {
    limits: &'a Limits,
    urls_seen: std::collections::HashSet<String>,
}

impl Walk<'_> {
    fn add_url(&mut self, out: &mut ParsedMessage, url: String) {
        if out.urls.len() >= self.limits.max_urls {
            if !out.limits_hit.iter().any(|l| l.starts_with("more than")) {
                out.limits_hit
                    .push(format!("more than {} URLs", self.limits.max_urls));
            }
            return;
        }
        if self.urls_seen.insert(url.clone()) {
            let host = host_of(&url);
            out.urls.push(Url { url, host });
        }
    }
}

fn strip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(p) => &raw[p + 1..],
            None => raw,
        }
    } else {
        raw
    }
}

/// A header block: the first line looks like `Name: value`.
fn has_header_block(raw: &[u8]) -> bool {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(b"");
    match line.iter().position(|&b| b == b':') {
        Some(p) if p > 0 => line[..p].iter().all(|b| b.is_ascii_graphic()),
        _ => false,
    }
}

fn first_mailbox(addr: Option<&Address<'_>>) -> (Option<Mailbox>, usize) {
    let Some(addr) = addr else { return (None, 0) };
    let count = addr.iter().count();
    let first = addr.first().map(|a| Mailbox {
        name: a.name.as_ref().map(|n| n.to_string()),
        address: a.address.as_ref().map(|a| a.to_string()),
    });
    (first, count)
}

fn headers(message: &mail_parser::Message<'_>, out: &mut ParsedMessage) {
    out.subject = message.subject().map(str::to_string);
    let (from, from_count) = first_mailbox(message.from());
    out.from = from;
    out.from_count = from_count;
    out.reply_to = first_mailbox(message.reply_to()).0;
    out.return_path = message.return_address().map(str::to_string);
    if let Some(to) = message.to() {
        out.to = to
            .iter()
            .filter_map(|a| a.address.as_ref().map(|a| a.to_string()))
            .take(1000)
            .collect();
    }
    out.message_id = message.message_id().map(str::to_string);
    out.message_id_raw = message
        .header_raw("Message-ID")
        .map(|v| v.trim().to_string());
    out.date = message.date().map(|d| d.to_rfc3339());
    out.date_raw = message.header_raw("Date").map(|v| v.trim().to_string());
    out.x_mailer = message.header_raw("X-Mailer").map(|v| v.trim().to_string());
    out.user_agent = message
        .header_raw("User-Agent")
        .map(|v| v.trim().to_string());
    out.list_unsubscribe = message
        .header_raw("List-Unsubscribe")
        .map(|v| v.trim().to_string());
}

fn walk(
    message: &mail_parser::Message<'_>,
    depth: usize,
    out: &mut ParsedMessage,
    state: &mut Walk<'_>,
) {
    let limits = state.limits;
    // Which parts are bodies (and which body is the HTML alternative of a
    // text part) is decided by mail-parser: text_body lists what a reader
    // sees as text, html_body what it sees as HTML.
    for (index, part) in message.parts.iter().enumerate() {
        if out.parts as usize >= limits.max_parts {
            out.limits_hit
                .push(format!("more than {} MIME parts", limits.max_parts));
            return;
        }
        out.parts += 1;
        if part.is_encoding_problem {
            out.malformed
                .push(format!("part {index}: bad transfer encoding"));
        }
        let index = index as u32;
        let is_text_body = message.text_body.contains(&index);
        let is_html_body = message.html_body.contains(&index);
        let is_attachment = message.attachments.contains(&index);
        if let Some(cs) = part.content_type().and_then(|ct| ct.attribute("charset")) {
            let cs = cs.to_ascii_lowercase();
            if !out.charsets.contains(&cs) && out.charsets.len() < 16 {
                out.charsets.push(cs);
            }
        }
        match &part.body {
            PartType::Text(text) if is_text_body || !is_attachment => {
                out.has_text_part = true;
                push_text(out, text, limits);
            }
            PartType::Html(html) if is_text_body || is_html_body || !is_attachment => {
                out.has_html_part = true;
                let rendered = html::to_text(html);
                out.html_hidden_chars += rendered.hidden_chars;
                if out.html_hidden_sample.is_empty() {
                    out.html_hidden_sample = rendered.hidden_sample;
                }
                // Render to text only when no plain alternative exists.
                if is_text_body {
                    push_text(out, &rendered.text, limits);
                }
                for link in rendered.links {
                    if link.href.starts_with("http") || link.href.starts_with("www.") {
                        state.add_url(out, link.href.clone());
                    }
                    if out.links.len() < limits.max_urls {
                        out.links.push(link);
                    }
                }
                for src in rendered.images {
                    if src.starts_with("http") {
                        state.add_url(out, src);
                    }
                }
            }
            PartType::Message(nested) => {
                if depth + 1 > limits.max_depth {
                    out.limits_hit.push(format!(
                        "message/rfc822 nested deeper than {}",
                        limits.max_depth
                    ));
                } else {
                    walk(nested, depth + 1, out, state);
                }
            }
            PartType::Multipart(_) => {}
            PartType::Text(_)
            | PartType::Html(_)
            | PartType::Binary(_)
            | PartType::InlineBinary(_) => {
                if is_attachment || part.attachment_name().is_some() {
                    out.attachments.push(attachment(part, limits));
                }
            }
        }
    }
}

fn push_text(out: &mut ParsedMessage, text: &str, limits: &Limits) {
    let room = limits.max_text_bytes.saturating_sub(out.text.len());
    if room == 0 {
        return;
    }
    if !out.text.is_empty() {
        out.text.push('\n');
    }
    if text.len() > room {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.text.push_str(&text[..cut]);
        out.limits_hit.push(format!(
            "decoded text larger than {} bytes",
            limits.max_text_bytes
        ));
    } else {
        out.text.push_str(text);
    }
}

fn attachment(part: &mail_parser::MessagePart<'_>, limits: &Limits) -> Attachment {
    let data: &[u8] = part.contents();
    let declared_type = part.content_type().map(|ct| match ct.subtype() {
        Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
        None => ct.ctype().to_ascii_lowercase(),
    });
    let sniffed_type = sniff::sniff(data);
    let mut att = Attachment {
        name: part.attachment_name().map(str::to_string),
        declared_type,
        size: data.len() as u64,
        sniffed_type,
        ..Attachment::default()
    };
    // An archive is listed by its content type, or by its name when the
    // content is not recognised (a zip without a readable start, say).
    let named = att.name.as_deref().and_then(|n| {
        let lower = n.to_ascii_lowercase();
        ["zip", "rar", "7z"]
            .into_iter()
            .find(|ext| lower.ends_with(&format!(".{ext}")))
    });
    if let Some(listing) = sniffed_type
        .filter(|t| archive::is_listable(t))
        .or(named)
        .and_then(|kind| archive::listing(kind, data, limits.max_archive_members))
    {
        att.archive_members = listing.names;
        att.encrypted = listing.encrypted;
    }
    att
}

/// `http(s)://` and `www.` URLs in plain text.
pub fn find_urls(text: &str, max: usize) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && found.len() < max {
        let rest = &text[i..];
        let Some(p) = rest.find(['h', 'H', 'w', 'W']) else {
            break;
        };
        let at = i + p;
        let tail = &bytes[at..];
        let is_url =
            starts_ci(tail, b"http://") || starts_ci(tail, b"https://") || starts_ci(tail, b"www.");
        let boundary = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        if is_url && boundary {
            let end = tail
                .iter()
                .position(|&b| {
                    b.is_ascii_whitespace()
                        || matches!(b, b'<' | b'>' | b'"' | b'\'' | b')' | b']' | b'}' | b'|')
                })
                .map_or(bytes.len(), |e| at + e);
            let url = text[at..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
            if url.len() > 8 {
                found.push(url.to_string());
            }
            i = end.max(at + 1);
        } else {
            i = at + 1;
        }
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
    }
    found
}

fn starts_ci(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Lower-cased host of a URL (`https://user@Host:8080/x` → `host`).
pub fn host_of(url: &str) -> String {
    let rest = match url.find("://") {
        Some(p) => &url[p + 3..],
        None => url,
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_lowercase()
}

/// Text of a header value, for headers mail-parser keeps structured.
pub fn header_text(value: &HeaderValue<'_>) -> Option<String> {
    match value {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => Some(l.join(", ")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_headers_parts_and_attachments() {
        let raw = b"From: =?UTF-8?B?w4lyaWM=?= <eric@example.org>\r\n\
Reply-To: eric@gmail.com\r\n\
Subject: =?ISO-8859-7?Q?=C4=F9=F1=E5=DC=ED?=\r\n\
Message-ID: <a@b>\r\n\
Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/html; charset=windows-1252\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>Caf=E9 <a href=3D\"http://x.example/a\">here</a></p>\r\n\
--b\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=UTF-8''facture%20n%C2%B01.pdf.exe\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
TVqQAAMAAAAEAAAA\r\n\
--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.subject.as_deref(), Some("Δωρεάν"));
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Éric"));
        assert_eq!(
            m.reply_to.as_ref().unwrap().domain().as_deref(),
            Some("gmail.com")
        );
        assert!(m.text.contains("Café here"), "{:?}", m.text);
        assert_eq!(m.urls[0].host, "x.example");
        assert_eq!(m.links[0].text, "here");
        assert!(m.has_html_part && !m.has_text_part);
        let a = &m.attachments[0];
        assert_eq!(a.name.as_deref(), Some("facture n°1.pdf.exe"));
        assert_eq!(a.sniffed_type, Some("pe"));
        assert_eq!(a.declared_type.as_deref(), Some("application/pdf"));
        assert!(m.charsets.contains(&"windows-1252".to_string()));
        assert!(m.malformed.is_empty());
    }

    #[test]
    fn decodes_the_charsets_mail_uses() {
        let raw = b"Subject: =?GB2312?B?tPq/qreixrE=?= =?ISO-8859-7?Q?=CA=E1=EB=E7=EC=DD=F1=E1?=\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=big5\r\nContent-Transfer-Encoding: base64\r\n\r\nt3zEs7Nxqr4=\r\n\
--b\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=F0=D2=C9=D7=C5=D4 =CD=C9=D2\r\n\
--b\r\nContent-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: base64\r\n\r\ngrGC8YLJgr+CzQ==\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.subject.as_deref(), Some("代开发票Καλημέρα"));
        for word in ["會議通知", "Привет мир", "こんにちは"] {
            assert!(m.text.contains(word), "{word} missing from {:?}", m.text);
        }
        assert_eq!(m.charsets, vec!["big5", "koi8-r", "shift_jis"]);
    }

    #[test]
    fn never_fails_on_garbage() {
        for raw in [
            &b""[..],
            b"\x00\xff\xfe",
            b"no header here",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x",
        ] {
            let m = parse(raw);
            assert_eq!(m.size, raw.len());
        }
        assert!(!parse(b"no header here").malformed.is_empty());
    }

    #[test]
    fn bombs_are_cut_short() {
        // 3,000 nested multiparts and a message with 2,000 parts.
        let mut deep = String::from("Subject: deep\r\n");
        for i in 0..3000 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        deep.push_str("Content-Type: text/plain\r\n\r\nhello\r\n");
        let m = parse(deep.as_bytes());
        assert!(m.parts as usize <= Limits::default().max_parts);
        let mut wide =
            String::from("Subject: wide\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n");
        for i in 0..2000 {
            wide.push_str(&format!(
                "--x\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\n\r\ndata\r\n"
            ));
        }
        wide.push_str("--x--\r\n");
        let m = parse(wide.as_bytes());
        assert_eq!(m.parts as usize, Limits::default().max_parts);
        assert!(
            m.limits_hit.iter().any(|l| l.contains("MIME parts")),
            "{:?}",
            m.limits_hit
        );
        // Nested message/rfc822 beyond the depth limit.
        let mut nested = String::from("hello\r\n");
        for _ in 0..8 {
            nested = format!("Subject: n\r\nContent-Type: message/rfc822\r\n\r\n{nested}");
        }
        let m = parse(nested.as_bytes());
        assert!(
            m.limits_hit.iter().any(|l| l.contains("nested")),
            "{:?}",
            m.limits_hit
        );
    }

    #[test]
    fn hosts_and_urls() {
        assert_eq!(
            host_of("https://user@Bank.Example.:443/x?y"),
            "bank.example"
        );
        assert_eq!(host_of("http://[::1]:80/"), "::1");
        let urls = find_urls("see http://a.example/x. and www.b.example, ok", 10);
        assert_eq!(urls, vec!["http://a.example/x", "www.b.example"]);
    }
}
