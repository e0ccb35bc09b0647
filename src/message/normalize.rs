//! Text normalisation for matching: NFKC-compatible folding, case folding
//! (Greek and Cyrillic included), diacritics, zero-width characters and soft
//! hyphens removed, whitespace collapsed — with a map back to the original so
//! evidence can quote words as they were written.

use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Normalised text plus, for every byte of it, where its character started
/// in the source text.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    pub text: String,
    origin: Vec<u32>,
}

/// Characters that are invisible in rendered text and only serve to break
/// up words: zero-width spaces and joiners, soft hyphen, word joiner, BOM,
/// and the bidi controls.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl Normalized {
    /// Normalise `source`. The same function normalises keyword lists, so a
    /// keyword matches however the message spells its case or accents.
    pub fn new(source: &str) -> Normalized {
        let mut text = String::with_capacity(source.len());
        let mut origin = Vec::with_capacity(source.len());
        let mut last_space = true;
        for (at, c) in source.char_indices() {
            let at = at as u32;
            if c.is_ascii() {
                if c.is_ascii_whitespace() || c.is_ascii_control() {
                    if !last_space {
                        text.push(' ');
                        origin.push(at);
                        last_space = true;
                    }
                } else {
                    text.push(c.to_ascii_lowercase());
                    origin.push(at);
                    last_space = false;
                }
                continue;
            }
            if is_invisible(c) {
                continue;
            }
            if c.is_whitespace() || c.is_control() {
                if !last_space {
                    text.push(' ');
                    origin.push(at);
                    last_space = true;
                }
                continue;
            }
            // Han ideographs are stable under NFKD and have no case: the bulk
            // of Chinese text takes this shortcut. Hangul syllables stay
            // precomposed (NFKD would split them into jamo), so a Korean
            // word keeps its syllables.
            if matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xAC00..=0xD7A3) {
                text.push(c);
                origin.extend_from_slice(&[at; 3][..c.len_utf8()]);
                last_space = false;
                continue;
            }
            decompose_compatible(c, |d| {
                if is_combining_mark(d) || is_invisible(d) {
                    return;
                }
                if d.is_whitespace() {
                    if !last_space {
                        text.push(' ');
                        origin.push(at);
                        last_space = true;
                    }
                    return;
                }
                for l in fold(d) {
                    let before = text.len();
                    text.push(l);
                    origin.extend(std::iter::repeat_n(at, text.len() - before));
                    last_space = false;
                }
            });
        }
        if text.ends_with(' ') {
            text.pop();
            origin.pop();
        }
        Normalized { text, origin }
    }

    /// The words of `source` that produced `range` of the normalised text.
    pub fn original<'a>(&self, source: &'a str, range: Range<usize>) -> &'a str {
        if range.start >= range.end || range.end > self.origin.len() {
            return "";
        }
        let start = self.origin[range.start] as usize;
        let last = self.origin[range.end - 1] as usize;
        let end = last + source[last..].chars().next().map_or(0, char::len_utf8);
        source.get(start..end).unwrap_or("")
    }
}

/// Full case folding of one character, as an iterator of characters.
fn fold(c: char) -> impl Iterator<Item = char> {
    let special: Option<&'static str> = match c {
        'ß' | 'ẞ' => Some("ss"),
        'ς' => Some("σ"),
        _ => None,
    };
    let (a, b) = match special {
        Some(s) => (None, Some(s.chars())),
        None => (Some(c.to_lowercase()), None),
    };
    a.into_iter().flatten().chain(b.into_iter().flatten())
}

/// Normalise a short string without keeping the map (keywords, names).
pub fn normalize(source: &str) -> String {
    Normalized::new(source).text
}

/// True for characters of scripts written without spaces between words
/// (Han, kana, Thai…), where keyword matches need no word boundary.
pub fn is_unspaced_script(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF | 0x3000..=0x30FF | 0x3100..=0x31FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF66..=0xFF9F | 0x20000..=0x3134F
        | 0x0E00..=0x0E7F | 0x0E80..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF)
}

/// A character that belongs to a word in space-separated scripts.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_unspaced_script(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_width() {
        assert_eq!(normalize("ΠΡΟΣΦΟΡΆ  Δωρεάν"), "προσφορα δωρεαν");
        assert_eq!(normalize("ＦＲＥＥ Straße"), "free strasse");
        assert_eq!(normalize("ПРИВЕТ"), "привет");
        assert_eq!(normalize("Félicitations"), "felicitations");
        assert_eq!(normalize("λόγος"), "λογοσ");
        assert_eq!(normalize("무료 쿠폰"), "무료 쿠폰");
    }

    #[test]
    fn removes_invisible_and_collapses_space() {
        assert_eq!(normalize("vi\u{200B}ag\u{00AD}ra \n\t now"), "viagra now");
        assert_eq!(normalize("  lead"), "lead");
    }

    #[test]
    fn maps_back_to_original_words() {
        let src = "Dear USER, ＶＥＲＩＦＹ   your Account now";
        let n = Normalized::new(src);
        let at = n.text.find("verify your account").unwrap();
        let quoted = n.original(src, at..at + "verify your account".len());
        assert_eq!(quoted, "ＶＥＲＩＦＹ   your Account");
    }
}
