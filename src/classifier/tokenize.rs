//! Text and message → hashed features for the classifier: words for
//! space-separated scripts, character bigrams for Chinese, Japanese and Korean
//! runs, word bigrams, and header/structure tokens. Knows nothing of the model.

use mail_parser::{Message, MessageParser, MimeHeaders};
use unicode_normalization::UnicodeNormalization;

/// Longest word (in bytes, after normalisation) kept as a token; longer runs
/// (base64 residue, hashes) become one `long word` token.
const MAX_WORD_BYTES: usize = 40;
/// At most this many body characters are tokenized per message: the start of
/// a message carries the signal, and it bounds the work for huge bodies.
pub const MAX_BODY_CHARS: usize = 20_000;

/// Feature kinds; the kind is mixed into the hash so `s:free` (subject) and
/// `free` (body) are different features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Word = 1,
    Bigram = 2,
    Cjk = 3,
    Subject = 4,
    FromDomain = 5,
    Mailer = 6,
    UrlHost = 7,
    AttachExt = 8,
    AttachType = 9,
    LongWord = 10,
    BodyType = 11,
}

impl Kind {
    /// Prefix used when a token is shown as evidence.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Word | Kind::Bigram | Kind::Cjk => "",
            Kind::Subject => "subject:",
            Kind::FromDomain => "from:",
            Kind::Mailer => "mailer:",
            Kind::UrlHost => "url:",
            Kind::AttachExt => "attach-ext:",
            Kind::AttachType => "attach-type:",
            Kind::LongWord => "long-word:",
            Kind::BodyType => "body:",
        }
    }
}

/// FNV-1a 64 over the kind byte and the token's bytes.
#[inline]
pub fn hash(kind: Kind, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ kind as u64;
    h = h.wrapping_mul(0x100_0000_01b3);
    for &b in text.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Combines two word hashes into the hash of the pair (order matters).
#[inline]
pub fn pair(a: u64, b: u64) -> u64 {
    let x = a.rotate_left(17) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ Kind::Bigram as u64;
    x.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (x >> 29)
}

/// Receives features. `text` is only needed for evidence; implementations
/// that only count may ignore it.
pub trait Sink {
    fn feature(&mut self, hash: u64, kind: Kind, text: &dyn Fn() -> String);
}

impl<F: FnMut(u64, Kind, &dyn Fn() -> String)> Sink for F {
    #[inline]
    fn feature(&mut self, hash: u64, kind: Kind, text: &dyn Fn() -> String) {
        self(hash, kind, text)
    }
}

/// True for characters that form CJK runs tokenized as character bigrams.
#[inline]
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana extensions
        | 0x3400..=0x4DBF    // Han extension A
        | 0x4E00..=0x9FFF    // Han
        | 0xF900..=0xFAFF    // Han compatibility
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0x1100..=0x11FF    // Hangul jamo
        | 0x3130..=0x318F    // Hangul compatibility jamo
        | 0xFF66..=0xFF9F    // half-width Katakana
        | 0x20000..=0x2FA1F) // Han supplementary planes
}

/// Invisible characters removed before tokenizing: zero-width space/joiners,
/// word joiner, BOM, soft hyphen. They never split a word.
#[inline]
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Splits text into features. Reusable buffers, no allocation per word for
/// ASCII text.
#[derive(Default)]
pub struct TextTokenizer {
    word: String,
    norm: String,
    bigrams: bool,
}

impl TextTokenizer {
    pub fn new(bigrams: bool) -> Self {
        TextTokenizer {
            word: String::with_capacity(64),
            norm: String::with_capacity(64),
            bigrams,
        }
    }

    /// Tokenizes `text`; words get `kind` (Word or Subject). At most
    /// `max_chars` characters are read.
    pub fn run(&mut self, text: &str, kind: Kind, max_chars: usize, sink: &mut dyn Sink) {
        let mut prev: Option<u64> = None;
        let mut prev_text = String::new();
        let mut word_ascii = true;
        let mut cjk_prev: Option<char> = None;
        let mut cjk_len = 0usize;
        self.word.clear();
        for (n, c) in text.chars().enumerate() {
            if n >= max_chars {
                break;
            }
            if is_invisible(c) {
                continue;
            }
            if is_cjk(c) {
                if !self.word.is_empty() {
                    self.flush_word(word_ascii, kind, &mut prev, &mut prev_text, sink);
                    word_ascii = true;
                }
                if let Some(p) = cjk_prev {
                    let mut buf = [0u8; 8];
                    let s = {
                        let a = p.encode_utf8(&mut buf[..4]).len();
                        let b = c.encode_utf8(&mut buf[a..]).len();
                        std::str::from_utf8(&buf[..a + b]).unwrap_or("")
                    };
                    sink.feature(hash(Kind::Cjk, s), Kind::Cjk, &|| s.to_owned());
                }
                cjk_prev = Some(c);
                cjk_len += 1;
                prev = None;
                continue;
            }
            if cjk_len == 1 {
                if let Some(p) = cjk_prev {
                    let mut buf = [0u8; 4];
                    let s = p.encode_utf8(&mut buf);
                    sink.feature(hash(Kind::Cjk, s), Kind::Cjk, &|| s.to_owned());
                }
            }
            cjk_prev = None;
            cjk_len = 0;
            if c.is_alphanumeric() {
                if c.is_ascii() {
                    self.word.push(c.to_ascii_lowercase());
                } else {
                    word_ascii = false;
                    self.word.push(c);
                }
            } else if !self.word.is_empty() {
                self.flush_word(word_ascii, kind, &mut prev, &mut prev_text, sink);
                word_ascii = true;
                // Sentence punctuation breaks the word pairs.
                if matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '\n') {
                    prev = None;
                }
            }
        }
        if cjk_len == 1 {
            if let Some(p) = cjk_prev {
                let mut buf = [0u8; 4];
                let s = p.encode_utf8(&mut buf);
                sink.feature(hash(Kind::Cjk, s), Kind::Cjk, &|| s.to_owned());
            }
        }
        if !self.word.is_empty() {
            self.flush_word(word_ascii, kind, &mut prev, &mut prev_text, sink);
        }
    }

    fn flush_word(
        &mut self,
        ascii: bool,
        kind: Kind,
        prev: &mut Option<u64>,
        prev_text: &mut String,
        sink: &mut dyn Sink,
    ) {
        let word: &str = if ascii {
            &self.word
        } else {
            self.norm.clear();
            for c in self.word.nfkc() {
                if is_invisible(c) {
                    continue;
                }
                for l in c.to_lowercase() {
                    // One form for the Greek sigma.
                    self.norm.push(if l == 'ς' { 'σ' } else { l });
                }
            }
            &self.norm
        };
        let len = word.len();
        if word.chars().nth(1).is_none() {
            // Single letters carry no signal (but single CJK chars are handled above).
            self.word.clear();
            return;
        }
        if len > MAX_WORD_BYTES {
            let h = hash(Kind::LongWord, "");
            sink.feature(h, Kind::LongWord, &|| String::new());
            *prev = None;
            self.word.clear();
            return;
        }
        let h = hash(kind, word);
        sink.feature(h, kind, &|| word.to_owned());
        if self.bigrams && kind == Kind::Word {
            if let Some(p) = *prev {
                let pt: &str = prev_text;
                sink.feature(pair(p, h), Kind::Bigram, &|| format!("{pt} {word}"));
            }
            prev_text.clear();
            prev_text.push_str(word);
        }
        *prev = Some(h);
        self.word.clear();
    }
}

/// Drops a leading mbox `From ` separator line, which a milter never sees.
pub fn strip_mbox_from(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// Parses raw bytes (never fails: unparsable input yields no features).
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(strip_mbox_from(raw))
}

/// Host part of every `http://` / `https://` URL in `text`.
pub fn url_hosts(text: &str, mut f: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = find_ci(&bytes[from..], b"http") {
        let start = from + i + 4;
        from = start;
        let rest = &bytes[start..];
        let skip = if rest.starts_with(b"://") {
            3
        } else if rest.len() >= 4
            && rest[0].eq_ignore_ascii_case(&b's')
            && rest[1..].starts_with(b"://")
        {
            4
        } else {
            continue;
        };
        let hs = start + skip;
        let mut he = hs;
        while he < bytes.len()
            && (bytes[he].is_ascii_alphanumeric() || bytes[he] == b'.' || bytes[he] == b'-')
            && he - hs < 255
        {
            he += 1;
        }
        if he > hs {
            f(&text[hs..he]);
        }
        from = he;
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Removes HTML tags, comments, `<style>`/`<script>` content and decodes the
/// few entities that matter for words; good enough for token statistics.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let lower_head: String = after
            .chars()
            .take(8)
            .flat_map(|c| c.to_lowercase())
            .collect();
        let end = if after.starts_with("<!--") {
            after.find("-->").map(|e| e + 3)
        } else if lower_head.starts_with("<style") || lower_head.starts_with("<script") {
            let close = if lower_head.starts_with("<style") {
                "</style"
            } else {
                "</script"
            };
            find_ci(after.as_bytes(), close.as_bytes())
                .and_then(|e| after[e..].find('>').map(|g| e + g + 1))
        } else {
            after.find('>').map(|e| e + 1)
        };
        match end {
            Some(e) => {
                out.push(' ');
                rest = &after[e..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Every feature of a parsed message.
pub fn message_features(msg: &Message<'_>, bigrams: bool, sink: &mut dyn Sink) {
    let mut tok = TextTokenizer::new(bigrams);
    if let Some(subject) = msg.subject() {
        tok.run(subject, Kind::Subject, 500, sink);
    }
    if let Some(addr) = msg.from().and_then(|a| a.first()).and_then(|a| a.address()) {
        if let Some((_, domain)) = addr.rsplit_once('@') {
            let d = domain.trim().to_ascii_lowercase();
            sink.feature(hash(Kind::FromDomain, &d), Kind::FromDomain, &|| d.clone());
        }
    }
    let mailer = msg
        .header_raw("X-Mailer")
        .or_else(|| msg.header_raw("User-Agent"));
    if let Some(m) = mailer {
        // Product name without the version: "Microsoft Outlook 16.0" → "microsoft outlook".
        let name: String = m
            .trim()
            .split(|c: char| c.is_ascii_digit() || c == '(' || c == '/' || c == '[')
            .next()
            .unwrap_or("")
            .trim()
            .to_lowercase();
        if !name.is_empty() {
            sink.feature(hash(Kind::Mailer, &name), Kind::Mailer, &|| name.clone());
        }
    }
    let mut budget = MAX_BODY_CHARS;
    let html_only = msg.text_body_count() > 0
        && msg
            .text_part(0)
            .is_some_and(|p| matches!(p.body, mail_parser::PartType::Html(_)));
    let shape = if html_only {
        "html-only"
    } else if msg.html_body_count() > 0 {
        "text+html"
    } else {
        "text"
    };
    sink.feature(hash(Kind::BodyType, shape), Kind::BodyType, &|| {
        shape.into()
    });
    for i in 0..msg.text_body_count() {
        if budget == 0 {
            break;
        }
        let Some(part) = msg.text_part(i as u32) else {
            continue;
        };
        let text = match &part.body {
            mail_parser::PartType::Text(t) => {
                url_hosts(t, |h| host_feature(h, sink));
                std::borrow::Cow::Borrowed(t.as_ref())
            }
            mail_parser::PartType::Html(h) => {
                url_hosts(h, |host| host_feature(host, sink));
                std::borrow::Cow::Owned(strip_tags(h))
            }
            _ => continue,
        };
        let n = text.len().min(budget);
        tok.run(&text, Kind::Word, budget, sink);
        budget = budget.saturating_sub(n);
    }
    for part in msg.attachments() {
        if let Some(name) = part.attachment_name() {
            if let Some((_, ext)) = name.rsplit_once('.') {
                let e = ext.trim().to_ascii_lowercase();
                if !e.is_empty() && e.len() <= 10 {
                    sink.feature(hash(Kind::AttachExt, &e), Kind::AttachExt, &|| e.clone());
                }
            }
        }
        if let Some(ct) = part.content_type() {
            let t = format!(
                "{}/{}",
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase()
            );
            sink.feature(hash(Kind::AttachType, &t), Kind::AttachType, &|| t.clone());
        }
    }
}

fn host_feature(host: &str, sink: &mut dyn Sink) {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    sink.feature(hash(Kind::UrlHost, &h), Kind::UrlHost, &|| h.clone());
}

/// Features of a piece of text as `(kind prefix + token)` strings, for tests
/// and for explaining what the classifier sees.
pub fn text_tokens(text: &str, bigrams: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut tok = TextTokenizer::new(bigrams);
    tok.run(text, Kind::Word, usize::MAX, &mut |_h: u64,
                                                kind: Kind,
                                                t: &dyn Fn()
        -> String| {
        out.push(format!("{}{}", kind.prefix(), t()))
    });
    out
}
