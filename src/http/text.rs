//! Text helpers for the pages: URL encoding, a readable rendering of a raw
//! message, the keywords named in symbol evidence, and highlighting them.

use mail_parser::MessageParser;
use maud::{html, Markup};

/// Percent-encode a path segment or query value.
pub fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The message as a reader sees it: the subject, then every text part
/// (HTML parts converted to text). Never fails: undecodable input comes
/// back as lossy UTF-8.
pub fn readable(raw: &[u8]) -> String {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return String::from_utf8_lossy(raw).into_owned();
    };
    let mut out = String::new();
    if let Some(subject) = msg.subject() {
        out.push_str("Subject: ");
        out.push_str(subject);
        out.push_str("\n\n");
    }
    let mut any = false;
    for i in 0..msg.text_body.len() {
        if let Some(t) = msg.body_text(i) {
            any = true;
            out.push_str(&t);
            out.push('\n');
        }
    }
    if !any {
        for i in 0..msg.html_body.len() {
            if let Some(t) = msg.body_text(i) {
                out.push_str(&t);
                out.push('\n');
            }
        }
    }
    out
}

/// The quoted strings of an evidence line (`keyword "viagra" in subject as
/// "VIAGRA"` → `viagra`, `VIAGRA`), when it names a keyword.
pub fn evidence_terms(evidence: &str) -> Vec<String> {
    if !evidence.to_ascii_lowercase().contains("keyword") {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut rest = evidence;
    while let Some(start) = rest.find(['"', '\'']) {
        let quote = rest.as_bytes()[start] as char;
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else { break };
        let term = after[..end].trim();
        if !term.is_empty() && !terms.iter().any(|t: &String| t == term) {
            terms.push(term.to_string());
        }
        rest = &after[end + 1..];
    }
    terms
}

/// `text` with every case-insensitive occurrence of a term wrapped in
/// `<mark>`; the text itself is escaped by the template engine.
pub fn highlight(text: &str, terms: &[String]) -> Markup {
    let alternatives: Vec<String> = terms
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| regex::escape(t))
        .collect();
    let re = (!alternatives.is_empty())
        .then(|| {
            regex::RegexBuilder::new(&alternatives.join("|"))
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .ok()
        })
        .flatten();
    // (plain text before a match, the match)
    let mut pieces: Vec<(&str, &str)> = Vec::new();
    let mut last = 0;
    for m in re.iter().flat_map(|re| re.find_iter(text)) {
        pieces.push((&text[last..m.start()], m.as_str()));
        last = m.end();
    }
    html! {
        @for (plain, marked) in &pieces {
            (plain) mark { (marked) }
        }
        (&text[last..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_from_evidence() {
        assert_eq!(
            evidence_terms(r#"keyword "viagra" in subject as "VIAGRA""#),
            vec!["viagra".to_string(), "VIAGRA".to_string()]
        );
        assert!(evidence_terms("attachment \"a.exe\"").is_empty());
    }

    #[test]
    fn highlight_marks_and_escapes() {
        let out = highlight("Buy <b>ViAgRa</b> now", &["viagra".into()]).into_string();
        assert_eq!(out, "Buy &lt;b&gt;<mark>ViAgRa</mark>&lt;/b&gt; now");
        let out = highlight("a <mark> b", &["<mark>".into()]).into_string();
        assert_eq!(out, "a <mark>&lt;mark&gt;</mark> b");
        let out = highlight("<script>\"a\" & b</script>", &[]).into_string();
        assert_eq!(out, "&lt;script&gt;&quot;a&quot; &amp; b&lt;/script&gt;");
    }

    #[test]
    fn readable_decodes_parts() {
        let raw = b"Subject: =?utf-8?q?Hi_there?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n";
        let text = readable(raw);
        assert!(text.contains("Subject: Hi there"), "{text}");
        assert!(text.contains("café"), "{text}");
    }
}
