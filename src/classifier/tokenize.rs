//! A parsed message → hashed features for the classifier: words for
//! space-separated scripts, character bigrams for Chinese, Japanese and Korean
//! runs, word bigrams, and header/structure tokens. Reads the
//! [`ParsedMessage`] the rules read, and its subject and body text normalised
//! the way the keyword rules normalise them ([`crate::message::normalize`]:
//! case and width folded, diacritics and invisible characters removed), so a
//! message is parsed and normalised once. Knows nothing of the model.

use crate::message::normalize::normalize;
use crate::message::ParsedMessage;

/// Longest word (in bytes, after normalisation) kept as a token; longer runs
/// (base64 residue, hashes) become one `long word` token.
const MAX_WORD_BYTES: usize = 40;
/// At most this many body bytes are tokenized per message: the start of
/// a message carries the signal, and it bounds the work for huge bodies.
pub const MAX_BODY_BYTES: usize = 20_000;

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

/// 64-bit hash of the kind and the token's bytes, eight bytes at a time
/// (words are short; this is the tokenizer's hot path).
#[inline]
pub fn hash(kind: Kind, text: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = (kind as u64) ^ ((text.len() as u64) << 8);
    let mut chunks = text.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ v).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    // Final avalanche so the top bits (the bucket) depend on every byte.
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 32)
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

/// ASCII byte → its lower-case form if it is part of a word, else 0.
const ASCII_WORD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Splits normalised text (see [`normalize`]) into features. Reusable
/// buffers; ASCII text takes a byte fast path and allocates nothing.
#[derive(Default)]
pub struct TextTokenizer {
    word: String,
    prev_word: String,
    bigrams: bool,
    /// Hash of the previous word of the same sentence.
    prev: Option<u64>,
}

impl TextTokenizer {
    pub fn new(bigrams: bool) -> Self {
        TextTokenizer {
            word: String::with_capacity(64),
            prev_word: String::with_capacity(64),
            bigrams,
            prev: None,
        }
    }

    /// Tokenizes `text`, which must already be normalised (lower case,
    /// folded, without invisible characters); words get `kind` (Word or
    /// Subject). At most `max_bytes` bytes are read.
    pub fn run(&mut self, text: &str, kind: Kind, max_bytes: usize, sink: &mut dyn Sink) {
        self.prev = None;
        self.word.clear();
        let bytes = text.as_bytes();
        let end = bytes.len().min(max_bytes);
        let mut cjk_prev: Option<char> = None;
        let mut cjk_len = 0usize;
        let mut i = 0;
        while i < end {
            let b = bytes[i];
            let c = if b < 0x80 {
                i += 1;
                let l = ASCII_WORD[b as usize];
                if cjk_len > 0 {
                    Self::end_cjk(cjk_prev.take(), cjk_len, sink);
                    cjk_len = 0;
                }
                if l != 0 {
                    self.word.push(l as char);
                } else {
                    if !self.word.is_empty() {
                        self.flush_word(kind, sink);
                    }
                    // Sentence punctuation breaks the word pairs.
                    if matches!(b, b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\n') {
                        self.prev = None;
                    }
                }
                continue;
            } else {
                let Some(c) = text[i..].chars().next() else {
                    break;
                };
                i += c.len_utf8();
                c
            };
            if is_cjk(c) {
                if !self.word.is_empty() {
                    self.flush_word(kind, sink);
                }
                if let Some(p) = cjk_prev {
                    let mut buf = [0u8; 8];
                    let a = p.encode_utf8(&mut buf[..4]).len();
                    let n = c.encode_utf8(&mut buf[a..]).len();
                    let s = std::str::from_utf8(&buf[..a + n]).unwrap_or("");
                    sink.feature(hash(Kind::Cjk, s), Kind::Cjk, &|| s.to_owned());
                }
                cjk_prev = Some(c);
                cjk_len += 1;
                self.prev = None;
                continue;
            }
            if cjk_len > 0 {
                Self::end_cjk(cjk_prev.take(), cjk_len, sink);
                cjk_len = 0;
            }
            if c.is_alphanumeric() {
                self.word.push(c);
            } else if !self.word.is_empty() {
                self.flush_word(kind, sink);
            }
        }
        if cjk_len > 0 {
            Self::end_cjk(cjk_prev, cjk_len, sink);
        }
        if !self.word.is_empty() {
            self.flush_word(kind, sink);
        }
    }

    /// A CJK run of one character is emitted as that character.
    fn end_cjk(last: Option<char>, len: usize, sink: &mut dyn Sink) {
        if len == 1 {
            if let Some(p) = last {
                let mut buf = [0u8; 4];
                let s = p.encode_utf8(&mut buf);
                sink.feature(hash(Kind::Cjk, s), Kind::Cjk, &|| s.to_owned());
            }
        }
    }

    fn flush_word(&mut self, kind: Kind, sink: &mut dyn Sink) {
        let word: &str = &self.word;
        // Single letters carry no signal (single CJK characters are handled
        // with the CJK runs).
        if word.len() < 2 || word.chars().nth(1).is_none() {
            self.word.clear();
            return;
        }
        if word.len() > MAX_WORD_BYTES {
            sink.feature(hash(Kind::LongWord, ""), Kind::LongWord, &String::new);
            self.prev = None;
            self.word.clear();
            return;
        }
        let h = hash(kind, word);
        sink.feature(h, kind, &|| word.to_owned());
        if self.bigrams && kind == Kind::Word {
            if let Some(p) = self.prev {
                let pt: &str = &self.prev_word;
                sink.feature(pair(p, h), Kind::Bigram, &|| format!("{pt} {word}"));
            }
        }
        self.prev = Some(h);
        std::mem::swap(&mut self.word, &mut self.prev_word);
        self.word.clear();
    }
}

/// A parsed message as the classifier reads it: the facts of the parse and
/// its subject and body text normalised like the keyword rules' text.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub msg: &'a ParsedMessage,
    /// `normalize(subject)`.
    pub subject: &'a str,
    /// `normalize(msg.text)`.
    pub body: &'a str,
}

/// Every feature of a parsed message.
pub fn message_features(view: View<'_>, bigrams: bool, sink: &mut dyn Sink) {
    let msg = view.msg;
    let mut tok = TextTokenizer::new(bigrams);
    tok.run(view.subject, Kind::Subject, 500, sink);
    if let Some(d) = msg.from.as_ref().and_then(|f| f.domain()) {
        sink.feature(hash(Kind::FromDomain, &d), Kind::FromDomain, &|| d.clone());
    }
    if let Some(m) = msg.x_mailer.as_deref().or(msg.user_agent.as_deref()) {
        // Product name without the version: "Microsoft Outlook 16.0" → "microsoft outlook".
        let name: String = m
            .split(|c: char| c.is_ascii_digit() || c == '(' || c == '/' || c == '[')
            .next()
            .unwrap_or("")
            .trim()
            .to_lowercase();
        if !name.is_empty() {
            sink.feature(hash(Kind::Mailer, &name), Kind::Mailer, &|| name.clone());
        }
    }
    let shape = match (msg.has_text_part, msg.has_html_part) {
        (false, true) => "html-only",
        (true, true) => "text+html",
        _ => "text",
    };
    sink.feature(hash(Kind::BodyType, shape), Kind::BodyType, &|| {
        shape.into()
    });
    tok.run(view.body, Kind::Word, MAX_BODY_BYTES, sink);
    for url in &msg.urls {
        if !url.host.is_empty() {
            let h = url.host.as_str();
            sink.feature(hash(Kind::UrlHost, h), Kind::UrlHost, &|| h.to_owned());
        }
    }
    for a in &msg.attachments {
        if let Some((_, ext)) = a.name.as_deref().and_then(|n| n.rsplit_once('.')) {
            let e = ext.trim().to_ascii_lowercase();
            if !e.is_empty() && e.len() <= 10 {
                sink.feature(hash(Kind::AttachExt, &e), Kind::AttachExt, &|| e.clone());
            }
        }
        if let Some(t) = a.declared_type.as_deref() {
            sink.feature(hash(Kind::AttachType, t), Kind::AttachType, &|| {
                t.to_owned()
            });
        }
    }
}

/// Features of a piece of text as `(kind prefix + token)` strings, for tests
/// and for explaining what the classifier sees. The text is normalised
/// first, as the message body is.
pub fn text_tokens(text: &str, bigrams: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut tok = TextTokenizer::new(bigrams);
    let text = normalize(text);
    tok.run(
        &text,
        Kind::Word,
        usize::MAX,
        &mut |_h: u64, kind: Kind, t: &dyn Fn() -> String| {
            out.push(format!("{}{}", kind.prefix(), t()))
        },
    );
    out
}
