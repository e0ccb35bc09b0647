//! HTML → visible text, with links kept apart as (href, visible text) pairs
//! and hidden text measured. A forgiving tokenizer, not a full HTML5 parser:
//! it never fails and stops at a size limit.

/// A link as the reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub href: String,
    /// The visible text of the anchor, entities decoded, whitespace collapsed.
    pub text: String,
}

/// What an HTML part shows and hides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlText {
    /// Visible text; block elements become line breaks.
    pub text: String,
    pub links: Vec<Link>,
    /// Characters of text inside elements styled invisible
    /// (`display:none`, `visibility:hidden`, `font-size:0`, 1px fonts…).
    pub hidden_chars: usize,
    /// A short sample of the hidden text, for evidence.
    pub hidden_sample: String,
    /// `src` of images, for URL checks.
    pub images: Vec<String>,
}

const MAX_LINKS: usize = 1000;

/// Convert an HTML document to its visible text.
pub fn to_text(html: &str) -> HtmlText {
    let mut out = HtmlText::default();
    let bytes = html.as_bytes();
    let mut i = 0;
    // Element whose content is hidden: (tag name, nesting depth of that tag).
    let mut hidden: Option<(String, usize)> = None;
    let mut link: Option<(String, String)> = None;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = memchr(b'<', &bytes[i..]).map_or(bytes.len(), |p| i + p);
            let chunk = decode_entities(&html[i..end]);
            if hidden.is_some() {
                let n = chunk.chars().filter(|c| !c.is_whitespace()).count();
                out.hidden_chars += n;
                if out.hidden_sample.len() < 80 && n > 0 {
                    push_collapsed(&mut out.hidden_sample, &chunk);
                }
            } else {
                push_collapsed(&mut out.text, &chunk);
                if let Some((_, text)) = link.as_mut() {
                    push_collapsed(text, &chunk);
                }
            }
            i = end;
            continue;
        }
        // Comments and declarations.
        if html[i..].starts_with("<!--") {
            i = html[i + 4..]
                .find("-->")
                .map_or(bytes.len(), |p| i + 4 + p + 3);
            continue;
        }
        if html[i..].starts_with("<!") || html[i..].starts_with("<?") {
            i = memchr(b'>', &bytes[i..]).map_or(bytes.len(), |p| i + p + 1);
            continue;
        }
        let Some(tag) = parse_tag(html, i) else {
            // A lone '<' is text.
            if hidden.is_none() {
                out.text.push('<');
            }
            i += 1;
            continue;
        };
        i = tag.end;
        let name = tag.name.as_str();
        if !tag.closing && matches!(name, "script" | "style" | "title" | "head" | "template") {
            // Skip raw-text content up to the matching close tag.
            let close = format!("</{name}");
            i = find_ascii_ci(&html[i..], &close).map_or(bytes.len(), |p| {
                let after = i + p;
                memchr(b'>', &bytes[after..]).map_or(bytes.len(), |q| after + q + 1)
            });
            continue;
        }
        if is_block(name) && !out.text.ends_with('\n') && !out.text.is_empty() {
            if out.text.ends_with(' ') {
                out.text.pop();
            }
            out.text.push('\n');
        }
        if let Some((hidden_tag, depth)) = hidden.as_mut() {
            if hidden_tag == name && !is_void(name) {
                if tag.closing {
                    *depth -= 1;
                    if *depth == 0 {
                        hidden = None;
                    }
                } else if !tag.self_closing {
                    *depth += 1;
                }
            }
            continue;
        }
        match (name, tag.closing) {
            ("a", false) => {
                if let Some((href, text)) = link.take() {
                    push_link(&mut out.links, href, text);
                }
                if let Some(href) = tag.attr("href") {
                    link = Some((decode_entities(href).trim().to_string(), String::new()));
                }
            }
            ("a", true) => {
                if let Some((href, text)) = link.take() {
                    push_link(&mut out.links, href, text);
                }
            }
            ("img", false) => {
                if let Some(src) = tag.attr("src") {
                    if out.images.len() < MAX_LINKS {
                        out.images.push(decode_entities(src).trim().to_string());
                    }
                }
                if let Some(alt) = tag.attr("alt") {
                    if let Some((_, text)) = link.as_mut() {
                        push_collapsed(text, &decode_entities(alt));
                    }
                }
            }
            _ => {}
        }
        if !tag.closing && !tag.self_closing && !is_void(name) && tag.hides() {
            hidden = Some((tag.name.clone(), 1));
        }
    }
    if let Some((href, text)) = link.take() {
        push_link(&mut out.links, href, text);
    }
    let trimmed = out.text.trim_end().len();
    out.text.truncate(trimmed);
    out
}

fn push_link(links: &mut Vec<Link>, href: String, text: String) {
    if links.len() < MAX_LINKS && !href.is_empty() {
        links.push(Link {
            href,
            text: text.trim().to_string(),
        });
    }
}

fn push_collapsed(into: &mut String, chunk: &str) {
    for c in chunk.chars() {
        if c.is_whitespace() {
            if !into.is_empty() && !into.ends_with(' ') && !into.ends_with('\n') {
                into.push(' ');
            }
        } else {
            into.push(c);
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "br" | "p"
            | "div"
            | "tr"
            | "li"
            | "ul"
            | "ol"
            | "table"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "blockquote"
            | "hr"
            | "pre"
            | "section"
            | "article"
            | "td"
            | "th"
            | "center"
    )
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "img"
            | "hr"
            | "meta"
            | "link"
            | "input"
            | "area"
            | "base"
            | "col"
            | "wbr"
            | "source"
            | "embed"
            | "param"
            | "track"
    )
}

struct Tag<'a> {
    name: String,
    closing: bool,
    self_closing: bool,
    attrs: Vec<(String, &'a str)>,
    end: usize,
}

impl Tag<'_> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Inline styles and attributes that make content invisible.
    fn hides(&self) -> bool {
        if self.attrs.iter().any(|(n, _)| n == "hidden") {
            return true;
        }
        let Some(style) = self.attr("style") else {
            return false;
        };
        let style: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        style.contains("display:none")
            || style.contains("visibility:hidden")
            || style.contains("font-size:0")
            || style.contains("font-size:1px")
            || style.contains("max-height:0")
            || style.contains("opacity:0;")
            || style.ends_with("opacity:0")
    }
}

/// Parse the tag starting at `start` (which holds '<').
fn parse_tag(html: &str, start: usize) -> Option<Tag<'_>> {
    let bytes = html.as_bytes();
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b':')
    {
        i += 1;
    }
    if i == name_start || !bytes[name_start].is_ascii_alphabetic() {
        return None;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    let mut self_closing = false;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        match bytes.get(i) {
            None => {
                return Some(Tag {
                    name,
                    closing,
                    self_closing,
                    attrs,
                    end: bytes.len(),
                })
            }
            Some(b'>') => {
                return Some(Tag {
                    name,
                    closing,
                    self_closing,
                    attrs,
                    end: i + 1,
                });
            }
            Some(b'/') => {
                self_closing = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        let an_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        if i == an_start {
            i += 1;
            continue;
        }
        let attr_name = html[an_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = "";
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let vs = i + 1;
                    let ve = memchr(q, &bytes[vs..]).map_or(bytes.len(), |p| vs + p);
                    value = &html[vs..ve];
                    i = (ve + 1).min(bytes.len());
                }
                _ => {
                    let vs = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = &html[vs..i];
                }
            }
        }
        self_closing = false;
        if attrs.len() < 32 {
            attrs.push((attr_name, value));
        }
    }
}

/// Decode HTML character references (`&amp;`, `&#233;`, `&#xE9;` and the
/// common named ones). Unknown references are kept as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest[1..]
            .char_indices()
            .take(12)
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '#'))
            .map(|(i, c)| (i + 1, c == ';'));
        let (len, semi) = end.unwrap_or((rest.len(), false));
        let name = &rest[1..len];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let n = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            n.and_then(char::from_u32)
        } else {
            named_entity(name)
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[len + usize::from(semi)..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "shy" => '\u{ad}',
        "zwj" => '\u{200d}',
        "zwnj" => '\u{200c}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "laquo" => '«',
        "raquo" => '»',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "bull" => '•',
        "middot" => '·',
        "deg" => '°',
        "times" => '×',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "auml" => 'ä',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ouml" => 'ö',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "uuml" => 'ü',
        "szlig" => 'ß',
        "Eacute" => 'É',
        "Agrave" => 'À',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_script_style_and_decodes_entities() {
        let h = to_text(
            "<html><head><title>t</title><style>p{}</style></head><body>\
             <script>var x='<a>';</script><p>Caf&eacute; &amp; b&#233;b&#xE9;</p>\
             <p>Next</p></body></html>",
        );
        assert_eq!(h.text, "Café & bébé\nNext");
    }

    #[test]
    fn keeps_links_and_measures_hidden_text() {
        let h = to_text(
            "<a href=\"https://evil.example/login\">www.bank.example</a> \
             <div style=\"display: none\">buy cheap pills <div>more</div> hidden</div>shown",
        );
        assert_eq!(
            h.links,
            vec![Link {
                href: "https://evil.example/login".into(),
                text: "www.bank.example".into()
            }]
        );
        assert!(h.text.contains("shown"));
        assert!(!h.text.contains("pills"));
        assert_eq!(h.hidden_chars, "buycheappillsmorehidden".len());
    }
}
